variable "name" {
  type        = string
  description = "Name of the Function App (at most 32 characters: longer names can collide on host ids)."
}

variable "service_plan_name" {
  type        = string
  description = "Name of the Flex Consumption plan."
}

variable "maximum_instance_count" {
  type        = number
  description = "Scale-out ceiling."
}

variable "instance_memory_mb" {
  type        = number
  description = "Memory per instance in MB."
}

variable "zone_redundant" {
  type        = bool
  description = "Balance the plan's instances across availability zones."
}

variable "identity_id" {
  type        = string
  description = "Resource id of the app's user-assigned identity."
}

variable "identity_client_id" {
  type        = string
  description = "Client id of the app's identity (DefaultAzureCredential, connection settings)."
}

variable "identity_principal_id" {
  type        = string
  description = "Object id of the app's identity (the Redis Entra ID user name)."
}

variable "deployment_container_endpoint" {
  type        = string
  description = "URL of the deployment container in the host storage account."
}

variable "host_storage_account_name" {
  type        = string
  description = "Host storage account (AzureWebJobsStorage__accountName)."
}

variable "data_blob_endpoint" {
  type        = string
  description = "Blob endpoint of the data account (CHARGEBACK_STORAGE_ACCOUNT_URL)."
}

variable "store_container_name" {
  type        = string
  description = "Container of CHARGEBACK_STORE."
}

variable "store_prefix" {
  type        = string
  description = "Prefix of CHARGEBACK_STORE inside its container."
}

variable "eventhub_namespace_fqdn" {
  type        = string
  description = "NAMESPACE.servicebus.windows.net of the usage hub."
}

variable "eventhub_name" {
  type        = string
  description = "Usage hub name."
}

variable "consumer_group" {
  type        = string
  description = "The pipeline's consumer group."
}

variable "llm_logs_eventhub_namespace_fqdn" {
  type        = string
  description = "NAMESPACE.servicebus.windows.net of the gateway logs hub (GatewayLlmLogs)."
}

variable "llm_logs_eventhub_name" {
  type        = string
  description = "Gateway logs hub name (the LLM-log trigger)."
}

variable "llm_logs_consumer_group" {
  type        = string
  description = "The pipeline's consumer group on the gateway logs hub."
}

variable "cosmos_account_name" {
  type        = string
  description = "Cosmos DB account of the ledger."
}

variable "cosmos_database_name" {
  type        = string
  description = "Cosmos DB database of the ledger."
}

variable "cosmos_container_name" {
  type        = string
  description = "Cosmos DB container of the ledger."
}

variable "cosmos_settle_seconds" {
  type        = number
  description = "CHARGEBACK_COSMOS_SETTLE_SECONDS."
}

variable "redis_hostname" {
  type        = string
  description = "Host name of the Redis endpoint."
}

variable "redis_port" {
  type        = number
  description = "TLS port of the Redis endpoint."
}

variable "reference_dir" {
  type        = string
  description = "Folder on the instance with deployments.csv, cost-centers.csv and budgets.csv."
}

variable "budgets_file_shipped" {
  type        = bool
  description = "Set CHARGEBACK_BUDGETS (the package has reference/budgets.csv)."
}

variable "application_insights_connection_string" {
  type        = string
  description = "Application Insights connection string."
  sensitive   = true
}

variable "subnet_id" {
  type        = string
  description = "Subnet for VNet integration (delegated to Microsoft.App/environments), or null."
  default     = null
}

variable "package_path" {
  type        = string
  description = "Zip-deploy package, relative to the Terraform working directory."
}

variable "deploy_package" {
  type        = bool
  description = "Deploy the package during apply."
}
