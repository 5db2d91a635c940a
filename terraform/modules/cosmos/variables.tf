variable "account_name" {
  type        = string
  description = "Name of the Cosmos DB account."
}

variable "database_name" {
  type        = string
  description = "Name of the SQL database."
}

variable "container_name" {
  type        = string
  description = "Name of the ledger container."
}

variable "serverless" {
  type        = bool
  description = "Serverless capacity mode."
}

variable "max_throughput" {
  type        = number
  description = "Autoscale ceiling of the ledger container in RU/s (provisioned mode)."
}

variable "ledger_ttl_seconds" {
  type        = number
  description = "Default TTL of ledger items; -1 keeps them forever."
}

variable "zone_redundant" {
  type        = bool
  description = "Zone-redundant write region."
}

variable "private_endpoints_enabled" {
  type        = bool
  description = "Deny public network access."
}
