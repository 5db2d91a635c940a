# Where operators keep what APIM or the pipeline may later need as secrets or certificates (for
# example a custom-domain certificate for the gateway). RBAC only, no access policies; nothing is
# granted on it by default, and no secret is written by this configuration.
data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "this" {
  name                          = var.name
  location                      = var.context.location
  resource_group_name           = var.context.resource_group_name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = var.purge_protection
  soft_delete_retention_days    = 90
  public_network_access_enabled = var.private_endpoints_enabled ? false : true
  tags                          = var.context.tags

  network_acls {
    bypass         = "AzureServices"
    default_action = var.private_endpoints_enabled ? "Deny" : "Allow"
  }
}
