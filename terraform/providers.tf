# The subscription comes from ARM_SUBSCRIPTION_ID, the identity from ARM_USE_OIDC/ARM_CLIENT_ID
# (CI) or the Azure CLI login (a person): nothing about credentials lives in this configuration.
provider "azurerm" {
  # Storage accounts have shared keys disabled: the provider must use Entra ID for data-plane calls.
  storage_use_azuread = true

  features {
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
    key_vault {
      purge_soft_delete_on_destroy = false
    }
    # Never poll the storage data plane (blob/queue/static-website endpoints): in prod the accounts
    # admit no public traffic, so from a CI runner those calls answer 403 and fail the apply and
    # every refresh (hashicorp/terraform-provider-azurerm#33454; the flag came in PR #27818). No
    # queue or static-website block is used, so nothing is lost.
    storage {
      data_plane_available = false
    }
  }
}

provider "azapi" {}
