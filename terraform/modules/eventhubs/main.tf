# Two namespaces, because they need opposite authentication settings:
# - usage: the hub APIM's log-to-eventhub policy writes one usage event per request to, and the
#   Functions app reads with its own consumer group. Entra ID only (SAS keys disabled): APIM's
#   logger signs in with its managed identity, the trigger with the app's.
# - gateway logs: the hub APIM's diagnostic setting streams GatewayLogs and GatewayLlmLogs to.
#   Azure Monitor diagnostic settings can only stream to Event Hubs with a namespace SAS rule
#   (Manage, Send, Listen), so SAS stays enabled here, and only here. Azure Monitor holds the rule;
#   its key is never read by this configuration.
resource "azurerm_eventhub_namespace" "usage" {
  name                          = var.usage_namespace_name
  location                      = var.context.location
  resource_group_name           = var.context.resource_group_name
  sku                           = "Standard"
  capacity                      = var.capacity
  auto_inflate_enabled          = var.max_capacity > 0
  maximum_throughput_units      = var.max_capacity > 0 ? var.max_capacity : null
  local_authentication_enabled  = false
  public_network_access_enabled = true # APIM (not VNet-integrated) sends over the public endpoint with Entra ID
  minimum_tls_version           = "1.2"
  tags                          = var.context.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [var.capture_identity_id]
  }
}

resource "azurerm_eventhub" "usage" {
  name              = var.usage_hub_name
  namespace_id      = azurerm_eventhub_namespace.usage.id
  partition_count   = var.partition_count
  message_retention = var.retention_days

  dynamic "capture_description" {
    for_each = var.capture_enabled ? [1] : []

    content {
      enabled             = true
      encoding            = "Avro"
      interval_in_seconds = 300
      size_limit_in_bytes = 314572800
      skip_empty_archives = true

      destination {
        name                        = "EventHubArchive.AzureBlockBlob"
        archive_name_format         = "{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}"
        blob_container_name         = var.capture_container_name
        storage_account_id          = var.capture_storage_account_id
        storage_authentication_type = "UserAssigned"
        storage_authentication_id   = var.capture_identity_id
      }
    }
  }
}

# The pipeline's own consumer group: never $Default shared with another reader (docs/functions.md).
resource "azurerm_eventhub_consumer_group" "pipeline" {
  name                = var.usage_consumer_group_name
  namespace_name      = azurerm_eventhub_namespace.usage.name
  eventhub_name       = azurerm_eventhub.usage.name
  resource_group_name = var.context.resource_group_name
}

resource "azurerm_eventhub_namespace" "gateway_logs" {
  name                          = var.gateway_logs_namespace_name
  location                      = var.context.location
  resource_group_name           = var.context.resource_group_name
  sku                           = "Standard"
  capacity                      = 1
  local_authentication_enabled  = true # required by Azure Monitor diagnostic settings, see above
  public_network_access_enabled = true
  minimum_tls_version           = "1.2"
  tags                          = var.context.tags
}

resource "azurerm_eventhub" "gateway_logs" {
  name              = var.gateway_logs_hub_name
  namespace_id      = azurerm_eventhub_namespace.gateway_logs.id
  partition_count   = 2
  message_retention = var.retention_days
}

# For the join of streamed requests' usage from GatewayLlmLogs (usageSource "stream" events that
# arrive without usage); a consumer group of its own, like the usage hub's.
resource "azurerm_eventhub_consumer_group" "gateway_logs" {
  name                = "${var.usage_consumer_group_name}-llm-logs"
  namespace_name      = azurerm_eventhub_namespace.gateway_logs.name
  eventhub_name       = azurerm_eventhub.gateway_logs.name
  resource_group_name = var.context.resource_group_name
}

resource "azurerm_eventhub_namespace_authorization_rule" "diagnostics" {
  name                = "azure-monitor-diagnostics"
  namespace_name      = azurerm_eventhub_namespace.gateway_logs.name
  resource_group_name = var.context.resource_group_name
  listen              = true
  send                = true
  manage              = true
}
