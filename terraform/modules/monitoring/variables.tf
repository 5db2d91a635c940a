variable "log_analytics_name" {
  type        = string
  description = "Name of the Log Analytics workspace."
}

variable "application_insights_name" {
  type        = string
  description = "Name of the Application Insights component."
}

variable "location" {
  type        = string
  description = "Azure region."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group."
}

variable "retention_days" {
  type        = number
  description = "Data retention in days."
}

variable "daily_cap_gb" {
  type        = number
  description = "Daily ingestion cap of the workspace in GB; -1 for none."
}

variable "tags" {
  type        = map(string)
  description = "Tags of every resource."
}
