# The ledger (pipeline/adapters/cosmos_ledger.py): one item per event, id = eventId, partition key
# /id, so that a redelivered event always meets its first copy and gets 409. The indexing policy is
# the adapter's INDEXING_POLICY (only ingestedAt and id, plus the composite index the snapshot
# cursor query needs); tests/test_terraform.py compares the two.
resource "azurerm_cosmosdb_account" "this" {
  #checkov:skip=CKV_AZURE_140:False positive - checkov 3.3.30 reads the azurerm 3.x attribute local_authentication_disabled; the 4.x attribute local_authentication_enabled = false is set (tests/test_terraform.py - -test_no_service_accepts_keys asserts it).
  #checkov:skip=CKV_AZURE_100:Cosmos DB data is encrypted at rest with Microsoft-managed keys; customer-managed keys need a key, an identity and key-rotation operations that this issue does not cover.
  #checkov:skip=CKV_AZURE_101:Fails in defaults, dev and staging only. private_endpoints_enabled = false in dev and staging (cost); prod disables Cosmos DB public network access. Access is Entra ID only in every environment.
  #checkov:skip=CKV_AZURE_99:Fails in defaults, dev and staging only. As CKV_AZURE_101 (no IP or VNet filter while public access is on in dev/staging).
  name                                  = var.account_name
  location                              = var.context.location
  resource_group_name                   = var.context.resource_group_name
  offer_type                            = "Standard"
  kind                                  = "GlobalDocumentDB"
  local_authentication_enabled          = false # Entra ID (data-plane RBAC) only: no account keys
  access_key_metadata_writes_enabled    = false
  public_network_access_enabled         = var.private_endpoints_enabled ? false : true
  network_acl_bypass_for_azure_services = false
  minimal_tls_version                   = "Tls12"
  automatic_failover_enabled            = false
  tags                                  = var.context.tags

  consistency_policy {
    consistency_level = "Session"
  }

  geo_location {
    location          = var.context.location
    failover_priority = 0
    zone_redundant    = var.zone_redundant
  }

  dynamic "capabilities" {
    for_each = var.serverless ? ["EnableServerless"] : []

    content {
      name = capabilities.value
    }
  }

  backup {
    type = "Continuous"
    tier = "Continuous7Days"
  }
}

resource "azurerm_cosmosdb_sql_database" "this" {
  name                = var.database_name
  resource_group_name = var.context.resource_group_name
  account_name        = azurerm_cosmosdb_account.this.name
}

resource "azurerm_cosmosdb_sql_container" "ledger" {
  name                  = var.container_name
  resource_group_name   = var.context.resource_group_name
  account_name          = azurerm_cosmosdb_account.this.name
  database_name         = azurerm_cosmosdb_sql_database.this.name
  partition_key_paths   = ["/id"]
  partition_key_version = 2
  default_ttl           = var.ledger_ttl_seconds

  dynamic "autoscale_settings" {
    for_each = var.serverless ? [] : [var.max_throughput]

    content {
      max_throughput = autoscale_settings.value
    }
  }

  indexing_policy {
    indexing_mode = "consistent"

    included_path {
      path = "/ingestedAt/?"
    }

    included_path {
      path = "/id/?"
    }

    excluded_path {
      path = "/*"
    }

    composite_index {
      index {
        path  = "/ingestedAt"
        order = "Ascending"
      }

      index {
        path  = "/id"
        order = "Ascending"
      }
    }
  }
}
