output "usage_namespace_id" {
  description = "Resource id of the usage namespace."
  value       = azurerm_eventhub_namespace.usage.id
}

output "usage_namespace_fqdn" {
  description = "NAMESPACE.servicebus.windows.net of the usage namespace (EVENTHUB__fullyQualifiedNamespace)."
  value       = "${azurerm_eventhub_namespace.usage.name}.servicebus.windows.net"
}

output "usage_hub_id" {
  description = "Resource id of the usage hub (role-assignment scope)."
  value       = azurerm_eventhub.usage.id
}

output "usage_hub_name" {
  description = "Name of the usage hub."
  value       = azurerm_eventhub.usage.name
}

output "usage_consumer_group_name" {
  description = "The pipeline's consumer group."
  value       = azurerm_eventhub_consumer_group.pipeline.name
}

output "gateway_logs_hub_name" {
  description = "Name of the gateway logs hub."
  value       = azurerm_eventhub.gateway_logs.name
}

output "gateway_logs_namespace_fqdn" {
  description = "NAMESPACE.servicebus.windows.net of the gateway logs namespace (EVENTHUB_LLM_LOGS__fullyQualifiedNamespace)."
  value       = "${azurerm_eventhub_namespace.gateway_logs.name}.servicebus.windows.net"
}

output "gateway_logs_hub_id" {
  description = "Resource id of the gateway logs hub (role-assignment scope)."
  value       = azurerm_eventhub.gateway_logs.id
}

output "gateway_logs_consumer_group_name" {
  description = "The pipeline's consumer group on the gateway logs hub (the LLM-log trigger)."
  value       = azurerm_eventhub_consumer_group.gateway_logs.name
}

output "diagnostics_authorization_rule_id" {
  description = "Namespace authorization rule Azure Monitor streams with (an id, not a key)."
  value       = azurerm_eventhub_namespace_authorization_rule.diagnostics.id
}
