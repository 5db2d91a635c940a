variable "usage_namespace_name" {
  type        = string
  description = "Name of the usage Event Hubs namespace."
}

variable "usage_hub_name" {
  type        = string
  description = "Name of the usage event hub (CHARGEBACK_EVENTHUB_NAME)."
}

variable "usage_consumer_group_name" {
  type        = string
  description = "The pipeline's consumer group (CHARGEBACK_CONSUMER_GROUP)."
}

variable "gateway_logs_namespace_name" {
  type        = string
  description = "Name of the namespace that receives APIM's diagnostic logs."
}

variable "gateway_logs_hub_name" {
  type        = string
  description = "Name of the hub that receives GatewayLogs and GatewayLlmLogs."
}

variable "partition_count" {
  type        = number
  description = "Partitions of the usage hub."
}

variable "retention_days" {
  type        = number
  description = "Retention of both hubs in days."
}

variable "capacity" {
  type        = number
  description = "Throughput units of the usage namespace."
}

variable "max_capacity" {
  type        = number
  description = "Auto-inflate ceiling; 0 for none."
}

variable "capture_enabled" {
  type        = bool
  description = "Capture the usage hub to Blob Storage in Avro."
}

variable "capture_identity_id" {
  type        = string
  description = "User-assigned identity Capture writes with (Storage Blob Data Contributor on the capture container)."
}

variable "capture_storage_account_id" {
  type        = string
  description = "Storage account of the capture container."
}

variable "capture_container_name" {
  type        = string
  description = "Capture container."
}
