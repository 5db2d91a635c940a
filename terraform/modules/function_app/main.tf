# The Functions app (function_app.py, pipeline/functions/) on Flex Consumption, Python 3.11, with
# one user-assigned identity for everything: host storage, the Event Hub trigger, Cosmos DB, Redis,
# Blob Storage and Application Insights. No key or connection string of any service is set.
resource "azurerm_service_plan" "this" {
  #checkov:skip=CKV_AZURE_225:Fails in defaults only. Zone redundancy is the variable zone_redundant, off by default (one zone costs less) and on in prod.
  #checkov:skip=CKV_AZURE_212:Not applicable to Flex Consumption - there is no worker count; instances scale per event (up to one per Event Hub partition).
  name                   = var.service_plan_name
  location               = var.context.location
  resource_group_name    = var.context.resource_group_name
  os_type                = "Linux"
  sku_name               = "FC1"
  zone_balancing_enabled = var.zone_redundant
  tags                   = var.context.tags
}

locals {
  # What pipeline/settings.py (Settings.from_env) and docs/functions.md need. Emulator-only
  # settings (CHARGEBACK_COSMOS_KEY, AZURE_STORAGE_CONNECTION_STRING, CHARGEBACK_CREATE_RESOURCES)
  # are never set here; tests/test_terraform.py checks both directions.
  app_settings = {
    # The Event Hub trigger: hub, own consumer group, identity-based connection "EVENTHUB".
    CHARGEBACK_EVENTHUB_NAME          = var.eventhub_name
    CHARGEBACK_CONSUMER_GROUP         = var.consumer_group
    EVENTHUB__fullyQualifiedNamespace = var.eventhub_namespace_fqdn
    EVENTHUB__credential              = "managedidentity"
    EVENTHUB__clientId                = var.identity_client_id
    # The LLM-log trigger (pipeline/functions/llm_logs.py): the gateway logs hub the APIM
    # diagnostic setting streams GatewayLlmLogs to, its own consumer group, connection "EVENTHUB_LLM_LOGS".
    CHARGEBACK_LLM_LOGS_EVENTHUB_NAME          = var.llm_logs_eventhub_name
    CHARGEBACK_LLM_LOGS_CONSUMER_GROUP         = var.llm_logs_consumer_group
    EVENTHUB_LLM_LOGS__fullyQualifiedNamespace = var.llm_logs_eventhub_namespace_fqdn
    EVENTHUB_LLM_LOGS__credential              = "managedidentity"
    EVENTHUB_LLM_LOGS__clientId                = var.identity_client_id
    # The host's storage (checkpoints, leases, timer locks), with the same identity.
    AzureWebJobsStorage__accountName = var.host_storage_account_name
    AzureWebJobsStorage__credential  = "managedidentity"
    AzureWebJobsStorage__clientId    = var.identity_client_id
    # The host sends its telemetry with Entra ID (Monitoring Metrics Publisher on the component).
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "ClientId=${var.identity_client_id};Authorization=AAD"
    # DefaultAzureCredential (Cosmos DB, Blob, Redis) picks the user-assigned identity by client id.
    AZURE_CLIENT_ID = var.identity_client_id
    # The pipeline's backends, by URL (pipeline/settings.py).
    CHARGEBACK_HOME                  = "/tmp/chargeback" # writable; run-from-package wwwroot is read-only
    CHARGEBACK_LEDGER                = "cosmos://${var.cosmos_account_name}.documents.azure.com/${var.cosmos_database_name}/${var.cosmos_container_name}"
    CHARGEBACK_COUNTERS              = "rediss://${var.redis_hostname}:${var.redis_port}/0"
    CHARGEBACK_REDIS_USERNAME        = var.identity_principal_id
    CHARGEBACK_STORE                 = "az://${var.store_container_name}/${var.store_prefix}"
    CHARGEBACK_STORAGE_ACCOUNT_URL   = trimsuffix(var.data_blob_endpoint, "/")
    CHARGEBACK_COSMOS_SETTLE_SECONDS = tostring(var.cosmos_settle_seconds)
    # DuckDB (the daily report, LLM-usage reads): half the instance's memory, so the host and
    # Python keep the rest, and spills to the writable /tmp, not under the read-only package
    # mount a relative temp directory would resolve to (azure-review C5).
    CHARGEBACK_DUCKDB_MEMORY_LIMIT = "${floor(var.instance_memory_mb / 2)}MiB"
    CHARGEBACK_DUCKDB_TEMP_DIR     = "/tmp/chargeback-duckdb"
    # The reference maps ship in the package (reference/ at its root, added by CI per environment).
    CHARGEBACK_DEPLOYMENTS  = "${var.reference_dir}/deployments.csv"
    CHARGEBACK_COST_CENTERS = "${var.reference_dir}/cost-centers.csv"
  }

  # A named budgets file must exist (pipeline/bootstrap.py), so it is only named when shipped.
  budget_settings = var.budgets_file_shipped ? { CHARGEBACK_BUDGETS = "${var.reference_dir}/budgets.csv" } : {}

  all_app_settings = merge(local.app_settings, local.budget_settings)
}

resource "azurerm_function_app_flex_consumption" "this" {
  name                              = var.name
  location                          = var.context.location
  resource_group_name               = var.context.resource_group_name
  service_plan_id                   = azurerm_service_plan.this.id
  runtime_name                      = "python"
  runtime_version                   = "3.11"
  maximum_instance_count            = var.maximum_instance_count
  instance_memory_in_mb             = var.instance_memory_mb
  storage_container_type            = "blobContainer"
  storage_container_endpoint        = var.deployment_container_endpoint
  storage_authentication_type       = "UserAssignedIdentity"
  storage_user_assigned_identity_id = var.identity_id
  https_only                        = true
  virtual_network_subnet_id         = var.subnet_id
  # Deployments sign in with Entra ID (az CLI / CI); the basic-auth publishing profile is off.
  webdeploy_publish_basic_authentication_enabled = false
  app_settings                                   = local.all_app_settings
  tags                                           = var.context.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [var.identity_id]
  }

  site_config {
    application_insights_connection_string = var.application_insights_connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    http2_enabled                          = true
    remote_debugging_enabled               = false
    # The app has no HTTP functions: the site refuses every inbound request; the SCM endpoint
    # (deployments, Entra ID only) stays reachable.
    ip_restriction_default_action     = "Deny"
    scm_ip_restriction_default_action = "Allow"
  }
}

# azurerm 4.x writes AzureWebJobsStorage as a connection string with an EMPTY account key whenever
# the deployment storage uses a managed identity (hashicorp/terraform-provider-azurerm#29693), and
# the host then tries that string instead of AzureWebJobsStorage__*. This PUT replaces the whole
# app-settings collection with exactly ours, after creation and after every later change of the
# app (replace_triggered_by), so the broken setting never survives an apply.
resource "azapi_resource_action" "app_settings" {
  type        = "Microsoft.Web/sites/config@2024-04-01"
  resource_id = "${azurerm_function_app_flex_consumption.this.id}/config/appsettings"
  method      = "PUT"

  body = {
    properties = local.all_app_settings
  }

  sensitive_body = {
    properties = {
      APPLICATIONINSIGHTS_CONNECTION_STRING = var.application_insights_connection_string
    }
  }

  lifecycle {
    replace_triggered_by = [azurerm_function_app_flex_consumption.this]
  }
}

# Deploys the package `make package` builds (zip deploy through the Flex Consumption deployment
# container) with the caller's Entra ID login; runs again whenever the package's content changes.
# Rollback = apply with the previous package (see terraform/README.md).
resource "terraform_data" "package" {
  count = var.deploy_package ? 1 : 0

  triggers_replace = [
    filesha256(var.package_path),
    azurerm_function_app_flex_consumption.this.id,
  ]

  provisioner "local-exec" {
    command = "az functionapp deployment source config-zip --resource-group \"$RESOURCE_GROUP\" --name \"$APP_NAME\" --src \"$PACKAGE\""

    environment = {
      RESOURCE_GROUP = var.context.resource_group_name
      APP_NAME       = azurerm_function_app_flex_consumption.this.name
      PACKAGE        = var.package_path
    }
  }

  depends_on = [azapi_resource_action.app_settings]
}
