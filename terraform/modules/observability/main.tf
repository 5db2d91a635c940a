# Full monitoring (staging, prod): every service's logs and metrics to Log Analytics, and alerts
# by e-mail on what stops or slows the pipeline. (APIM's gateway logs go to Log Analytics from the
# apim module's diagnostic setting.)
locals {
  diagnostic_targets = {
    function-app    = var.function_app_id
    eventhubs-usage = var.usage_namespace_id
    cosmos          = var.cosmos_account_id
    key-vault       = var.key_vault_id
    blob-data       = "${var.data_storage_account_id}/blobServices/default"
    blob-host       = "${var.host_storage_account_id}/blobServices/default"
  }
}

resource "azurerm_monitor_diagnostic_setting" "this" {
  for_each = local.diagnostic_targets

  name                           = "to-log-analytics"
  target_resource_id             = each.value
  log_analytics_workspace_id     = var.log_analytics_workspace_id
  log_analytics_destination_type = "Dedicated"

  enabled_log {
    category_group = "allLogs"
  }

  enabled_metric {
    category = "AllMetrics"
  }
}

resource "azurerm_monitor_action_group" "this" {
  name                = var.action_group_name
  resource_group_name = var.context.resource_group_name
  short_name          = "chargeback"
  tags                = var.context.tags

  dynamic "email_receiver" {
    for_each = toset(var.alert_email_addresses)

    content {
      name                    = "email-${index(var.alert_email_addresses, email_receiver.value)}"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }
}

locals {
  metric_alerts = {
    # Ingest failures propagate (the trigger retries the batch), so any exception means a stalled
    # partition or a store that refuses writes.
    ingest-exceptions = {
      scope       = var.application_insights_id
      namespace   = "microsoft.insights/components"
      metric      = "exceptions/count"
      aggregation = "Count"
      threshold   = 0
      severity    = 1
      description = "The Functions app raised exceptions: a batch is being retried (see traces for the partition and sequence range)."
    }
    eventhubs-throttled = {
      scope       = var.usage_namespace_id
      namespace   = "Microsoft.EventHub/namespaces"
      metric      = "ThrottledRequests"
      aggregation = "Total"
      threshold   = 0
      severity    = 2
      description = "The usage namespace throttles: APIM's usage events may be dropped. Raise eventhub_capacity or auto-inflate."
    }
    cosmos-throttled = {
      scope       = var.cosmos_account_id
      namespace   = "Microsoft.DocumentDB/databaseAccounts"
      metric      = "TotalRequestUnits"
      aggregation = "Total"
      threshold   = var.cosmos_ru_alert_threshold
      severity    = 3
      description = "The ledger consumes more request units than planned: check cosmos_max_throughput."
    }
  }
}

resource "azurerm_monitor_metric_alert" "this" {
  for_each = local.metric_alerts

  name                = "alert-${var.context.name_prefix}-${each.key}"
  resource_group_name = var.context.resource_group_name
  scopes              = [each.value.scope]
  description         = each.value.description
  severity            = each.value.severity
  frequency           = "PT5M"
  window_size         = "PT15M"
  tags                = var.context.tags

  criteria {
    metric_namespace = each.value.namespace
    metric_name      = each.value.metric
    aggregation      = each.value.aggregation
    operator         = "GreaterThan"
    threshold        = each.value.threshold
  }

  action {
    action_group_id = azurerm_monitor_action_group.this.id
  }
}

# The daily reconciliation (the reconcile_azure timer) records chargeback.reconciliation.gap_days:
# deployment-days of the month whose metered requests or tokens differ from Azure Monitor's by
# more than CHARGEBACK_RECONCILE_TOLERANCE. OpenTelemetry metrics reach Application Insights as
# customMetrics rows, so a log alert watches them (a metric alert would need custom-metric
# dimensions enabled).
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "reconciliation_gap" {
  name                 = "alert-${var.context.name_prefix}-reconciliation-gap"
  resource_group_name  = var.context.resource_group_name
  location             = var.context.location
  scopes               = [var.application_insights_id]
  description          = "The ledger's numbers differ from what Azure Monitor counted: lost events, missing LLM logs or traffic around APIM. See reports/reconciliation-YYYY-MM.csv and run chargeback reconcile-azure."
  severity             = 2
  evaluation_frequency = "PT1H"
  window_duration      = "P1D"
  tags                 = var.context.tags

  criteria {
    query                   = <<-KQL
      customMetrics
      | where name == "chargeback.reconciliation.gap_days"
      | summarize gap_days = max(value) by bin(timestamp, 1h)
      | where gap_days > 0
    KQL
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0
  }

  action {
    action_groups = [azurerm_monitor_action_group.this.id]
  }
}
