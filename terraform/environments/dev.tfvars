# dev: one region, smallest sizes, basic monitoring (Log Analytics + Application Insights only).
# Values marked "your ..." are organisation-specific: replace them before the first apply.
environment   = "dev"
unique_suffix = "d7q2"
location      = "swedencentral"

apim_sku_name        = "Developer_1"
apim_publisher_name  = "Platform team"
apim_publisher_email = "platform-team@example.com" # your team's address

openai_account = {
  # your Azure OpenAI account for dev
  resource_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-openai-dev/providers/Microsoft.CognitiveServices/accounts/aoai-chargeback-dev"
  endpoint    = "https://aoai-chargeback-dev.openai.azure.com/"
}

teams = {
  sub-search-dev  = { display_name = "Search (dev)", cost_center = "CC-1001-search" }
  sub-support-dev = { display_name = "Support (dev)", cost_center = "CC-2002-support" }
}

eventhub_partition_count = 2
eventhub_retention_days  = 1
eventhub_capacity        = 1
eventhub_capture_enabled = false # Capture costs a throughput unit-hour; replay in dev re-sends from files

function_maximum_instance_count = 40
function_instance_memory_mb     = 2048

cosmos_serverless        = true
redis_sku_name           = "Balanced_B0"
zone_redundant           = false
storage_replication_type = "LRS"

monitoring_level   = "basic"
log_retention_days = 30
log_daily_cap_gb   = 1

private_endpoints_enabled = false
