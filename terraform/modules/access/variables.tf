variable "apim_principal_id" {
  type        = string
  description = "Object id of APIM's system-assigned identity."
}

variable "function_principal_id" {
  type        = string
  description = "Object id of the Function App's identity."
}

variable "usage_hub_id" {
  type        = string
  description = "Resource id of the usage hub."
}

variable "gateway_logs_hub_id" {
  type        = string
  description = "Resource id of the gateway logs hub (GatewayLogs and GatewayLlmLogs)."
}

variable "openai_account_id" {
  type        = string
  description = "Resource id of the Azure OpenAI account."
}

variable "store_container_scope" {
  type        = string
  description = "Resource id of the store container."
}

variable "host_storage_account_id" {
  type        = string
  description = "Resource id of the Functions host storage account."
}

variable "application_insights_id" {
  type        = string
  description = "Resource id of Application Insights."
}

variable "cosmos_account_id" {
  type        = string
  description = "Resource id of the Cosmos DB account."
}

variable "cosmos_account_name" {
  type        = string
  description = "Name of the Cosmos DB account."
}

variable "cosmos_database_scope" {
  type        = string
  description = "Data-plane scope of the ledger database."
}

variable "redis_id" {
  type        = string
  description = "Resource id of the Managed Redis instance."
}
