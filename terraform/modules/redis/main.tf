# The live counters (pipeline/adapters/azure/redis_counters.py). Azure Managed Redis: Azure Cache for
# Redis (Basic/Standard/Premium) is retiring and takes no new caches. Settings the adapter needs:
# - clustering policy EnterpriseCluster: the adapter uses a plain (non-cluster) client; the proxy
#   routes, and every key carries the same hash tag, so a Lua script touches one slot.
# - NoEviction: an evicted dedupe mark would count an event twice; every key has a TTL already.
# - access keys off: Entra ID only (the app's identity gets the default access policy).
# No persistence: the counters are rebuilt from the ledger (docs/guarantees.md).
#
# Size: every request leaves a dedupe mark for MARK_TTL (8 days, longer than the hub's retention,
# so a redelivery is still recognised) and NoEviction never drops one, so the memory must hold
# requests/day x 8 days of marks. make bench measured 183-210 bytes per counted event on
# redis-server (marks and counters, docs/benchmarks.md): 210 is counted. Every key carries the
# {cb} hash tag, so all of them sit in ONE hash slot, on ONE primary shard: what must hold the
# marks is one shard's share of the memory, not the SKU's total. Sizes and primary shards per SKU:
# learn.microsoft.com/azure/redis/architecture ("Sharding configuration"; Microsoft may change the
# shard counts over time); about 20% of the memory is reserved ("Reserved memory"). That the
# memory is split evenly across the shards is Redis Enterprise's model, not stated by Azure.
locals {
  skus = {
    Balanced_B0           = { gb = 0.5, shards = 1 }
    Balanced_B1           = { gb = 1, shards = 1 }
    Balanced_B3           = { gb = 3, shards = 2 }
    Balanced_B5           = { gb = 6, shards = 2 }
    Balanced_B10          = { gb = 12, shards = 2 }
    Balanced_B20          = { gb = 24, shards = 6 }
    Balanced_B50          = { gb = 60, shards = 12 }
    Balanced_B100         = { gb = 120, shards = 24 }
    Balanced_B150         = { gb = 180, shards = 48 }
    Balanced_B250         = { gb = 240, shards = 48 }
    Balanced_B350         = { gb = 360, shards = 96 }
    Balanced_B500         = { gb = 480, shards = 96 }
    Balanced_B700         = { gb = 720, shards = 192 }
    Balanced_B1000        = { gb = 960, shards = 192 }
    MemoryOptimized_M10   = { gb = 12, shards = 2 }
    MemoryOptimized_M20   = { gb = 24, shards = 2 }
    MemoryOptimized_M50   = { gb = 60, shards = 6 }
    MemoryOptimized_M100  = { gb = 120, shards = 12 }
    MemoryOptimized_M150  = { gb = 180, shards = 24 }
    MemoryOptimized_M250  = { gb = 240, shards = 24 }
    MemoryOptimized_M350  = { gb = 360, shards = 48 }
    MemoryOptimized_M500  = { gb = 480, shards = 48 }
    MemoryOptimized_M700  = { gb = 720, shards = 96 }
    MemoryOptimized_M1000 = { gb = 960, shards = 192 }
    MemoryOptimized_M1500 = { gb = 1440, shards = 192 }
    MemoryOptimized_M2000 = { gb = 1920, shards = 192 }
    ComputeOptimized_X3   = { gb = 3, shards = 2 }
    ComputeOptimized_X5   = { gb = 6, shards = 2 }
    ComputeOptimized_X10  = { gb = 12, shards = 6 }
    ComputeOptimized_X20  = { gb = 24, shards = 12 }
    ComputeOptimized_X50  = { gb = 60, shards = 24 }
    ComputeOptimized_X100 = { gb = 120, shards = 48 }
    ComputeOptimized_X150 = { gb = 180, shards = 96 }
    ComputeOptimized_X250 = { gb = 240, shards = 96 }
    ComputeOptimized_X350 = { gb = 360, shards = 192 }
    ComputeOptimized_X500 = { gb = 480, shards = 192 }
    ComputeOptimized_X700 = { gb = 720, shards = 384 }
  }
  mark_bytes      = 210
  mark_days       = 8
  usable_fraction = 0.8 # the fifth Azure reserves for replication and failover buffers
  needed_gb       = var.expected_requests_per_day * local.mark_days * local.mark_bytes / 1000000000
  shard_gb        = { for name, sku in local.skus : name => sku.gb * local.usable_fraction / sku.shards }
  # The smallest SKUs whose one shard holds the marks: what the precondition's message proposes.
  fitting_gb  = [for name, sku in local.skus : sku.gb if local.shard_gb[name] >= local.needed_gb]
  smallest_gb = length(local.fitting_gb) > 0 ? min(local.fitting_gb...) : -1
  suggestion  = join(" or ", [for name, sku in local.skus : name if sku.gb == local.smallest_gb && local.shard_gb[name] >= local.needed_gb])
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
      condition     = contains(keys(local.skus), var.sku_name)
      error_message = "redis_sku_name ${var.sku_name} is not an Azure Managed Redis SKU this module knows the shards of (modules/redis, local.skus): one of ${join(", ", keys(local.skus))}."
    }
    precondition {
      condition     = lookup(local.shard_gb, var.sku_name, 0) >= local.needed_gb
      error_message = "redis_sku_name ${var.sku_name} is too small for ${var.expected_requests_per_day} requests a day: 8 days of dedupe marks need about ${ceil(local.needed_gb * 100) / 100} GB on the one shard that holds every {cb} key, and this SKU gives a shard ${floor(lookup(local.shard_gb, var.sku_name, 0) * 100) / 100} GB (NoEviction refuses writes when it is full). ${local.suggestion == "" ? "No SKU's shard holds that much: the single {cb} hash tag caps the counters at about 5.7 million requests a day" : "Choose ${local.suggestion}"} (terraform/README.md \"Sizing Redis\")."
    }
  }
}
