# The same file in every module (tests/test_terraform.py checks it): the object the root module
# builds once (its `context` local, in locals.tf) and passes whole to every module call.
variable "context" {
  type = object({
    location            = string
    resource_group_name = string
    tags                = map(string)
    name_prefix         = string
  })
  description = "Where and how every resource of the environment is created: region, resource group, tags, name prefix."
}
