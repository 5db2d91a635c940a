# staging: production-like sizing and full monitoring, single zone.
# Values marked "your ..." are organisation-specific: replace them before the first apply.
environment   = "staging"
unique_suffix = "s4k9"
location      = "swedencentral"

apim_sku_name        = "StandardV2_1"
apim_publisher_name  = "Platform team"
apim_publisher_email = "platform-team@example.com" # your team's address

openai_account = {
  # your Azure OpenAI account for staging
  resource_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-openai-staging/providers/Microsoft.CognitiveServices/accounts/aoai-chargeback-staging"
  endpoint    = "https://aoai-chargeback-staging.openai.azure.com/"
}

teams = {
  sub-search-staging  = { display_name = "Search (staging)", cost_center = "CC-1001-search" }
  sub-support-staging = { display_name = "Support (staging)", cost_center = "CC-2002-support" }
}

eventhub_partition_count = 4
eventhub_retention_days  = 7
eventhub_capacity        = 1
eventhub_max_capacity    = 4
eventhub_capture_enabled = true

function_maximum_instance_count = 40
function_instance_memory_mb     = 2048

cosmos_serverless        = false
cosmos_max_throughput    = 1000
redis_sku_name           = "Balanced_B0"
zone_redundant           = false
storage_replication_type = "ZRS"

monitoring_level      = "full"
log_retention_days    = 30
alert_email_addresses = ["platform-team@example.com"] # your on-call address

private_endpoints_enabled = false
