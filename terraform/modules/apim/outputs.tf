output "id" {
  description = "Resource id of the APIM service."
  value       = azurerm_api_management.this.id
}

output "gateway_url" {
  description = "Gateway URL; the Azure OpenAI API is under /openai."
  value       = azurerm_api_management.this.gateway_url
}

output "principal_id" {
  description = "Object id of APIM's system-assigned identity."
  value       = azurerm_api_management.this.identity[0].principal_id
}

output "subscription_ids" {
  description = "APIM subscription ids by team (the subscriptionId of usage events)."
  value       = { for team, subscription in azurerm_api_management_subscription.team : team => subscription.subscription_id }
}
