variable "name" {
  type        = string
  description = "Name of the Managed Redis instance."
}

variable "sku_name" {
  type        = string
  description = "Managed Redis SKU."
}

variable "expected_requests_per_day" {
  type        = number
  description = "Requests a day at the planned peak: sizes the dedupe marks the SKU must hold."
}

variable "high_availability" {
  type        = bool
  description = "Replicated (zone-redundant where the region has zones) instead of a single node."
}

variable "private_endpoints_enabled" {
  type        = bool
  description = "Deny public network access."
}
