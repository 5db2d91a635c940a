output "id" {
  description = "Resource id of the instance."
  value       = azurerm_managed_redis.this.id
}

output "hostname" {
  description = "Host name of the database endpoint."
  value       = azurerm_managed_redis.this.hostname
}

output "port" {
  description = "TLS port of the database endpoint (10000)."
  value       = azurerm_managed_redis.this.default_database[0].port
}
