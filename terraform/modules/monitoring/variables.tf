variable "log_analytics_name" {
  type        = string
  description = "Name of the Log Analytics workspace."
}

variable "application_insights_name" {
  type        = string
  description = "Name of the Application Insights component."
}



variable "retention_days" {
  type        = number
  description = "Data retention in days."
}

variable "daily_cap_gb" {
  type        = number
  description = "Daily ingestion cap of the workspace in GB; -1 for none."
}
