output "accounts" {
  description = "Resource id, name and blob endpoint (https://NAME.blob.core.windows.net/) of each account: data, host (the Functions host's)."
  value = {
    for key, account in azurerm_storage_account.this :
    key => { id = account.id, name = account.name, blob_endpoint = account.primary_blob_endpoint }
  }
}

output "container_scopes" {
  description = "Role-assignment scope of each container (store, capture, deployment)."
  value = {
    for key, container in azurerm_storage_container.this :
    key => "${azurerm_storage_account.this[local.containers[key].account].id}/blobServices/default/containers/${container.name}"
  }
}

output "capture_container_name" {
  description = "Name of the capture container."
  value       = azurerm_storage_container.this["capture"].name
}

output "deployment_container_endpoint" {
  description = "URL of the Flex Consumption deployment container."
  value       = "${azurerm_storage_account.this["host"].primary_blob_endpoint}${azurerm_storage_container.this["deployment"].name}"
}
