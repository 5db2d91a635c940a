output "ids" {
  description = "Resource ids by role."
  value       = { for role, identity in azurerm_user_assigned_identity.this : role => identity.id }
}

output "client_ids" {
  description = "Client (application) ids by role."
  value       = { for role, identity in azurerm_user_assigned_identity.this : role => identity.client_id }
}

output "principal_ids" {
  description = "Object (principal) ids by role."
  value       = { for role, identity in azurerm_user_assigned_identity.this : role => identity.principal_id }
}
