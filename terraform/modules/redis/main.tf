# The live counters (pipeline/adapters/redis_counters.py). Azure Managed Redis: Azure Cache for
# Redis (Basic/Standard/Premium) is retiring and takes no new caches. Settings the adapter needs:
# - clustering policy EnterpriseCluster: the adapter uses a plain (non-cluster) client; the proxy
#   routes, and every key carries the same hash tag, so a Lua script touches one slot.
# - NoEviction: an evicted dedupe mark would count an event twice; every key has a TTL already.
# - access keys off: Entra ID only (the app's identity gets the default access policy).
# No persistence: the counters are rebuilt from the ledger (docs/guarantees.md).
#
# Size: every request leaves a dedupe mark for MARK_TTL (8 days, longer than the hub's retention,
# so a redelivery is still recognised) and NoEviction never drops one, so the memory must hold
# requests/day x 8 marks. The soak measured about 105 bytes a mark on redis-server
# (docs/guarantees.md); 160 bytes leaves room for the Enterprise proxy and replication buffers.
# All keys share the {cb} hash tag, so they sit on one shard: only that shard's memory counts.
# The SKU's number is its memory in GB (B0: 0.5 GB), per the Azure Managed Redis tier table.
locals {
  mark_bytes      = 160
  mark_days       = 8
  needed_gb       = var.expected_requests_per_day * local.mark_days * local.mark_bytes / 1000000000
  sku_size        = tonumber(regex("[0-9]+$", var.sku_name))
  sku_memory_gb   = local.sku_size == 0 ? 0.5 : local.sku_size
  usable_fraction = 0.8 # keep a fifth free: counters, alerts, fragmentation
}

resource "azurerm_managed_redis" "this" {
  name                      = var.name
  location                  = var.context.location
  resource_group_name       = var.context.resource_group_name
  sku_name                  = var.sku_name
  high_availability_enabled = var.high_availability
  public_network_access     = var.private_endpoints_enabled ? "Disabled" : "Enabled"
  tags                      = var.context.tags

  default_database {
    access_keys_authentication_enabled = false
    client_protocol                    = "Encrypted"
    clustering_policy                  = "EnterpriseCluster"
    eviction_policy                    = "NoEviction"
  }

  lifecycle {
    precondition {
      condition     = local.needed_gb <= local.sku_memory_gb * local.usable_fraction
      error_message = "redis_sku_name ${var.sku_name} (${local.sku_memory_gb} GB) is too small for ${var.expected_requests_per_day} requests a day: 8 days of dedupe marks need about ${ceil(local.needed_gb * 10) / 10} GB, and NoEviction refuses writes when memory is full. Choose a SKU of at least ${ceil(local.needed_gb / local.usable_fraction)} GB (terraform/README.md \"Sizing Redis\")."
    }
  }
}
