variable "name" {
  type        = string
  description = "Name of the APIM service."
}

variable "sku_name" {
  type        = string
  description = "Tier and units, e.g. Developer_1."
}

variable "zones" {
  type        = list(string)
  description = "Availability zones (Premium), or empty."
}

variable "publisher_name" {
  type        = string
  description = "Publisher name."
}

variable "publisher_email" {
  type        = string
  description = "Publisher e-mail."
}

variable "openai_endpoint" {
  type        = string
  description = "Azure OpenAI endpoint (https://NAME.openai.azure.com/)."
}

variable "openai_api_spec_url" {
  type        = string
  description = "OpenAPI document APIM imports the API from."
}

variable "api_policy_xml" {
  type        = string
  description = "API-scope policy XML (apim_policies/openai-api.policy.xml)."
}

variable "policy_fragments" {
  type        = map(string)
  description = "Policy fragment XML by fragment id (apim_policies/fragments/<id>.xml)."
}

variable "named_values" {
  type        = map(string)
  description = "Named values the policies read ({{name}}), by name."
}

variable "usage_logger_name" {
  type        = string
  description = "Logger name the emit fragment's log-to-eventhub uses."
}

variable "usage_namespace_fqdn" {
  type        = string
  description = "NAMESPACE.servicebus.windows.net of the usage hub."
}

variable "usage_hub_id" {
  type        = string
  description = "Resource id of the usage hub: the scope of the gateway's Azure Event Hubs Data Sender role."
}

variable "usage_hub_name" {
  type        = string
  description = "Usage hub name."
}

variable "gateway_logs_hub_name" {
  type        = string
  description = "Hub that receives GatewayLogs and GatewayLlmLogs."
}

variable "diagnostics_authorization_rule_id" {
  type        = string
  description = "Namespace authorization rule Azure Monitor streams with."
}

variable "log_analytics_workspace_id" {
  type        = string
  description = "Workspace for gateway logs (full monitoring), or null."
  default     = null
}

variable "teams" {
  type = map(object({
    display_name = string
    description  = string
  }))
  description = "Teams by APIM subscription id."
}
