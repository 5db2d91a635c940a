# Inputs of the whole environment. Each environments/<env>.tfvars sets them for one environment;
# terraform/README.md explains every one.

# --- Identity of the environment and naming ---------------------------------------------------

variable "workload" {
  type        = string
  description = "Short workload name used in every resource name: 2-8 lowercase letters or digits, starting with a letter (storage account names allow 24 characters in all)."
  default     = "chargebk"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.workload))
    error_message = "workload must be 2-8 lowercase letters or digits and start with a letter."
  }
}

variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod. Part of every resource name and tag."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "unique_suffix" {
  type        = string
  description = "3-4 lowercase letters or digits that make the globally unique names (storage, Key Vault, Cosmos DB, Event Hubs, APIM, Redis, Function App) unique to your organisation. Pick once per environment and never change it: it is part of resource names."

  validation {
    condition     = can(regex("^[a-z0-9]{3,4}$", var.unique_suffix))
    error_message = "unique_suffix must be 3-4 lowercase letters or digits."
  }
}

variable "location" {
  type        = string
  description = "Azure region of every resource, e.g. swedencentral. Must offer Flex Consumption, Azure Managed Redis and (for zone redundancy) availability zones."
}

variable "tags" {
  type        = map(string)
  description = "Extra tags on every resource (workload, environment and managed-by are always added)."
  default     = {}
}

# --- APIM and Azure OpenAI ----------------------------------------------------------------------

variable "apim_sku_name" {
  type        = string
  description = "APIM tier and unit count, e.g. Developer_1 (no SLA), StandardV2_1, Premium_2. The Consumption tier is refused: it has no LLM gateway logs."

  validation {
    condition     = can(regex("^(Developer|Basic|Standard|Premium|BasicV2|StandardV2|PremiumV2)_[1-9][0-9]*$", var.apim_sku_name))
    error_message = "apim_sku_name must be <tier>_<units> with a tier other than Consumption."
  }
}

variable "apim_zones" {
  type        = list(string)
  description = "Availability zones of the APIM gateway units (Premium tier only), e.g. [\"1\", \"2\"]. Empty: no zone pinning."
  default     = []
}

variable "apim_publisher_name" {
  type        = string
  description = "Publisher name shown by APIM (developer portal, e-mails)."
}

variable "apim_publisher_email" {
  type        = string
  description = "Publisher e-mail address APIM sends service notifications to."
}

variable "openai_account" {
  type = object({
    resource_id = string
    endpoint    = string
  })
  description = "The Azure OpenAI account APIM fronts (managed elsewhere): its resource id (APIM's identity gets Cognitive Services OpenAI User on it) and endpoint (https://NAME.openai.azure.com/)."

  validation {
    condition     = startswith(var.openai_account.endpoint, "https://") && can(regex("/providers/Microsoft.CognitiveServices/accounts/[^/]+$", var.openai_account.resource_id))
    error_message = "openai_account needs an https endpoint and a Microsoft.CognitiveServices/accounts resource id."
  }
}

variable "openai_api_spec_url" {
  type        = string
  description = "OpenAPI document of the Azure OpenAI inference API that APIM imports (the data-plane spec of a GA api-version), at a fixed commit so that a plan imports the same document every time."
  # Azure/azure-rest-api-specs at commit 132b90d (not a branch, which moves): the GA 2024-10-21 spec.
  # Routes it does not define reach the policy through the wildcard operations (modules/apim).
  default = "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/132b90d1f06386034a6c2b34e903dbd3b03f9806/specification/cognitiveservices/data-plane/AzureOpenAI/inference/stable/2024-10-21/inference.json"
}

variable "teams" {
  type = map(object({
    display_name = string
    description  = optional(string, "")
    cost_center  = optional(string, "")
  }))
  description = "Teams that call Azure OpenAI through APIM, by APIM subscription id (the subscriptionId of every usage event). Each team gets its own product and one active subscription. cost_center is what the policy reports as the caller's costCenter; the authoritative mapping is cost-centers.csv."

  validation {
    condition     = alltrue([for key in keys(var.teams) : can(regex("^[a-z0-9][a-z0-9-]{2,79}$", key))])
    error_message = "team keys (APIM subscription ids) must be 3-80 lowercase letters, digits or hyphens."
  }
}

variable "cost_center_header" {
  type        = string
  description = "Request header a caller may name its cost center in (named value chargeback-cost-center-header)."
  default     = "x-cost-center"
}

variable "entra_token_validation" {
  type = object({
    enabled       = bool
    tenant_ids    = list(string)
    client_app_id = string
    audience      = string
  })
  description = "Require a Microsoft Entra ID token besides the subscription key (fragment chargeback-validate-entra-token): allowed tenants (GUIDs), the client application id (a GUID) and the audience (a GUID, or an api:// or https:// Application ID URI). Off, the placeholders are the zero GUID: the policy is saved with them but never runs (it switches on chargeback-entra-validation only)."
  default = {
    enabled       = false
    tenant_ids    = []
    client_app_id = "00000000-0000-0000-0000-000000000000"
    audience      = "00000000-0000-0000-0000-000000000000"
  }

  validation {
    condition     = !var.entra_token_validation.enabled || (length(var.entra_token_validation.tenant_ids) > 0 && var.entra_token_validation.client_app_id != "00000000-0000-0000-0000-000000000000" && var.entra_token_validation.audience != "00000000-0000-0000-0000-000000000000")
    error_message = "With entra_token_validation enabled, give tenant_ids, client_app_id and audience."
  }

  validation {
    condition     = alltrue([for id in concat(var.entra_token_validation.tenant_ids, [var.entra_token_validation.client_app_id]) : can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", id))])
    error_message = "entra_token_validation: tenant_ids and client_app_id are GUIDs (the tenant and the application (client) ID of the calling app registration)."
  }

  # v2.0 access tokens carry the API's application (client) ID as aud, v1.0 tokens its Application
  # ID URI (api://... or https://...): either is a valid audience, nothing else is.
  validation {
    condition     = can(regex("^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|(api|https)://[^\\s<>\"&]+)$", var.entra_token_validation.audience))
    error_message = "entra_token_validation.audience is the API's application (client) ID, a GUID, or its Application ID URI (api://... or https://...)."
  }
}

# --- Event Hubs ----------------------------------------------------------------------------------

variable "eventhub_partition_count" {
  type        = number
  description = "Partitions of the usage event hub: the ceiling of parallel Function instances. Cannot be changed later on the Standard tier."
  default     = 4

  validation {
    condition     = var.eventhub_partition_count >= 1 && var.eventhub_partition_count <= 32
    error_message = "eventhub_partition_count must be between 1 and 32."
  }
}

variable "eventhub_retention_days" {
  type        = number
  description = "Days the usage hub keeps events (Standard: 1-7). Redis dedupe marks live 8 days, so any redelivery from the hub finds its mark."
  default     = 7

  validation {
    condition     = var.eventhub_retention_days >= 1 && var.eventhub_retention_days <= 7
    error_message = "eventhub_retention_days must be between 1 and 7 (Standard tier)."
  }
}

variable "eventhub_capacity" {
  type        = number
  description = "Throughput units of the usage namespace (1 TU = 1 MB/s or 1,000 events/s in)."
  default     = 1
}

variable "eventhub_max_capacity" {
  type        = number
  description = "Auto-inflate ceiling in throughput units; 0 turns auto-inflate off."
  default     = 0
}

variable "eventhub_capture_enabled" {
  type        = bool
  description = "Capture the usage hub to Blob Storage in Avro (replay source beyond the hub's retention). Billed per throughput unit hour on the Standard tier."
  default     = true
}

# --- Functions -----------------------------------------------------------------------------------

variable "function_package_path" {
  type        = string
  description = "Zip-deploy package of the Functions app, relative to terraform/. `make package` builds it; CI adds the environment's reference maps to it before planning."
  default     = "../dist/chargeback-functions.zip"
}

variable "deploy_function_package" {
  type        = bool
  description = "Deploy function_package_path to the Function App during apply (az CLI, Entra ID). Off: infrastructure only, deploy the package separately."
  default     = true
}

variable "function_maximum_instance_count" {
  type        = number
  description = "Flex Consumption scale-out ceiling (40-1000). The Event Hub trigger never uses more instances than partitions."
  default     = 40
}

variable "function_instance_memory_mb" {
  type        = number
  description = "Memory per Flex Consumption instance: 512, 2048 or 4096 MB (DuckDB reports need 2048 or more)."
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.function_instance_memory_mb)
    error_message = "function_instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "reference_dir_on_instance" {
  type        = string
  description = "Folder on the Function instance holding deployments.csv, cost-centers.csv (and budgets.csv): the reference/ folder the CI adds at the root of the package, i.e. under the app's wwwroot."
  default     = "/home/site/wwwroot/reference"
}

variable "budgets_file_shipped" {
  type        = bool
  description = "The package's reference/ folder has budgets.csv: set CHARGEBACK_BUDGETS (a named budgets file must exist, or every batch fails)."
  default     = false
}

variable "budget_fail_closed" {
  type        = bool
  description = "The APIM budget gate refuses a call (503 BudgetStateUnavailable) when the subscription's budget state blob cannot be read; false (the default) lets it through with x-chargeback-budget: unknown."
  default     = false
}

variable "cosmos_settle_seconds" {
  type        = number
  description = "CHARGEBACK_COSMOS_SETTLE_SECONDS: how old a ledger item must be before a snapshot takes it (must exceed writer clock skew plus the longest create attempt)."
  default     = 120
}

# --- Data services -------------------------------------------------------------------------------

variable "cosmos_serverless" {
  type        = bool
  description = "Cosmos DB serverless (pay per request unit; single region, no zone redundancy). Off: provisioned autoscale throughput."
  default     = false
}

variable "cosmos_max_throughput" {
  type        = number
  description = "Autoscale ceiling in RU/s of the ledger container when not serverless (scales between 10% and 100% of it)."
  default     = 4000
}

variable "cosmos_ledger_ttl_seconds" {
  type        = number
  description = "Default TTL of ledger items in seconds; -1 keeps them forever. The pipeline's restatement window is 400 days (34560000 s): expire only items already snapshotted and past it."
  default     = -1

  validation {
    condition     = var.cosmos_ledger_ttl_seconds == -1 || var.cosmos_ledger_ttl_seconds >= 34560000
    error_message = "cosmos_ledger_ttl_seconds must be -1 or at least 34560000 (the 400-day restatement window)."
  }
}

variable "redis_sku_name" {
  type        = string
  description = "Azure Managed Redis SKU, e.g. Balanced_B0 (dev) or Balanced_B5 (prod). One primary shard of it must hold redis_expected_requests_per_day x 8 days of dedupe marks (terraform/README.md \"Sizing Redis\")."
  default     = "Balanced_B0"

  validation {
    condition     = can(regex("^(Balanced_B|MemoryOptimized_M|ComputeOptimized_X)[0-9]+$", var.redis_sku_name))
    error_message = "redis_sku_name: an Azure Managed Redis SKU such as Balanced_B5, MemoryOptimized_M10 or ComputeOptimized_X5."
  }
}

variable "redis_expected_requests_per_day" {
  type        = number
  description = "Requests a day through APIM at the peak you plan for: each leaves a dedupe mark in Redis for 8 days (NoEviction), all on the one shard of the {cb} hash tag, so one shard of redis_sku_name must hold this x 8 x about 210 bytes. terraform plan fails when it cannot."
  default     = 100000

  validation {
    condition     = var.redis_expected_requests_per_day >= 0
    error_message = "redis_expected_requests_per_day must be 0 or more."
  }
}

variable "zone_redundant" {
  type        = bool
  description = "Zone redundancy and high availability for the data services and the Function plan (Cosmos DB zones, Redis replicas, Flex zone redundancy). Needs zone-redundant storage (ZRS, GZRS or RAGZRS) and a region with zone-redundant Flex Consumption; the platform then keeps 2 always-ready instances per function (terraform/README.md \"Known limits\")."
  default     = false

  # A zone-redundant Flex Consumption app must use a zone-redundant storage account
  # (learn.microsoft.com/azure/reliability/reliability-functions, "Prerequisites").
  validation {
    condition     = !var.zone_redundant || contains(["ZRS", "GZRS", "RAGZRS"], var.storage_replication_type)
    error_message = "zone_redundant needs storage_replication_type ZRS, GZRS or RAGZRS: a zone-redundant Flex Consumption app must use zone-redundant storage."
  }
}

variable "storage_replication_type" {
  type        = string
  description = "Replication of both storage accounts: LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  default     = "LRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  }
}

variable "blob_soft_delete_days" {
  type        = number
  description = "Days deleted blobs and containers can be restored."
  default     = 7
}

variable "key_vault_purge_protection" {
  type        = bool
  description = "Purge protection on the Key Vault (cannot be turned off again; a destroyed vault keeps its name for the soft-delete period)."
  default     = false
}

# --- Monitoring ----------------------------------------------------------------------------------

variable "monitoring_level" {
  type        = string
  description = "basic: Log Analytics and Application Insights only. full: also diagnostic settings of every service to Log Analytics, APIM gateway logs to Log Analytics, and alerts."

  validation {
    condition     = contains(["basic", "full"], var.monitoring_level)
    error_message = "monitoring_level must be basic or full."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of Log Analytics and Application Insights data in days (30-730)."
  default     = 30
}

variable "log_daily_cap_gb" {
  type        = number
  description = "Daily ingestion cap of the Log Analytics workspace in GB; -1 for none."
  default     = -1
}

variable "alert_email_addresses" {
  type        = list(string)
  description = "Who the full-monitoring alerts e-mail."
  default     = []
}

# --- Network -------------------------------------------------------------------------------------

variable "private_endpoints_enabled" {
  type        = bool
  description = "Private endpoints for Storage, Cosmos DB, Redis, Key Vault and the usage Event Hubs namespace, a VNet-integrated Function App, and public network access turned off where the services allow it."
  default     = false
}

variable "vnet_address_space" {
  type        = string
  description = "Address space of the environment's VNet when private endpoints are enabled (a /24 or larger)."
  default     = "10.60.0.0/24"
}
