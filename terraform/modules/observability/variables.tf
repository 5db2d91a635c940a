variable "action_group_name" {
  type        = string
  description = "Name of the action group."
}

variable "alert_email_addresses" {
  type        = list(string)
  description = "E-mail receivers of the alerts."
}

variable "log_analytics_workspace_id" {
  type        = string
  description = "Workspace the diagnostic settings send to."
}

variable "application_insights_id" {
  type        = string
  description = "Application Insights component."
}

variable "function_app_id" {
  type        = string
  description = "Function App."
}

variable "usage_namespace_id" {
  type        = string
  description = "Usage Event Hubs namespace."
}

variable "cosmos_account_id" {
  type        = string
  description = "Cosmos DB account."
}

variable "cosmos_ru_alert_threshold" {
  type        = number
  description = "Request units per 15 minutes above which the ledger alert fires."
}

variable "key_vault_id" {
  type        = string
  description = "Key Vault."
}

variable "data_storage_account_id" {
  type        = string
  description = "Data storage account."
}

variable "host_storage_account_id" {
  type        = string
  description = "Functions host storage account."
}
