# Every data-plane grant of the environment except the Capture writer's (in the root module, which
# must exist before the hub's Capture is configured). Each grant is one built-in role on the
# narrowest scope the caller works on; tests/test_terraform.py checks this exact list.
#   (APIM      -> Azure Event Hubs Data Sender      on the usage hub: in modules/apim, before its logger)
#   APIM       -> Cognitive Services OpenAI User    on the Azure OpenAI account
#   APIM       -> Storage Blob Data Reader          on the store container (the budget gate reads
#                                                   <prefix>/gateway/budgets/<subscription id>.json)
#   Functions  -> Azure Event Hubs Data Receiver    on the usage hub
#   Functions  -> Azure Event Hubs Data Receiver    on the gateway logs hub (GatewayLlmLogs)
#   Functions  -> Storage Blob Data Contributor     on the store container (also writes and deletes
#                                                   the budget gate's gateway/budgets/ blobs)
#   Functions  -> Storage Blob Data Owner           on the host storage account (AzureWebJobsStorage
#                                                   needs Owner: blob leases and checkpoints)
#   Functions  -> Monitoring Metrics Publisher      on Application Insights (Entra ID ingestion)
#   Functions  -> Monitoring Reader                 on the Azure OpenAI account (the daily reconciliation
#                                                   reads its platform metrics: chargeback reconcile-azure)
#   Functions  -> Cosmos DB Built-in Data Contributor (data-plane RBAC) on the ledger database
#   Functions  -> Managed Redis default access policy (data access) on the counters' database
locals {
  role_grants = {
    apim_openai_user = {
      principal_id = var.apim_principal_id
      role         = "Cognitive Services OpenAI User"
      scope        = var.openai_account_id
    }
    apim_budget_state_reader = {
      principal_id = var.apim_principal_id
      role         = "Storage Blob Data Reader"
      scope        = var.store_container_scope
    }
    function_usage_receiver = {
      principal_id = var.function_principal_id
      role         = "Azure Event Hubs Data Receiver"
      scope        = var.usage_hub_id
    }
    function_llm_logs_receiver = {
      principal_id = var.function_principal_id
      role         = "Azure Event Hubs Data Receiver"
      scope        = var.gateway_logs_hub_id
    }
    function_store_contributor = {
      principal_id = var.function_principal_id
      role         = "Storage Blob Data Contributor"
      scope        = var.store_container_scope
    }
    function_host_storage_owner = {
      principal_id = var.function_principal_id
      role         = "Storage Blob Data Owner"
      scope        = var.host_storage_account_id
    }
    function_metrics_publisher = {
      principal_id = var.function_principal_id
      role         = "Monitoring Metrics Publisher"
      scope        = var.application_insights_id
    }
    function_openai_metrics_reader = {
      principal_id = var.function_principal_id
      role         = "Monitoring Reader"
      scope        = var.openai_account_id
    }
  }
}

resource "azurerm_role_assignment" "this" {
  for_each = local.role_grants

  principal_id                     = each.value.principal_id
  role_definition_name             = each.value.role
  scope                            = each.value.scope
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

# 00000000-0000-0000-0000-000000000002 is "Cosmos DB Built-in Data Contributor": read, create and
# query items and readMetadata (no account or container management). Scope: the ledger database,
# the narrowest the SDKs' metadata reads allow (a container scope is refused readMetadata on
# dbs/<database>, Azure/azure-cosmos-dotnet-v3#3638). On a 403 readMetadata on resource [/],
# widen it to var.cosmos_account_id: terraform/README.md "Known limits".
resource "azurerm_cosmosdb_sql_role_assignment" "function_ledger" {
  resource_group_name = var.context.resource_group_name
  account_name        = var.cosmos_account_name
  role_definition_id  = "${var.cosmos_account_id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002"
  principal_id        = var.function_principal_id
  scope               = var.cosmos_database_scope
}

resource "azurerm_managed_redis_access_policy_assignment" "function_counters" {
  managed_redis_id = var.redis_id
  object_id        = var.function_principal_id
}
