# Log Analytics (every log and the Function App's Application Insights data) and Application
# Insights (the Functions host's telemetry and the pipeline's `chargeback.*` metrics).
resource "azurerm_log_analytics_workspace" "this" {
  name                = var.log_analytics_name
  location            = var.context.location
  resource_group_name = var.context.resource_group_name
  sku                 = "PerGB2018"
  retention_in_days   = var.retention_days
  daily_quota_gb      = var.daily_cap_gb
  # Queries and ingestion with Entra ID only; the Functions host and Azure Monitor use their identities.
  local_authentication_enabled = false
  tags                         = var.context.tags
}

resource "azurerm_application_insights" "this" {
  name                = var.application_insights_name
  location            = var.context.location
  resource_group_name = var.context.resource_group_name
  workspace_id        = azurerm_log_analytics_workspace.this.id
  application_type    = "other"
  retention_in_days   = var.retention_days
  # Kept on: the pipeline's OpenTelemetry exporter (pipeline/telemetry.py) sends with the
  # connection string only. The Functions host itself signs in with the app's identity
  # (APPLICATIONINSIGHTS_AUTHENTICATION_STRING). See terraform/README.md, "Known limits".
  local_authentication_enabled = true
  tags                         = var.context.tags
}
