output "functions_subnet_id" {
  description = "Subnet the Function App integrates with."
  value       = azurerm_subnet.functions.id
}
