output "role_assignment_ids" {
  description = "Role assignment ids by grant."
  value       = { for grant, assignment in azurerm_role_assignment.this : grant => assignment.id }
}
