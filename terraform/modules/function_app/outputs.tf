output "name" {
  description = "Name of the Function App."
  value       = azurerm_function_app_flex_consumption.this.name
}

output "id" {
  description = "Resource id of the Function App."
  value       = azurerm_function_app_flex_consumption.this.id
}

output "app_setting_names" {
  description = "Names of the app settings this configuration sets (values may name endpoints; never keys)."
  value       = sort(concat(keys(local.all_app_settings), ["APPLICATIONINSIGHTS_CONNECTION_STRING"]))
}
