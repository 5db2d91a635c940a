output "action_group_id" {
  description = "Action group of the alerts."
  value       = azurerm_monitor_action_group.this.id
}
