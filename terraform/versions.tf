terraform {
  # 1.11+: write-only arguments (azapi sensitive_body); 1.9+: validations referring to other variables.
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    # Exact pins: a plan reviewed in CI is applied with the same provider code. Upgrade deliberately
    # (and refresh tests/terraform_fixtures/provider-arguments.json from the new release's docs).
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "= 4.81.0"
    }
    # Only for what azurerm 4.x cannot express (modules/function_app: the app settings; modules/apim:
    # the LLM logging of the API diagnostics, see README.md).
    azapi = {
      source  = "Azure/azapi"
      version = "= 2.12.0"
    }
  }

  # State in a storage account reached with Entra ID (no access key). The values are given at
  # `terraform init` time (-backend-config=...), see README.md and the CI workflow.
  backend "azurerm" {}
}
