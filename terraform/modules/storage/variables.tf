variable "data_account_name" {
  type        = string
  description = "Name of the data storage account (store and capture)."
}

variable "host_account_name" {
  type        = string
  description = "Name of the Functions host storage account (AzureWebJobsStorage and the deployment container)."
}

variable "store_container_name" {
  type        = string
  description = "Container of CHARGEBACK_STORE (snapshots, dead letters, reports)."
}

variable "capture_container_name" {
  type        = string
  description = "Container Event Hubs Capture writes Avro files to."
}

variable "deployment_container_name" {
  type        = string
  description = "Flex Consumption deployment container (the app package)."
}

variable "replication_type" {
  type        = string
  description = "Replication of both accounts."
}

variable "soft_delete_days" {
  type        = number
  description = "Blob and container soft-delete retention in days."
}

variable "private_endpoints_enabled" {
  type        = bool
  description = "Deny public network access (private endpoints are created by the network module)."
}
