# The live counters (pipeline/adapters/redis_counters.py). Azure Managed Redis: Azure Cache for
# Redis (Basic/Standard/Premium) is retiring and takes no new caches. Settings the adapter needs:
# - clustering policy EnterpriseCluster: the adapter uses a plain (non-cluster) client; the proxy
#   routes, and every key carries the same hash tag, so a Lua script touches one slot.
# - NoEviction: an evicted dedupe mark would count an event twice; every key has a TTL already.
# - access keys off: Entra ID only (the app's identity gets the default access policy).
# No persistence: the counters are rebuilt from the ledger (docs/guarantees.md).
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
}
