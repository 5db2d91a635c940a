output "log_analytics_workspace_id" {
  description = "Resource id of the Log Analytics workspace."
  value       = azurerm_log_analytics_workspace.this.id
}

output "application_insights_id" {
  description = "Resource id of Application Insights."
  value       = azurerm_application_insights.this.id
}

output "application_insights_connection_string" {
  description = "Application Insights connection string (an ingestion endpoint and instrumentation key, not a secret per Microsoft; marked sensitive by the provider)."
  value       = azurerm_application_insights.this.connection_string
  sensitive   = true
}
