variable "name" {
  type        = string
  description = "Name of the Key Vault."
}

variable "purge_protection" {
  type        = bool
  description = "Purge protection."
}

variable "private_endpoints_enabled" {
  type        = bool
  description = "Deny public network access."
}
