# Optional private networking (private_endpoints_enabled): one VNet, a subnet for private
# endpoints and a subnet delegated to Flex Consumption's VNet integration, private DNS zones, and
# a private endpoint per service the Function App reads or writes. APIM keeps its public gateway;
# Azure Monitor streams the gateway logs over the Azure backbone.
locals {
  dns_zones = {
    blob       = "privatelink.blob.core.windows.net"
    servicebus = "privatelink.servicebus.windows.net"
    cosmos     = "privatelink.documents.azure.com"
    redis      = "privatelink.redis.azure.net"
    vault      = "privatelink.vaultcore.azure.net"
  }

  endpoints = {
    storage-data = { resource_id = var.data_storage_account_id, subresource = "blob", zone = "blob" }
    storage-host = { resource_id = var.host_storage_account_id, subresource = "blob", zone = "blob" }
    eventhubs    = { resource_id = var.usage_namespace_id, subresource = "namespace", zone = "servicebus" }
    cosmos       = { resource_id = var.cosmos_account_id, subresource = "Sql", zone = "cosmos" }
    redis        = { resource_id = var.redis_id, subresource = "redisEnterprise", zone = "redis" }
    keyvault     = { resource_id = var.key_vault_id, subresource = "vault", zone = "vault" }
  }

  # Both subnets get a network security group of their own.
  subnet_ids = { endpoints = azurerm_subnet.endpoints.id, functions = azurerm_subnet.functions.id }
}

resource "azurerm_virtual_network" "this" {
  name                = var.name
  location            = var.context.location
  resource_group_name = var.context.resource_group_name
  address_space       = [var.address_space]
  tags                = var.context.tags
}

resource "azurerm_subnet" "endpoints" {
  name                              = "snet-private-endpoints"
  resource_group_name               = var.context.resource_group_name
  virtual_network_name              = azurerm_virtual_network.this.name
  address_prefixes                  = [cidrsubnet(var.address_space, 1, 0)]
  private_endpoint_network_policies = "Enabled"
}

resource "azurerm_subnet" "functions" {
  name                 = "snet-functions"
  resource_group_name  = var.context.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [cidrsubnet(var.address_space, 1, 1)]

  delegation {
    name = "flex-consumption"

    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

# Default rules only (VNet-internal traffic allowed, inbound from the internet denied): the subnets
# hold private endpoints and the Function App's outbound integration, nothing listens publicly.
resource "azurerm_network_security_group" "this" {
  for_each = local.subnet_ids

  name                = "nsg-${var.name}-${each.key}"
  location            = var.context.location
  resource_group_name = var.context.resource_group_name
  tags                = var.context.tags
}

resource "azurerm_subnet_network_security_group_association" "this" {
  for_each = local.subnet_ids

  subnet_id                 = each.value
  network_security_group_id = azurerm_network_security_group.this[each.key].id
}

resource "azurerm_private_dns_zone" "this" {
  for_each = local.dns_zones

  name                = each.value
  resource_group_name = var.context.resource_group_name
  tags                = var.context.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "this" {
  for_each = local.dns_zones

  name                  = "link-${each.key}"
  resource_group_name   = var.context.resource_group_name
  private_dns_zone_name = azurerm_private_dns_zone.this[each.key].name
  virtual_network_id    = azurerm_virtual_network.this.id
  tags                  = var.context.tags
}

resource "azurerm_private_endpoint" "this" {
  for_each = local.endpoints

  name                = "pe-${var.name}-${each.key}"
  location            = var.context.location
  resource_group_name = var.context.resource_group_name
  subnet_id           = azurerm_subnet.endpoints.id
  tags                = var.context.tags

  private_service_connection {
    name                           = "psc-${each.key}"
    private_connection_resource_id = each.value.resource_id
    subresource_names              = [each.value.subresource]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "default"
    private_dns_zone_ids = [azurerm_private_dns_zone.this[each.value.zone].id]
  }
}
