# The chargeback environment: APIM -> Event Hubs -> Functions -> Cosmos DB / Redis / Blob Storage.
# Read top to bottom: identities, monitoring, storage, Event Hubs, data services, the Function App,
# APIM, the grants between them, and the optional private network and full monitoring.

resource "azurerm_resource_group" "this" {
  name     = local.names.resource_group
  location = var.location
  tags     = local.tags
}

module "identity" {
  source = "./modules/identity"

  context = local.context

  names = {
    function = local.names.identity_function
    capture  = local.names.identity_capture
  }
}

module "monitoring" {
  source = "./modules/monitoring"

  context = local.context

  log_analytics_name        = local.names.log_analytics
  application_insights_name = local.names.application_insights
  retention_days            = var.log_retention_days
  daily_cap_gb              = var.log_daily_cap_gb
}

module "storage" {
  source = "./modules/storage"

  context = local.context

  data_account_name         = local.names.storage_data
  host_account_name         = local.names.storage_host
  store_container_name      = local.store_container
  capture_container_name    = local.capture_container
  deployment_container_name = local.deployment_container
  replication_type          = var.storage_replication_type
  soft_delete_days          = var.blob_soft_delete_days
  private_endpoints_enabled = var.private_endpoints_enabled
}

# Capture writes Avro files with its own identity, on the capture container only. Declared here,
# not in modules/access, because the hub's Capture must not be configured before the grant exists.
resource "azurerm_role_assignment" "capture_writer" {
  principal_id                     = module.identity.principal_ids["capture"]
  role_definition_name             = "Storage Blob Data Contributor"
  scope                            = module.storage.container_scopes["capture"]
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

module "eventhubs" {
  source = "./modules/eventhubs"

  context = local.context

  usage_namespace_name        = local.names.eventhub_namespace
  usage_hub_name              = local.usage_hub_name
  usage_consumer_group_name   = local.usage_consumer_group
  gateway_logs_namespace_name = local.names.eventhub_namespace_gw
  gateway_logs_hub_name       = local.gateway_logs_hub_name
  partition_count             = var.eventhub_partition_count
  retention_days              = var.eventhub_retention_days
  capacity                    = var.eventhub_capacity
  max_capacity                = var.eventhub_max_capacity
  capture_enabled             = var.eventhub_capture_enabled
  capture_identity_id         = module.identity.ids["capture"]
  capture_storage_account_id  = module.storage.accounts["data"].id
  capture_container_name      = module.storage.capture_container_name

  depends_on = [azurerm_role_assignment.capture_writer]
}

module "cosmos" {
  source = "./modules/cosmos"

  context = local.context

  account_name              = local.names.cosmos_account
  database_name             = local.cosmos_database
  container_name            = local.cosmos_container
  serverless                = var.cosmos_serverless
  max_throughput            = var.cosmos_max_throughput
  ledger_ttl_seconds        = var.cosmos_ledger_ttl_seconds
  zone_redundant            = var.zone_redundant
  private_endpoints_enabled = var.private_endpoints_enabled
}

module "redis" {
  source = "./modules/redis"

  context = local.context

  name                      = local.names.redis
  sku_name                  = var.redis_sku_name
  expected_requests_per_day = var.redis_expected_requests_per_day
  high_availability         = var.zone_redundant
  private_endpoints_enabled = var.private_endpoints_enabled
}

module "keyvault" {
  source = "./modules/keyvault"

  context = local.context

  name                      = local.names.key_vault
  purge_protection          = var.key_vault_purge_protection
  private_endpoints_enabled = var.private_endpoints_enabled
}

module "network" {
  source = "./modules/network"
  count  = var.private_endpoints_enabled ? 1 : 0

  context = local.context

  name                    = local.names.virtual_network
  address_space           = var.vnet_address_space
  data_storage_account_id = module.storage.accounts["data"].id
  host_storage_account_id = module.storage.accounts["host"].id
  usage_namespace_id      = module.eventhubs.usage_namespace_id
  cosmos_account_id       = module.cosmos.account_id
  redis_id                = module.redis.id
  key_vault_id            = module.keyvault.id
}

module "function_app" {
  source = "./modules/function_app"

  context = local.context

  name                                   = local.names.function_app
  service_plan_name                      = local.names.service_plan
  maximum_instance_count                 = var.function_maximum_instance_count
  instance_memory_mb                     = var.function_instance_memory_mb
  zone_redundant                         = var.zone_redundant
  identity_id                            = module.identity.ids["function"]
  identity_client_id                     = module.identity.client_ids["function"]
  identity_principal_id                  = module.identity.principal_ids["function"]
  deployment_container_endpoint          = module.storage.deployment_container_endpoint
  host_storage_account_name              = module.storage.accounts["host"].name
  data_blob_endpoint                     = module.storage.accounts["data"].blob_endpoint
  store_container_name                   = local.store_container
  store_prefix                           = var.environment
  eventhub_namespace_fqdn                = module.eventhubs.usage_namespace_fqdn
  eventhub_name                          = module.eventhubs.usage_hub_name
  consumer_group                         = module.eventhubs.usage_consumer_group_name
  llm_logs_eventhub_namespace_fqdn       = module.eventhubs.gateway_logs_namespace_fqdn
  llm_logs_eventhub_name                 = module.eventhubs.gateway_logs_hub_name
  llm_logs_consumer_group                = module.eventhubs.gateway_logs_consumer_group_name
  cosmos_account_name                    = module.cosmos.account_name
  cosmos_database_name                   = module.cosmos.database_name
  cosmos_container_name                  = module.cosmos.container_name
  cosmos_settle_seconds                  = var.cosmos_settle_seconds
  redis_hostname                         = module.redis.hostname
  redis_port                             = module.redis.port
  reference_dir                          = var.reference_dir_on_instance
  budgets_file_shipped                   = var.budgets_file_shipped
  application_insights_connection_string = module.monitoring.application_insights_connection_string
  subnet_id                              = var.private_endpoints_enabled ? module.network[0].functions_subnet_id : null
  package_path                           = var.function_package_path
  deploy_package                         = var.deploy_function_package
}

locals {
  # Named values the policies read as {{name}} (apim_policies/fragments). None is a secret.
  # The budget gate (fragments/chargeback-budget-*.xml): the folder the pipeline publishes
  # <subscription id>.json budget states in (CHARGEBACK_STORE's gateway/budgets/, the data
  # account's blob endpoint + container + prefix), and whether an unreadable state refuses the
  # call (503) instead of letting it through (terraform/README.md, "Budget gate").
  apim_named_values = {
    chargeback-cost-center-header  = var.cost_center_header
    chargeback-cost-center-map     = coalesce(join(";", [for id, team in var.teams : "${id}=${team.cost_center}" if team.cost_center != ""]), "none")
    chargeback-entra-validation    = var.entra_token_validation.enabled ? "enabled" : "disabled"
    chargeback-entra-tenant-ids    = coalesce(join(",", var.entra_token_validation.tenant_ids), "00000000-0000-0000-0000-000000000000")
    chargeback-entra-client-app-id = var.entra_token_validation.client_app_id
    chargeback-entra-audience      = var.entra_token_validation.audience
    chargeback-budget-state-url    = "${module.storage.accounts["data"].blob_endpoint}${local.store_container}/${var.environment}/gateway/budgets/"
    chargeback-budget-fail-closed  = var.budget_fail_closed ? "true" : "false"
  }

  # Fragment id = file name without .xml (the ids the API policy's include-fragment uses).
  apim_policy_fragments = {
    for file in fileset(local.policies_dir, "fragments/*.xml") :
    trimsuffix(basename(file), ".xml") => file("${local.policies_dir}/${file}")
  }
}

module "apim" {
  source = "./modules/apim"

  context = local.context

  name                              = local.names.apim
  sku_name                          = var.apim_sku_name
  zones                             = var.apim_zones
  publisher_name                    = var.apim_publisher_name
  publisher_email                   = var.apim_publisher_email
  openai_endpoint                   = var.openai_account.endpoint
  openai_api_spec_url               = var.openai_api_spec_url
  api_policy_xml                    = file("${local.policies_dir}/openai-api.policy.xml")
  policy_fragments                  = local.apim_policy_fragments
  named_values                      = local.apim_named_values
  usage_logger_name                 = "chargeback-usage-logger"
  usage_namespace_fqdn              = module.eventhubs.usage_namespace_fqdn
  usage_hub_id                      = module.eventhubs.usage_hub_id
  usage_hub_name                    = module.eventhubs.usage_hub_name
  gateway_logs_hub_name             = module.eventhubs.gateway_logs_hub_name
  diagnostics_authorization_rule_id = module.eventhubs.diagnostics_authorization_rule_id
  log_analytics_workspace_id        = var.monitoring_level == "full" ? module.monitoring.log_analytics_workspace_id : null
  teams                             = { for id, team in var.teams : id => { display_name = team.display_name, description = team.description } }
}

module "access" {
  source = "./modules/access"

  context = local.context

  apim_principal_id       = module.apim.principal_id
  function_principal_id   = module.identity.principal_ids["function"]
  usage_hub_id            = module.eventhubs.usage_hub_id
  gateway_logs_hub_id     = module.eventhubs.gateway_logs_hub_id
  openai_account_id       = var.openai_account.resource_id
  store_container_scope   = module.storage.container_scopes["store"]
  host_storage_account_id = module.storage.accounts["host"].id
  application_insights_id = module.monitoring.application_insights_id
  cosmos_account_id       = module.cosmos.account_id
  cosmos_account_name     = module.cosmos.account_name
  cosmos_database_scope   = module.cosmos.database_scope
  redis_id                = module.redis.id
}

module "observability" {
  source = "./modules/observability"
  count  = var.monitoring_level == "full" ? 1 : 0

  context = local.context

  action_group_name          = local.names.action_group
  alert_email_addresses      = var.alert_email_addresses
  log_analytics_workspace_id = module.monitoring.log_analytics_workspace_id
  application_insights_id    = module.monitoring.application_insights_id
  function_app_id            = module.function_app.id
  usage_namespace_id         = module.eventhubs.usage_namespace_id
  cosmos_account_id          = module.cosmos.account_id
  cosmos_ru_alert_threshold  = var.cosmos_max_throughput * 900 * 0.8 # 80% of the ceiling over 15 minutes
  key_vault_id               = module.keyvault.id
  data_storage_account_id    = module.storage.accounts["data"].id
  host_storage_account_id    = module.storage.accounts["host"].id
}
