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
  for_each = local.containers

  name                  = each.value.name
  storage_account_id    = azurerm_storage_account.this[each.value.account].id
  container_access_type = "private"
}
