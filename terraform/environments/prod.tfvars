# prod: zone-redundant and highly available everywhere, full monitoring, private endpoints.
# Values marked "your ..." are organisation-specific: replace them before the first apply.
environment   = "prod"
unique_suffix = "p3m8"
location      = "swedencentral"

apim_sku_name        = "Premium_2"
apim_zones           = ["1", "2"]
apim_publisher_name  = "Platform team"
apim_publisher_email = "platform-team@example.com" # your team's address

openai_account = {
  # your Azure OpenAI account for prod
  resource_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-openai-prod/providers/Microsoft.CognitiveServices/accounts/aoai-chargeback-prod"
  endpoint    = "https://aoai-chargeback-prod.openai.azure.com/"
}

teams = {
  sub-search-prod    = { display_name = "Search", cost_center = "CC-1001-search" }
  sub-support-prod   = { display_name = "Support", cost_center = "CC-2002-support" }
  sub-marketing-prod = { display_name = "Marketing", cost_center = "CC-3003-marketing" }
}

eventhub_partition_count = 16
eventhub_retention_days  = 7
eventhub_capacity        = 2
eventhub_max_capacity    = 10
eventhub_capture_enabled = true

function_maximum_instance_count = 100
function_instance_memory_mb     = 2048

cosmos_serverless               = false
cosmos_max_throughput           = 10000
redis_sku_name                  = "Balanced_B5" # 1M requests/day: 1.68 GB of marks on one shard; B3 gives a shard 1.2 GB
redis_expected_requests_per_day = 1000000
zone_redundant                  = true
storage_replication_type        = "GZRS"
blob_soft_delete_days           = 30
key_vault_purge_protection      = true

monitoring_level      = "full"
log_retention_days    = 90
alert_email_addresses = ["platform-oncall@example.com"] # your on-call address

private_endpoints_enabled = true
vnet_address_space        = "10.60.0.0/24"
