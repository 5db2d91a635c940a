output "account_id" {
  description = "Resource id of the account."
  value       = azurerm_cosmosdb_account.this.id
}

output "account_name" {
  description = "Name of the account."
  value       = azurerm_cosmosdb_account.this.name
}

output "database_name" {
  description = "Name of the SQL database."
  value       = azurerm_cosmosdb_sql_database.this.name
}

output "container_name" {
  description = "Name of the ledger container."
  value       = azurerm_cosmosdb_sql_container.ledger.name
}

output "database_scope" {
  description = "Data-plane role-assignment scope of the database. Not the container: the SDK reads database metadata, which a container-scoped assignment refuses (403, readMetadata)."
  value       = "${azurerm_cosmosdb_account.this.id}/dbs/${azurerm_cosmosdb_sql_database.this.name}"
}
