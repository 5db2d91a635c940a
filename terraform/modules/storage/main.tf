# Two accounts, so that no identity gets more than it needs:
# - data: the pipeline's store (one container; CHARGEBACK_STORE=az://chargeback/<env> puts the
#   snapshots/, dead-letters/ and reports/ areas under it, see pipeline/bootstrap.py) and the
#   Event Hubs Capture container. The Function App gets Storage Blob Data Contributor on the store
#   container only; the Capture identity on the capture container only.
# - host: the Functions host's own storage (AzureWebJobsStorage: checkpoints, leases, timer locks)
#   and the Flex Consumption deployment container. The host needs Storage Blob Data Owner, which
#   is confined to this account.
# Shared keys are off on both: every caller signs in with Entra ID.
locals {
  accounts = {
    data = var.data_account_name
    host = var.host_account_name
  }
  containers = {
    store      = { account = "data", name = var.store_container_name }
    capture    = { account = "data", name = var.capture_container_name }
    deployment = { account = "host", name = var.deployment_container_name }
  }
}

resource "azurerm_storage_account" "this" {
  #checkov:skip=CKV_AZURE_59:dev and staging have no private endpoints (cost); in prod the host account takes no public traffic and the data account keeps a firewalled public endpoint (default Deny, trusted services) because Event Hubs Capture writes through the trusted-services exception, which no document says holds with public access Disabled. Shared keys are disabled everywhere.
  #checkov:skip=CKV_AZURE_35:Fails in defaults, dev and staging only. As CKV_AZURE_59 (network default action Deny in prod).
  #checkov:skip=CKV_AZURE_206:Fails in defaults, dev and staging only. dev uses LRS and staging ZRS storage (cost); prod uses GZRS.
  #checkov:skip=CKV_AZURE_33:Classic Storage Analytics logging of the Queue service - no queue is used; with full monitoring, logs go through Azure Monitor diagnostic settings (modules/observability).
  #checkov:skip=CKV2_AZURE_33:dev/staging have no private endpoints by choice (cost); in prod they exist (modules/network) but are created from a map in another module, which checkov's graph does not connect to the account.
  #checkov:skip=CKV2_AZURE_1:Storage is encrypted at rest with Microsoft-managed keys; customer-managed keys are out of scope, as for Cosmos DB (CKV_AZURE_100).
  for_each = local.accounts

  name                              = each.value
  location                          = var.context.location
  resource_group_name               = var.context.resource_group_name
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = var.replication_type
  access_tier                       = "Hot"
  https_traffic_only_enabled        = true
  min_tls_version                   = "TLS1_2"
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  infrastructure_encryption_enabled = true
  # With private endpoints (prod) the host account takes no public traffic at all. The data account
  # keeps its public endpoint, firewalled (default Deny, below): Event Hubs Capture writes to it
  # through the trusted-services exception, which no document says holds once public network
  # access is Disabled (azure-review C3; terraform/README.md "Known limits").
  public_network_access_enabled = var.private_endpoints_enabled ? each.key == "data" : true
  allowed_copy_scope            = "AAD"
  tags                          = var.context.tags

  blob_properties {
    versioning_enabled = false # objects are created once, never rewritten (create-if-absent)

    delete_retention_policy {
      days = var.soft_delete_days
    }

    container_delete_retention_policy {
      days = var.soft_delete_days
    }
  }

  network_rules {
    default_action = var.private_endpoints_enabled ? "Deny" : "Allow"
    bypass         = ["AzureServices", "Logging", "Metrics"]
  }

  sas_policy {
    expiration_period = "01.00:00:00"
    expiration_action = "Block"
  }
}

resource "azurerm_storage_container" "this" {
  #checkov:skip=CKV2_AZURE_21:Classic Storage Analytics logging of Blob reads - with full monitoring, blob logs go through Azure Monitor diagnostic settings on blobServices (modules/observability); dev has basic monitoring by choice.
  for_each = local.containers

  name                  = each.value.name
  storage_account_id    = azurerm_storage_account.this[each.value.account].id
  container_access_type = "private"
}
