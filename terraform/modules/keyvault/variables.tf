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

variable "location" {
  type        = string
  description = "Azure region."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group."
}

variable "tags" {
  type        = map(string)
  description = "Tags of every resource."
}
