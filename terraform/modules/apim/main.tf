# The gateway teams call instead of Azure OpenAI. Its policies are the files of apim_policies/,
# loaded by the root module and passed in as they are: this module never contains policy XML.
# Identities: the system-assigned identity signs in to Azure OpenAI (the policy's
# authentication-managed-identity has no client-id) and to the usage Event Hub (the logger).
resource "azurerm_api_management" "this" {
  #checkov:skip=CKV_AZURE_107:APIM is the public gateway teams call; it reaches Azure OpenAI and Event Hubs with its managed identity. VNet integration (needed to close the usage namespace's public endpoint) is future work, see terraform/README.md "Known limits".
  #checkov:skip=CKV_AZURE_174:APIM's gateway must be publicly reachable by the teams' SDKs; access is by subscription key (and optionally an Entra ID token), every request is metered.
  name                          = var.name
  location                      = var.context.location
  resource_group_name           = var.context.resource_group_name
  publisher_name                = var.publisher_name
  publisher_email               = var.publisher_email
  sku_name                      = var.sku_name
  zones                         = length(var.zones) > 0 ? var.zones : null
  min_api_version               = "2021-08-01"
  public_network_access_enabled = true # the gateway teams call
  tags                          = var.context.tags

  identity {
    type = "SystemAssigned"
  }
}

# The gateway's identity may send to the usage hub before the logger that sends exists: with the
# grant in another module, the logger (and the policies using it) went live first, and APIM drops
# what log-to-eventhub cannot send. Role assignments can still take up to 10 minutes to apply
# (learn.microsoft.com/azure/role-based-access-control/troubleshooting), so events of the first
# minutes after a first apply may be lost: terraform/README.md "After terraform apply".
resource "azurerm_role_assignment" "usage_sender" {
  principal_id                     = azurerm_api_management.this.identity[0].principal_id
  role_definition_name             = "Azure Event Hubs Data Sender"
  scope                            = var.usage_hub_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

# log-to-eventhub logger-id in fragments/chargeback-emit-usage.xml. Entra ID: endpoint + identity,
# no connection string.
resource "azurerm_api_management_logger" "usage" {
  name                = var.usage_logger_name
  api_management_name = azurerm_api_management.this.name
  resource_group_name = var.context.resource_group_name
  description         = "APIM usage events (one per request) to the chargeback pipeline's hub"

  eventhub {
    name         = var.usage_hub_name
    endpoint_uri = var.usage_namespace_fqdn
  }

  depends_on = [azurerm_role_assignment.usage_sender]
}

resource "azurerm_api_management_named_value" "this" {
  for_each = var.named_values

  name                = each.key
  display_name        = each.key
  api_management_name = azurerm_api_management.this.name
  resource_group_name = var.context.resource_group_name
  value               = each.value
  secret              = false
}

resource "azurerm_api_management_policy_fragment" "this" {
  for_each = var.policy_fragments

  name              = each.key
  api_management_id = azurerm_api_management.this.id
  format            = "rawxml"
  value             = each.value

  depends_on = [azurerm_api_management_named_value.this, azurerm_api_management_logger.usage]
}

resource "azurerm_api_management_api" "openai" {
  name                  = "azure-openai"
  api_management_name   = azurerm_api_management.this.name
  resource_group_name   = var.context.resource_group_name
  revision              = "1"
  display_name          = "Azure OpenAI"
  path                  = "openai"
  protocols             = ["https"]
  service_url           = "${trimsuffix(var.openai_endpoint, "/")}/openai"
  subscription_required = true

  subscription_key_parameter_names {
    header = "api-key"
    query  = "api-key"
  }

  import {
    content_format = "openapi+json-link"
    content_value  = var.openai_api_spec_url
  }
}

# The imported spec (one GA api-version) has only POST /deployments/{deployment-id}/... operations.
# Every other Azure OpenAI route (the Responses API /responses, the v1 API /v1/...) would fail with
# OperationNotFound in APIM's built-in operation matching, never reaching Azure OpenAI and never
# metered. These catch-all operations route them through the same API-scope policy; the policy
# names the operation from the URL when its id starts with "wildcard-" (the contract with
# apim_policies/). The spec's own operations stay as they are.
locals {
  wildcard_operations = {
    wildcard-get    = "GET"
    wildcard-post   = "POST"
    wildcard-delete = "DELETE"
  }
}

resource "azurerm_api_management_api_operation" "wildcard" {
  for_each = local.wildcard_operations

  operation_id        = each.key
  api_name            = azurerm_api_management_api.openai.name
  api_management_name = azurerm_api_management.this.name
  resource_group_name = var.context.resource_group_name
  display_name        = "Any ${each.value} route (metered)"
  method              = each.value
  url_template        = "/*"
  description         = "Catch-all for Azure OpenAI routes the imported spec does not define (Responses API, /v1/...)."

  lifecycle {
    # Whether a new import (another spec) keeps operations the document does not define is not
    # documented: recreate these after every change of the import (deleting a missing operation is
    # a no-op for the provider).
    replace_triggered_by = [azurerm_api_management_api.openai.import]
  }
}

resource "azurerm_api_management_api_policy" "openai" {
  api_name            = azurerm_api_management_api.openai.name
  api_management_name = azurerm_api_management.this.name
  resource_group_name = var.context.resource_group_name
  xml_content         = var.api_policy_xml

  depends_on = [azurerm_api_management_policy_fragment.this]
}

# One product and one subscription per team: the subscription id is the subscriptionId of the
# team's usage events (cost-centers.csv maps it to a cost center). APIM generates the keys; they
# are read in the portal or with `az rest` by the team's owners, never written here.
resource "azurerm_api_management_product" "team" {
  for_each = var.teams

  product_id            = each.key
  display_name          = each.value.display_name
  description           = each.value.description
  api_management_name   = azurerm_api_management.this.name
  resource_group_name   = var.context.resource_group_name
  subscription_required = true
  approval_required     = true
  subscriptions_limit   = 1
  published             = true
}

resource "azurerm_api_management_product_api" "team" {
  for_each = var.teams

  product_id          = azurerm_api_management_product.team[each.key].product_id
  api_name            = azurerm_api_management_api.openai.name
  api_management_name = azurerm_api_management.this.name
  resource_group_name = var.context.resource_group_name
}

resource "azurerm_api_management_subscription" "team" {
  for_each = var.teams

  subscription_id     = each.key
  display_name        = each.value.display_name
  product_id          = azurerm_api_management_product.team[each.key].id
  api_management_name = azurerm_api_management.this.name
  resource_group_name = var.context.resource_group_name
  state               = "active"
  allow_tracing       = false
}

# GatewayLogs and GatewayLlmLogs (token counts per request; the azuremonitor diagnostics below turn
# LLM logging on with message logging off, so no prompt or completion text is logged) to the
# gateway-logs hub, and with full monitoring to Log Analytics as well.
resource "azurerm_monitor_diagnostic_setting" "gateway" {
  name                           = "apim-gateway-logs"
  target_resource_id             = azurerm_api_management.this.id
  eventhub_name                  = var.gateway_logs_hub_name
  eventhub_authorization_rule_id = var.diagnostics_authorization_rule_id
  log_analytics_workspace_id     = var.log_analytics_workspace_id
  log_analytics_destination_type = var.log_analytics_workspace_id == null ? null : "Dedicated"

  enabled_log {
    category = "GatewayLogs"
  }

  enabled_log {
    category = "GatewayLlmLogs"
  }
}

# The diagnostic setting above only routes the GatewayLlmLogs category. What APIM logs for LLM APIs
# is set on the "azuremonitor" diagnostic entities (the portal's APIs > Settings > Diagnostic Logs >
# Azure Monitor, which the portal creates along with a diagnostic setting and Terraform's diagnostic
# setting does not): the ARM property largeLanguageModel, added in API version 2024-06-01-preview,
# which azurerm 4.x cannot set (hashicorp/terraform-provider-azurerm#32227).
# Token counts only: requests.messages and responses.messages "none", so no prompt or completion text
# is ever logged (the ARM enum documents only "all" and is extensible; see terraform/README.md).
locals {
  llm_logs_without_messages = {
    logs      = "enabled"
    requests  = { messages = "none" }
    responses = { messages = "none" }
  }
}

# The Azure Monitor logger both diagnostics write to. Whether APIM creates it by itself is not
# documented, so it is PUT (create or update) rather than created: an azapi_resource would fail with
# "already exists" on an instance that has it. Again after APIM is replaced.
resource "azapi_resource_action" "azuremonitor_logger" {
  type        = "Microsoft.ApiManagement/service/loggers@2024-06-01-preview"
  resource_id = "${azurerm_api_management.this.id}/loggers/azuremonitor"
  method      = "PUT"

  body = {
    properties = {
      loggerType = "azureMonitor"
      isBuffered = true
    }
  }

  lifecycle {
    replace_triggered_by = [azurerm_api_management.this]
  }
}

# Service level (all APIs): the entity the portal creates with a diagnostic setting, which Terraform's
# diagnostic setting does not create. Sampling stays at its default, 100%.
resource "azapi_resource" "azuremonitor_diagnostic" {
  type      = "Microsoft.ApiManagement/service/diagnostics@2024-06-01-preview"
  name      = "azuremonitor"
  parent_id = azurerm_api_management.this.id

  body = {
    properties = {
      loggerId           = azapi_resource_action.azuremonitor_logger.resource_id
      largeLanguageModel = local.llm_logs_without_messages
    }
  }
}

# API level (azure-openai): overrides the service level for this API; the same settings, stated here
# so that the API's own LLM logging never depends on the service-wide default.
resource "azapi_resource" "openai_azuremonitor_diagnostic" {
  type      = "Microsoft.ApiManagement/service/apis/diagnostics@2024-06-01-preview"
  name      = "azuremonitor"
  parent_id = "${azurerm_api_management.this.id}/apis/${azurerm_api_management_api.openai.name}"

  body = {
    properties = {
      loggerId           = azapi_resource_action.azuremonitor_logger.resource_id
      largeLanguageModel = local.llm_logs_without_messages
    }
  }

  depends_on = [azapi_resource.azuremonitor_diagnostic]
}
