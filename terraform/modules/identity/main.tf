# One user-assigned identity per caller, created before the services that use it, so that every
# role assignment exists before the first request and the ids are known at plan time (the Function
# App's settings need its identity's client and object ids).
resource "azurerm_user_assigned_identity" "this" {
  for_each = var.names

  name                = each.value
  location            = var.context.location
  resource_group_name = var.context.resource_group_name
  tags                = var.context.tags
}
