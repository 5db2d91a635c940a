variable "names" {
  type        = map(string)
  description = "Identity names by role: function, apim, capture."
}

variable "location" {
  type        = string
  description = "Azure region."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group of the identities."
}

variable "tags" {
  type        = map(string)
  description = "Tags of every resource."
}
