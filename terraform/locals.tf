# Every resource name, in one place, built only from var.workload, var.environment and
# var.unique_suffix so that tests/test_terraform.py can evaluate them for each environment and for
# the longest values the variables' validations allow, against Azure's naming rules.
locals {
  names = {
    resource_group        = "rg-${var.workload}-${var.environment}"
    identity_function     = "id-${var.workload}-${var.environment}-func"
    identity_capture      = "id-${var.workload}-${var.environment}-capture"
    log_analytics         = "log-${var.workload}-${var.environment}"
    application_insights  = "appi-${var.workload}-${var.environment}"
    storage_data          = "st${var.workload}${var.environment}${var.unique_suffix}"
    storage_host          = "st${var.workload}${var.environment}${var.unique_suffix}fn"
    eventhub_namespace    = "evhns-${var.workload}-${var.environment}-${var.unique_suffix}"
    eventhub_namespace_gw = "evhns-${var.workload}-${var.environment}-${var.unique_suffix}-gwlogs"
    cosmos_account        = "cosno-${var.workload}-${var.environment}-${var.unique_suffix}"
    redis                 = "redis-${var.workload}-${var.environment}-${var.unique_suffix}"
    key_vault             = "kv-${var.workload}-${var.environment}-${var.unique_suffix}"
    service_plan          = "asp-${var.workload}-${var.environment}"
    function_app          = "func-${var.workload}-${var.environment}-${var.unique_suffix}"
    apim                  = "apim-${var.workload}-${var.environment}-${var.unique_suffix}"
    virtual_network       = "vnet-${var.workload}-${var.environment}"
    action_group          = "ag-${var.workload}-${var.environment}"
  }

  tags = merge(var.tags, {
    workload    = var.workload
    environment = var.environment
    managed-by  = "terraform"
  })

  # What every module is told about the environment, passed whole as `context = local.context`
  # (README.md, "Module inputs"). The resource group's name is read from the resource, so that
  # every module's resources depend on the group.
  context = {
    location            = var.location
    resource_group_name = azurerm_resource_group.this.name
    tags                = local.tags
    name_prefix         = "${var.workload}-${var.environment}"
  }

  # The pipeline's fixed layout (pipeline/settings.py, docs/functions.md).
  usage_hub_name        = "apim-usage"
  usage_consumer_group  = "chargeback"
  gateway_logs_hub_name = "apim-gateway-logs"
  store_container       = "chargeback"
  capture_container     = "capture"
  deployment_container  = "app-package"
  cosmos_database       = "chargeback"
  cosmos_container      = "ledger"

  # The APIM policies are files of the repository, loaded as they are (never copied into HCL).
  policies_dir = "${path.root}/../apim_policies"
}
