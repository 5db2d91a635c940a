output "apim_gateway_url" {
  description = "Where teams send their Azure OpenAI calls: <url>/openai/deployments/<deployment>/... with their subscription key in the api-key header."
  value       = module.apim.gateway_url
}

output "apim_subscription_ids" {
  description = "APIM subscription id per team: the subscriptionId of its usage events, to map in cost-centers.csv. The keys are read by the team in the portal (never output here)."
  value       = module.apim.subscription_ids
}

output "function_app_name" {
  description = "The Functions app (az functionapp deployment source config-zip --name <this> ... to redeploy a package)."
  value       = module.function_app.name
}

output "function_app_setting_names" {
  description = "Names of the app settings Terraform manages on the Function App."
  value       = module.function_app.app_setting_names
}

output "resource_group_name" {
  description = "Resource group of the environment."
  value       = azurerm_resource_group.this.name
}

output "storage_blob_endpoint" {
  description = "Blob endpoint of the data account (CHARGEBACK_STORAGE_ACCOUNT_URL)."
  value       = module.storage.accounts["data"].blob_endpoint
}

output "storage_store_url" {
  description = "Where snapshots, dead letters and reports live: <endpoint><container>/<environment>/{snapshots,dead-letters,reports}/ (CHARGEBACK_STORE)."
  value       = "${module.storage.accounts["data"].blob_endpoint}${local.store_container}/${var.environment}/"
}

output "storage_reports_url" {
  description = "Published chargeback reports (chargeback-YYYY-MM.csv / .parquet)."
  value       = "${module.storage.accounts["data"].blob_endpoint}${local.store_container}/${var.environment}/reports/"
}

output "storage_capture_url" {
  description = "Event Hubs Capture Avro files (replay source)."
  value       = "${module.storage.accounts["data"].blob_endpoint}${local.capture_container}/"
}

output "key_vault_uri" {
  description = "Key Vault of the environment."
  value       = module.keyvault.uri
}
