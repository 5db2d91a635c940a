# Where operators keep what APIM or the pipeline may later need as secrets or certificates (for
# example a custom-domain certificate for the gateway). RBAC only, no access policies; nothing is
# granted on it by default, and no secret is written by this configuration.
data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_109:Fails in defaults, dev and staging only. As CKV_AZURE_101, for the Key Vault firewall (default deny in prod).
  #checkov:skip=CKV_AZURE_189:Fails in defaults, dev and staging only. As CKV_AZURE_101, for the Key Vault's public network access (off in prod).
  #checkov:skip=CKV_AZURE_110:Fails in defaults, dev and staging only. Purge protection would keep a torn-down dev/staging vault's name reserved for 90 days; prod has it.
  #checkov:skip=CKV_AZURE_42:Fails in defaults, dev and staging only. As CKV_AZURE_110 (checkov's "recoverable" requires purge protection).
  #checkov:skip=CKV2_AZURE_32:As CKV2_AZURE_33, for the Key Vault's private endpoint.
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
