variable "name" {
  type        = string
  description = "Name of the VNet (also the prefix of the private endpoints)."
}

variable "address_space" {
  type        = string
  description = "Address space of the VNet; split in two halves for the subnets."
}

variable "data_storage_account_id" {
  type        = string
  description = "Data storage account."
}

variable "host_storage_account_id" {
  type        = string
  description = "Functions host storage account."
}

variable "usage_namespace_id" {
  type        = string
  description = "Usage Event Hubs namespace."
}

variable "cosmos_account_id" {
  type        = string
  description = "Cosmos DB account."
}

variable "redis_id" {
  type        = string
  description = "Managed Redis instance."
}

variable "key_vault_id" {
  type        = string
  description = "Key Vault."
}
