output "data_account_id" {
  description = "Resource id of the data account."
  value       = azurerm_storage_account.this["data"].id
}

output "data_account_name" {
  description = "Name of the data account."
  value       = azurerm_storage_account.this["data"].name
}

output "data_blob_endpoint" {
  description = "Blob endpoint of the data account (https://NAME.blob.core.windows.net/)."
  value       = azurerm_storage_account.this["data"].primary_blob_endpoint
}

output "host_account_id" {
  description = "Resource id of the Functions host account."
  value       = azurerm_storage_account.this["host"].id
}

output "host_account_name" {
  description = "Name of the Functions host account."
  value       = azurerm_storage_account.this["host"].name
}

output "host_blob_endpoint" {
  description = "Blob endpoint of the Functions host account."
  value       = azurerm_storage_account.this["host"].primary_blob_endpoint
}

output "store_container_scope" {
  description = "Role-assignment scope of the store container."
  value       = "${azurerm_storage_account.this["data"].id}/blobServices/default/containers/${azurerm_storage_container.this["store"].name}"
}

output "capture_container_scope" {
  description = "Role-assignment scope of the capture container."
  value       = "${azurerm_storage_account.this["data"].id}/blobServices/default/containers/${azurerm_storage_container.this["capture"].name}"
}

output "capture_container_name" {
  description = "Name of the capture container."
  value       = azurerm_storage_container.this["capture"].name
}

output "deployment_container_endpoint" {
  description = "URL of the Flex Consumption deployment container."
  value       = "${azurerm_storage_account.this["host"].primary_blob_endpoint}${azurerm_storage_container.this["deployment"].name}"
}
