"""terraform/ checked statically (no Terraform CLI or Azure here): HCL parses, variables, module
wiring, file paths, secrets, names, provider arguments, policies, the Function App's settings
against pipeline/settings.py, least-privilege grants, terraform fmt (when a terraform
binary exists), and the delivery workflow. Each kind of mistake the checks exist for is seeded
into a copy of the repository to show that it is caught."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.adapters.azure.cosmos_ledger import INDEXING_POLICY
from pipeline.settings import Settings
from tests import terraform_static as static

REPO = Path(__file__).resolve().parent.parent
TERRAFORM = REPO / "terraform"
ENVIRONMENTS = ("dev", "staging", "prod")
WORKFLOW = REPO / ".github" / "workflows" / "deploy.yml"


@pytest.fixture(scope="module")
def config() -> static.Config:
    return static.load_config(TERRAFORM)


@pytest.fixture(scope="module")
def results() -> dict[str, list[str]]:
    return static.run_checks(REPO)


@pytest.mark.parametrize("check", static.CHECKS)
def test_static_check_passes(check: str, results: dict[str, list[str]]) -> None:
    assert results[check] == []


# --- seeded mistakes: each check fails on the mistake it exists for ------------------------------

@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of what the checks read: terraform/, apim_policies/ and the Makefile."""
    for folder in ("terraform", "apim_policies"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns(".terraform"))
    shutil.copy2(REPO / "Makefile", tmp_path / "Makefile")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def problems_of(repo: Path, check: str) -> list[str]:
    return static.run_checks(repo)[check]


def test_an_undeclared_variable_is_caught(copy: Path) -> None:
    edit(copy / "terraform/modules/cosmos/main.tf", "default_ttl           = var.ledger_ttl_seconds",
         "default_ttl           = var.ledger_ttl")
    assert "module cosmos: var.ledger_ttl is used but not declared" in problems_of(copy, "variables")


def test_a_variable_without_type_description_or_use_is_caught(copy: Path) -> None:
    with (copy / "terraform/variables.tf").open("a", encoding="utf-8") as handle:
        handle.write('\nvariable "forgotten" {\n  default = 1\n}\n')
    assert set(problems_of(copy, "variables")) == {
        "root module: variable forgotten has no type", "root module: variable forgotten has no description",
        "root module: variable forgotten is declared but never used"}


def test_a_missing_policy_file_is_caught(copy: Path) -> None:
    (copy / "apim_policies/openai-api.policy.xml").unlink()
    assert any("openai-api.policy.xml, which does not exist" in problem for problem in problems_of(copy, "paths"))
    assert "apim_policies/openai-api.policy.xml does not exist" in problems_of(copy, "policies")


def test_a_missing_fragment_is_caught(copy: Path) -> None:
    (copy / "apim_policies/fragments/chargeback-emit-usage.xml").unlink()
    assert any("includes fragment chargeback-emit-usage" in problem for problem in problems_of(copy, "policies"))


def test_a_key_in_a_tfvars_file_is_caught(copy: Path) -> None:
    with (copy / "terraform/environments/dev.tfvars").open("a", encoding="utf-8") as handle:
        handle.write('storage_account_key = "q8Xz3vN0kLm2Pw7Rt5Yb1Hc9Jd4Fg6Ks0Ae2Ui8Oo4Ll7Qm3Nn5Bv1Cx9Zz2Ww=="\n')
    problems = problems_of(copy, "secrets")
    assert any("long base64 token" in problem for problem in problems)
    assert "environments/dev.tfvars: storage_account_key is set to a literal value (keys and secrets never " \
           "belong here)" in problems
    assert "environments/dev.tfvars: storage_account_key is not a declared variable" in problems_of(copy, "tfvars")


def test_a_connection_string_or_key_attribute_is_caught(copy: Path) -> None:
    edit(copy / "terraform/modules/storage/outputs.tf", "name = account.name",
         "name = account.primary_connection_string")
    assert any("reads a key attribute" in problem for problem in problems_of(copy, "secrets"))


def test_an_unwired_or_unknown_module_input_is_caught(copy: Path) -> None:
    edit(copy / "terraform/main.tf", "  redis_id                = module.redis.id\n}",
         "  redis_identifier        = module.redis.id\n}")
    problems = problems_of(copy, "module wiring")
    assert "module access: required input redis_id is not wired" in problems
    assert "module access: input redis_identifier is not a variable of access" in problems


def test_a_reference_to_a_missing_output_is_caught(copy: Path) -> None:
    edit(copy / "terraform/main.tf", "module.redis.hostname", "module.redis.host")
    assert "root module: module.redis.host is not an output of redis" in problems_of(copy, "module wiring")


def test_a_module_call_without_the_context_object_is_caught(copy: Path) -> None:
    edit(copy / "terraform/main.tf", '  source = "./modules/redis"\n\n  context = local.context\n',
         '  source = "./modules/redis"\n\n')
    edit(copy / "terraform/main.tf", '  source = "./modules/keyvault"\n\n  context = local.context\n',
         '  source = "./modules/keyvault"\n\n  context = merge(local.context, { location = "westeurope" })\n')
    problems = problems_of(copy, "module wiring")
    assert "module redis: required input context is not wired" in problems
    assert "module redis: must be given context = local.context, got None" in problems
    assert any(problem.startswith("module keyvault: must be given context = local.context, got '${merge(")
               for problem in problems)


def test_a_context_field_the_root_does_not_build_is_caught(copy: Path) -> None:
    edit(copy / "terraform/modules/redis/main.tf", "location                  = var.context.location",
         "location                  = var.context.region")
    edit(copy / "terraform/modules/cosmos/context.tf", "    name_prefix         = string\n", "")
    problems = problems_of(copy, "module wiring")
    assert ("module redis: var.context.region is not a field of local.context (location, name_prefix, "
            "resource_group_name, tags)") in problems
    assert ("module cosmos: variable context has the fields location, resource_group_name, tags; local.context "
            "has location, name_prefix, resource_group_name, tags") in problems


def test_a_context_field_resolves_to_what_the_root_builds(copy: Path) -> None:
    edit(copy / "terraform/locals.tf", 'name_prefix         = "${var.workload}-${var.environment}"',
         'name_prefix         = "${var.workload}-fixed"')
    config = static.load_config(copy / "terraform")
    module = config.modules["observability"]
    assert static.resolve('"${var.context.name_prefix}.csv"', module, config) == "chargebk-fixed.csv"
    assert static.resolve("var.context.name_prefix", module, config) == "chargebk-fixed"
    assert static.resolve("var.context.location", module, config) is None  # var.location has no default


def test_a_module_declaring_what_the_context_gives_is_caught(copy: Path) -> None:
    with (copy / "terraform/modules/keyvault/variables.tf").open("a", encoding="utf-8") as handle:
        handle.write('\nvariable "location" {\n  type        = string\n  description = "Azure region."\n}\n')
    assert ("module keyvault: variable location is given by the context: read var.context.location instead"
            in problems_of(copy, "module wiring"))


def test_a_reference_to_an_undeclared_resource_or_local_is_caught(copy: Path) -> None:
    edit(copy / "terraform/modules/cosmos/main.tf", "account_name        = azurerm_cosmosdb_account.this.name",
         "account_name        = azurerm_cosmosdb_account.ledger.name")
    edit(copy / "terraform/main.tf", "store_container_name      = local.store_container",
         "store_container_name      = local.store_containers")
    problems = problems_of(copy, "references")
    assert "module cosmos: azurerm_cosmosdb_account.ledger is not declared in this module" in problems
    assert "root module: local.store_containers is not declared" in problems


def test_a_name_over_azure_limits_is_caught(copy: Path) -> None:
    locals_tf = copy / "terraform/locals.tf"
    edit(locals_tf, '${var.unique_suffix}fn"', '${var.unique_suffix}host"')
    problems = problems_of(copy, "names")
    assert any(problem.startswith("local.names.storage_host = 'stabcdefghstagingabcdhost'") for problem in problems)


def test_an_argument_the_provider_does_not_have_is_caught(copy: Path) -> None:
    # The azurerm 3.x spelling, removed in 4.x.
    edit(copy / "terraform/modules/cosmos/main.tf", "local_authentication_enabled          = false",
         "local_authentication_disabled         = true")
    assert ("module cosmos: azurerm_cosmosdb_account.this: local_authentication_disabled is not an argument of "
            "azurerm_cosmosdb_account") in problems_of(copy, "provider arguments")


def test_a_provider_requirement_missing_or_pinned_outside_the_root_is_caught(copy: Path) -> None:
    modules = copy / "terraform/modules"
    edit(modules / "function_app/versions.tf", '    azapi = {\n      source = "Azure/azapi"\n    }\n', "")
    edit(modules / "redis/versions.tf", 'source = "hashicorp/azurerm"',
         'source  = "hashicorp/azurerm"\n      version = ">= 4.0.0"')
    (modules / "keyvault/versions.tf").unlink()
    edit(copy / "terraform/versions.tf", 'version = "= 4.81.0"', 'version = "~> 4.81"')
    assert set(problems_of(copy, "providers")) == {
        "module function_app: uses provider azapi but declares no source for it in required_providers",
        "module keyvault: uses provider azurerm but declares no source for it in required_providers",
        "module redis: provider azurerm has a version (>= 4.0.0); the pins belong in the root module's versions.tf "
        "only",
        "root module: provider azurerm must be pinned to one release (version = \"= X.Y.Z\"), got '~> 4.81'"}


def test_a_provider_a_module_does_not_use_or_configures_itself_is_caught(copy: Path) -> None:
    modules = copy / "terraform/modules"
    edit(modules / "identity/versions.tf", '      source = "hashicorp/azurerm"\n    }\n',
         '      source = "hashicorp/azurerm"\n    }\n    azapi = {\n      source = "Azure/azapi"\n    }\n')
    with (modules / "identity/main.tf").open("a", encoding="utf-8") as handle:
        handle.write('\nprovider "azurerm" {\n  features {}\n}\n')
    assert set(problems_of(copy, "providers")) == {
        "module identity: requires provider azapi, which none of its resources uses",
        "module identity: configures a provider; provider blocks belong in the root module only"}


def test_an_undefined_named_value_is_caught(copy: Path) -> None:
    edit(copy / "terraform/main.tf", "chargeback-entra-audience      = var.entra_token_validation.audience\n", "")
    assert any("{{chargeback-entra-audience}}" in problem for problem in problems_of(copy, "policies"))


ZERO_GUID = "00000000-0000-0000-0000-000000000000"


def test_entra_placeholders_are_the_zero_guid_and_the_fragment_switches_on_the_named_value_only(
        config: static.Config) -> None:
    """Off, validate-azure-ad-token is saved with the zero GUID (not "none", which APIM may refuse
    when it checks the policy at save: azure-review C7) and never runs."""
    default = config.root.variables["entra_token_validation"]["default"]
    assert default["enabled"] is False
    assert static.unquote(default["client_app_id"]) == static.unquote(default["audience"]) == ZERO_GUID
    named = config.root.locals["apim_named_values"]
    assert named["chargeback-entra-tenant-ids"].endswith(f'"{ZERO_GUID}")}}')
    assert named["chargeback-entra-validation"] == '${var.entra_token_validation.enabled ? "enabled" : "disabled"}'
    fragment = (REPO / "apim_policies/fragments/chargeback-validate-entra-token.xml").read_text(encoding="utf-8")
    gate = '<when condition="@("{{chargeback-entra-validation}}"'
    assert fragment.count("<validate-azure-ad-token") == 1
    assert fragment.index(gate) < fragment.index("<validate-azure-ad-token") < fragment.index("</when>")


def refused_by_terraform(tmp_path: Path, variables: tuple[str, ...], cases: dict[str, str]) -> set[str]:
    """The cases (module arguments, in HCL) whose values the variables' own validations refuse,
    as terraform evaluates them: a module holding just those variable blocks, called once per
    case, and planned (no provider is needed)."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary here")
    text = (TERRAFORM / "variables.tf").read_text(encoding="utf-8")
    blocks = []
    for name in variables:
        start = text.index(f'variable "{name}"')
        ends = [end for end in (text.find('\nvariable "', start + 1), text.find("\n# ---", start)) if end > 0]
        blocks.append(text[start:min(ends)])
    (tmp_path / "variables").mkdir()
    (tmp_path / "variables" / "main.tf").write_text("\n".join(blocks), encoding="utf-8")
    (tmp_path / "main.tf").write_text("".join(
        f'module "{case}" {{\n  source = "./variables"\n{arguments}\n}}\n' for case, arguments in cases.items()),
        encoding="utf-8")
    environment = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    for command in (["init", "-backend=false", "-input=false"], ["plan", "-input=false", "-no-color"]):
        result = subprocess.run([terraform, f"-chdir={tmp_path}", *command], capture_output=True, text=True,
                                timeout=120, check=False, env=environment)
    assert "Invalid value for variable" in result.stderr or result.returncode == 0, result.stderr
    return set(re.findall(r'module "(\w+)"', result.stderr))


def test_entra_ids_that_are_not_guids_are_refused_by_terraform(tmp_path: Path) -> None:
    guid = "11111111-2222-3333-4444-555555555555"

    def entra(on: bool, tenants: list[str], app: str, audience: str) -> str:
        listed = ", ".join(f'"{tenant}"' for tenant in tenants)
        return (f"  entra_token_validation = {{ enabled = {str(on).lower()}, tenant_ids = [{listed}], "
                f'client_app_id = "{app}", audience = "{audience}" }}')

    cases = {
        "off_zero": entra(False, [], ZERO_GUID, ZERO_GUID),
        "on_guid": entra(True, [guid], guid, guid),
        "on_uri": entra(True, [guid], guid, f"api://{guid}"),
        "off_none_app": entra(False, [], "none", ZERO_GUID),
        "off_none_audience": entra(False, [], ZERO_GUID, "none"),
        "on_placeholders": entra(True, [guid], ZERO_GUID, ZERO_GUID),
        "on_bad_tenant": entra(True, ["contoso"], guid, guid),
    }
    assert refused_by_terraform(tmp_path, ("entra_token_validation",), cases) == {
        "off_none_app", "off_none_audience", "on_placeholders", "on_bad_tenant"}


def test_zone_redundancy_without_zone_redundant_storage_is_refused_by_terraform(tmp_path: Path,
                                                                             config: static.Config) -> None:
    cases = {f"{'zr' if zone else 'single'}_{replication}": f'  zone_redundant = {str(zone).lower()}\n'
             f'  storage_replication_type = "{replication}"'
             for zone in (True, False) for replication in ("LRS", "GRS", "ZRS", "GZRS", "RAGZRS")}
    assert refused_by_terraform(tmp_path, ("zone_redundant", "storage_replication_type"), cases) == {
        "zr_LRS", "zr_GRS"}
    for environment, values in config.tfvars.items():
        if values.get("zone_redundant"):
            assert static.unquote(values["storage_replication_type"]) in {"ZRS", "GZRS", "RAGZRS"}, environment


def test_policy_xml_written_into_hcl_is_caught(copy: Path) -> None:
    edit(copy / "terraform/main.tf", 'file("${local.policies_dir}/openai-api.policy.xml")',
         '"<policies><inbound><base /></inbound></policies>"')
    assert any("policy XML is written in HCL" in problem for problem in problems_of(copy, "policies"))


def test_the_function_package_is_accepted_only_as_a_make_target_output(copy: Path) -> None:
    assert problems_of(copy, "paths") == []  # dist/ is absent in the copy: `make package` builds it
    edit(copy / "Makefile", "--out dist/chargeback-functions.zip", "--out dist/other.zip")
    assert any("chargeback-functions.zip, which does not exist" in problem for problem in problems_of(copy, "paths"))


def test_a_missing_or_renamed_wildcard_operation_or_a_branch_spec_url_is_caught(copy: Path) -> None:
    edit(copy / "terraform/modules/apim/main.tf", '    wildcard-delete = "DELETE"\n', "")
    edit(copy / "terraform/modules/apim/main.tf", "wildcard-get    =", "catchall-get    =")
    edit(copy / "terraform/variables.tf", "azure-rest-api-specs/132b90d1f06386034a6c2b34e903dbd3b03f9806/",
         "azure-rest-api-specs/main/")
    with (copy / "terraform/environments/dev.tfvars").open("a", encoding="utf-8") as handle:
        handle.write('openai_api_spec_url = "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/x.json"\n')
    problems = problems_of(copy, "apim routes")
    assert set(problems) == {
        "module apim: wildcard operation wildcard-delete (DELETE /*) is missing: routes the spec lacks would end in "
        "404 OperationNotFound, unmetered",
        "module apim: wildcard operation wildcard-get (GET /*) is missing: routes the spec lacks would end in 404 "
        "OperationNotFound, unmetered",
        "module apim: operation catchall-get (GET /*) is not one of the wildcard operations the policy expects "
        "(wildcard-get, wildcard-post, wildcard-delete)",
        "module apim: the spec URL https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/specification/"
        "cognitiveservices/data-plane/AzureOpenAI/inference/stable/2024-10-21/inference.json is not pinned to a "
        "commit (raw.githubusercontent.com/OWNER/REPO/<40-hex commit>/...)",
        "environments/dev.tfvars: openai_api_spec_url https://raw.githubusercontent.com/Azure/azure-rest-api-specs/"
        "main/x.json is not pinned to a commit"}


def test_llm_message_logging_or_llm_logs_disabled_is_caught(copy: Path) -> None:
    main_tf = copy / "terraform/modules/apim/main.tf"
    edit(main_tf, '    logs      = "enabled"', '    logs      = "disabled"')
    edit(main_tf, '    requests  = { messages = "none" }',
         '    requests  = { messages = "all", maxSizeInBytes = 32768 }')
    edit(main_tf, '    responses = { messages = "none" }\n', "")
    problems = problems_of(copy, "llm logging")
    for resource in ("azapi_resource.azuremonitor_diagnostic", "azapi_resource.openai_azuremonitor_diagnostic"):
        assert f"module apim: {resource}: largeLanguageModel.logs must be \"enabled\" (else no GatewayLlmLogs), got " \
               "'\"disabled\"'" in problems
        assert f"module apim: {resource}: largeLanguageModel.requests.messages must be \"none\" (no prompt or " \
               "completion text is ever logged), got 'all'" in problems
        assert f"module apim: {resource}: largeLanguageModel.responses.messages must be \"none\" (no prompt or " \
               "completion text is ever logged), got None" in problems
    assert len(problems) == 6


def test_an_llm_diagnostic_on_the_wrong_api_version_parent_or_logger_is_caught(copy: Path) -> None:
    main_tf = copy / "terraform/modules/apim/main.tf"
    edit(main_tf, "service/apis/diagnostics@2024-06-01-preview", "service/apis/diagnostics@2024-05-01")
    edit(main_tf, '/apis/${azurerm_api_management_api.openai.name}"', '/apis/other"')
    edit(main_tf, '  resource_id = "${azurerm_api_management.this.id}/loggers/azuremonitor"',
         '  resource_id = "${azurerm_api_management.this.id}/loggers/chargeback-usage-logger"')
    edit(main_tf, '  type      = "Microsoft.ApiManagement/service/diagnostics@2024-06-01-preview"\n  name      = '
         '"azuremonitor"', '  type      = "Microsoft.ApiManagement/service/diagnostics@2024-06-01-preview"\n'
         '  name      = "applicationinsights"')
    problems = problems_of(copy, "llm logging")
    api, service = "module apim: azapi_resource.openai_azuremonitor_diagnostic", \
        "module apim: azapi_resource.azuremonitor_diagnostic"
    assert set(problems) == {
        f"{api}: API version '2024-05-01' has no largeLanguageModel (first in 2024-06-01-preview)",
        f"{api}: parent_id must be ${{azurerm_api_management.this.id}}/apis/${{azurerm_api_management_api.openai."
        f"name}}, got '\"${{azurerm_api_management.this.id}}/apis/other\"'",
        f"{service}: name must be 'azuremonitor' (the Azure Monitor diagnostic), got '\"applicationinsights\"'",
        *(f"{where}: the logger's resource_id must end in /loggers/azuremonitor, got '\"${{azurerm_api_management."
          f"this.id}}/loggers/chargeback-usage-logger\"'" for where in (api, service))}


# --- APIM: every Azure OpenAI route is metered, GatewayLlmLogs carry token counts only -----------

# The imported spec's routes (Azure/azure-rest-api-specs at the pinned commit, 2024-10-21 GA
# inference.json: all POST /deployments/{deployment-id}/...), and the catch-all operations Terraform
# adds for every other route: (operation id, method, URL template).
SPEC_ROUTES = {"completions", "embeddings", "chat/completions", "audio/transcriptions", "audio/translations",
               "images/generations"}
WILDCARD_ROUTES = {("wildcard-get", "GET", "/*"), ("wildcard-post", "POST", "/*"), ("wildcard-delete", "DELETE", "/*")}
PINNED_SPEC = ("https://raw.githubusercontent.com/Azure/azure-rest-api-specs/132b90d1f06386034a6c2b34e903dbd3b03f9806/"
               "specification/cognitiveservices/data-plane/AzureOpenAI/inference/stable/2024-10-21/inference.json")


def test_every_azure_openai_route_reaches_the_policy(config: static.Config) -> None:
    """The Responses API (/openai/responses, /openai/v1/responses) and every /openai/v1/... call match
    no operation of the 2024-10-21 spec (its six routes are POST /deployments/{id}/...): the
    wildcard operations take them to the API policy instead of a 404 OperationNotFound."""
    module = config.modules["apim"]
    assert static.api_operations(module) == WILDCARD_ROUTES
    operation = module.resources[("azurerm_api_management_api_operation", "wildcard")]
    assert operation["api_name"] == "${azurerm_api_management_api.openai.name}"
    assert operation["lifecycle"][0]["replace_triggered_by"] == ["${azurerm_api_management_api.openai.import}"]
    api = module.resources[("azurerm_api_management_api", "openai")]
    assert static.unquote(api["path"]) == "openai"
    assert api["import"][0]["content_format"] == '"openapi+json-link"'
    spec = static.resolve(api["import"][0]["content_value"], module, config)
    assert spec == PINNED_SPEC and re.search(r"/[0-9a-f]{40}/", spec)
    readme = (TERRAFORM / "README.md").read_text(encoding="utf-8")  # lists every route, spec's and wildcard
    assert all(f"/deployments/{{deployment-id}}/{route}" in readme for route in SPEC_ROUTES)
    assert all(f"`{operation_id}`" in readme for operation_id, _, _ in WILDCARD_ROUTES)


def test_gateway_llm_logs_are_on_with_message_logging_off(config: static.Config) -> None:
    """The service's and the azure-openai API's azuremonitor diagnostics: LLM logs enabled, prompts
    and completions never logged, written to the azuremonitor logger; the diagnostic setting that
    routes GatewayLlmLogs to the gateway-logs hub stays."""
    module = config.modules["apim"]
    api_diagnostic = module.resources[("azapi_resource", "openai_azuremonitor_diagnostic")]
    assert api_diagnostic["type"] == '"Microsoft.ApiManagement/service/apis/diagnostics@2024-06-01-preview"'
    assert api_diagnostic["name"] == '"azuremonitor"'
    assert api_diagnostic["parent_id"] == \
        '"${azurerm_api_management.this.id}/apis/${azurerm_api_management_api.openai.name}"'
    service_diagnostic = module.resources[("azapi_resource", "azuremonitor_diagnostic")]
    assert service_diagnostic["type"] == '"Microsoft.ApiManagement/service/diagnostics@2024-06-01-preview"'
    assert service_diagnostic["parent_id"] == "${azurerm_api_management.this.id}"
    for diagnostic in (api_diagnostic, service_diagnostic):
        properties = diagnostic["body"]["properties"]
        assert properties["loggerId"] == "${azapi_resource_action.azuremonitor_logger.resource_id}"
        assert properties["largeLanguageModel"] == "${local.llm_logs_without_messages}"
        assert "schema_validation_enabled" not in diagnostic
    assert module.locals["llm_logs_without_messages"] == {
        "logs": '"enabled"', "requests": {"messages": '"none"'}, "responses": {"messages": '"none"'}}
    logger = module.resources[("azapi_resource_action", "azuremonitor_logger")]
    assert logger["type"] == '"Microsoft.ApiManagement/service/loggers@2024-06-01-preview"'
    assert logger["resource_id"] == '"${azurerm_api_management.this.id}/loggers/azuremonitor"'
    assert logger["method"] == '"PUT"'
    assert logger["body"]["properties"] == {"loggerType": '"azureMonitor"', "isBuffered": True}
    setting = module.resources[("azurerm_monitor_diagnostic_setting", "gateway")]
    assert {static.unquote(log["category"]) for log in setting["enabled_log"]} == {"GatewayLogs", "GatewayLlmLogs"}
    assert static.provider_requirements(module)["azapi"] == ("Azure/azapi", None)


# --- one context object for every module -------------------------------------------------------

def test_every_module_takes_the_one_context_object_and_not_its_parts(config: static.Config) -> None:
    """The root builds local.context once and passes it whole; each module declares it (the same
    context.tf everywhere) and none declares location, resource_group_name or tags any more."""
    assert config.root.locals["context"] == {
        "location": "${var.location}",
        "resource_group_name": "${azurerm_resource_group.this.name}",  # the modules depend on the group
        "tags": "${local.tags}",
        "name_prefix": '"${var.workload}-${var.environment}"',
    }
    context_files = {(TERRAFORM / "modules" / name / "context.tf").read_text(encoding="utf-8")
                     for name in config.modules}
    assert len(context_files) == 1, "modules/*/context.tf must be the same file in every module"
    assert set(config.modules) == {path.parent.name for path in TERRAFORM.glob("modules/*/main.tf")}
    for name, module in config.modules.items():
        assert static.object_fields(module.variables["context"]["type"]) == set(config.root.locals["context"])
        assert not {"location", "resource_group_name", "tags", "name_prefix"} & module.variables.keys(), name
        assert config.root.calls[name]["context"] == "${local.context}", name


# --- the Function App provides what the pipeline reads ------------------------------------------

# Every environment variable Settings reads (Settings.variables()), by what production does with it.
PRODUCTION = {"CHARGEBACK_HOME", "CHARGEBACK_LEDGER", "CHARGEBACK_COUNTERS", "CHARGEBACK_STORE", "AZURE_CLIENT_ID",
              "CHARGEBACK_STORAGE_ACCOUNT_URL", "CHARGEBACK_REDIS_USERNAME", "CHARGEBACK_DEPLOYMENTS",
              "CHARGEBACK_COST_CENTERS", "CHARGEBACK_COSMOS_SETTLE_SECONDS", "CHARGEBACK_DUCKDB_MEMORY_LIMIT",
              "CHARGEBACK_DUCKDB_TEMP_DIR"}
EMULATOR_ONLY = {"CHARGEBACK_COSMOS_KEY", "AZURE_STORAGE_CONNECTION_STRING", "CHARGEBACK_CREATE_RESOURCES"}
OPTIONAL = {
    "CHARGEBACK_PRICES": "unset: the catalog shipped in the package (pipeline/data/prices.csv)",
    "CHARGEBACK_BUDGETS": "set only when the package ships reference/budgets.csv (a named file must exist)",
    "CHARGEBACK_CAPACITY": "unset: $CHARGEBACK_HOME/capacity.csv when present (PTU deployments; a named file must "
                           "exist)",
    "CHARGEBACK_PTU_WEIGHTS": "unset: the PTU weights shipped in the package (pipeline/data/ptu-weights.csv)",
    "CHARGEBACK_PTU_IDLE_OWNER": "unset: idle PTU capacity is spread over its users, unless a capacity row names "
                                 "its owner",
    "CHARGEBACK_REPORT_FORMATS": "unset: the daily timer publishes every format (csv, parquet, focus, html)",
    "CHARGEBACK_FOCUS_BILLING_ACCOUNT_ID": "unset: the FOCUS rows name the chargeback's own billing account",
    "CHARGEBACK_FOCUS_BILLING_ACCOUNT_NAME": "unset: the FOCUS rows name the chargeback's own billing account",
    "CHARGEBACK_METRICS": "unset: metrics go to Application Insights (its connection string is set)",
    "CHARGEBACK_LLM_LOG_STALE_HOURS": "unset: warn when streams came and no LLM-log record did for 6 hours",
    "CHARGEBACK_RECONCILE_TOLERANCE": "unset: the daily reconciliation reports gaps over 1% of Azure Monitor's count",
}
# Read by the CLI only: who records corrections (`chargeback correct` without --by); where
# `chargeback consume` (a container, not the Function App) keeps its checkpoints.
CLI_ONLY = {"CHARGEBACK_USER", "USER", "USERNAME", "CHARGEBACK_CHECKPOINTS"}
# What docs/functions.md lists for the Functions host and bindings besides the pipeline's settings.
BINDINGS = {"CHARGEBACK_EVENTHUB_NAME", "CHARGEBACK_CONSUMER_GROUP", "EVENTHUB__fullyQualifiedNamespace",
            "CHARGEBACK_LLM_LOGS_EVENTHUB_NAME", "CHARGEBACK_LLM_LOGS_CONSUMER_GROUP",
            "EVENTHUB_LLM_LOGS__fullyQualifiedNamespace",
            "AzureWebJobsStorage__accountName", "APPLICATIONINSIGHTS_CONNECTION_STRING"}
NEVER = EMULATOR_ONLY | {"AzureWebJobsStorage", "EVENTHUB", "EVENTHUB_LLM_LOGS", "APPINSIGHTS_INSTRUMENTATIONKEY",
                         "WEBSITE_TIME_ZONE",
                         "DEPLOYMENT_STORAGE_CONNECTION_STRING", "WEBSITE_RUN_FROM_PACKAGE"}
# Read only to name the source of events when the trigger uses a connection string (never in production).
CONNECTION_STRING_FALLBACK = {"EVENTHUB"}


def terraform_app_settings(config: static.Config) -> dict[str, str]:
    """App setting name -> HCL expression, as the function_app module sets them."""
    module = config.modules["function_app"]
    settings = {key: value for key, value in module.locals["app_settings"].items() if key not in static._MARKERS}
    settings |= dict(re.findall(r"(\w+)\s*=\s*(\"[^\"]*\")", module.locals["budget_settings"]))
    app = module.resources[("azurerm_function_app_flex_consumption", "this")]
    site_config = app["site_config"][0]
    if site_config.get("application_insights_connection_string"):
        settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] = site_config["application_insights_connection_string"]
    return settings


def test_every_setting_the_pipeline_reads_is_classified() -> None:
    read = set(Settings.variables())
    assert read == (PRODUCTION | EMULATOR_ONLY | set(OPTIONAL) | CLI_ONLY | CONNECTION_STRING_FALLBACK
                    | (BINDINGS & read)), \
        "a new setting in pipeline/settings.py: decide here whether the Function App sets it (and set it in " \
        "terraform/modules/function_app)"
    # Every field of Settings is filled from the environment by from_env.
    assert all(field.metadata.get("variables") for field in fields(Settings))
    assert Settings.from_env({"CHARGEBACK_PTU_IDLE_OWNER": "CC-1", "USERNAME": "bob"}).replace(
        ptu_idle_owner=None) == Settings(ptu_idle_owner="CC-1", user="bob")


def test_the_function_app_provides_every_production_setting(config: static.Config) -> None:
    settings = terraform_app_settings(config)
    assert settings.keys() >= PRODUCTION | BINDINGS
    assert not settings.keys() & NEVER
    assert set(OPTIONAL) & settings.keys() <= {"CHARGEBACK_BUDGETS"}


def keys_in(value: Any) -> Iterator[str]:
    """Every map key and attribute name of a parsed HCL value (where a setting could be set)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(static.unquote(key))
            yield from keys_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_in(item)
    elif isinstance(value, str):  # maps inside expressions: {NAME = ...}
        yield from re.findall(r"[{,]\s*([A-Za-z_][\w]*)\s*=", value)


def test_emulator_only_settings_are_set_nowhere_in_terraform(config: static.Config) -> None:
    keys = {key for module in static.all_modules(config) for _, entry in module.blocks for key in keys_in(entry)}
    keys |= {key for values in config.tfvars.values() for key in keys_in(values)}
    assert not keys & (EMULATOR_ONLY | NEVER)


def test_the_settings_point_at_the_services_by_endpoint(config: static.Config) -> None:
    settings = terraform_app_settings(config)
    shapes = {
        "CHARGEBACK_LEDGER": r'"cosmos://\$\{var\.cosmos_account_name\}\.documents\.azure\.com/'
                             r'\$\{var\.cosmos_database_name\}/\$\{var\.cosmos_container_name\}"',
        "CHARGEBACK_COUNTERS": r'"rediss://\$\{var\.redis_hostname\}:\$\{var\.redis_port\}/0"',
        "CHARGEBACK_STORE": r'"az://\$\{var\.store_container_name\}/\$\{var\.store_prefix\}"',
        "CHARGEBACK_STORAGE_ACCOUNT_URL": r'\$\{trimsuffix\(var\.data_blob_endpoint, "/"\)\}',
        "CHARGEBACK_REDIS_USERNAME": r"\$\{var\.identity_principal_id\}",
        "CHARGEBACK_HOME": r'"/tmp/[\w/-]+"',
        "CHARGEBACK_DEPLOYMENTS": r'"\$\{var\.reference_dir\}/deployments\.csv"',
        "CHARGEBACK_COST_CENTERS": r'"\$\{var\.reference_dir\}/cost-centers\.csv"',
        "EVENTHUB__fullyQualifiedNamespace": r"\$\{var\.eventhub_namespace_fqdn\}",
        "EVENTHUB__credential": r'"managedidentity"',
        "EVENTHUB_LLM_LOGS__fullyQualifiedNamespace": r"\$\{var\.llm_logs_eventhub_namespace_fqdn\}",
        "EVENTHUB_LLM_LOGS__credential": r'"managedidentity"',
        "AzureWebJobsStorage__credential": r'"managedidentity"',
    }
    for name, shape in shapes.items():
        assert re.fullmatch(shape, settings[name]), f"{name} = {settings[name]}"
    # The module's inputs come from the services' outputs, not from literals.
    call = config.root.calls["function_app"]
    assert call["cosmos_account_name"] == "${module.cosmos.account_name}"
    assert call["redis_hostname"] == "${module.redis.hostname}"
    assert call["eventhub_namespace_fqdn"] == "${module.eventhubs.usage_namespace_fqdn}"
    assert call["llm_logs_eventhub_namespace_fqdn"] == "${module.eventhubs.gateway_logs_namespace_fqdn}"
    assert call["llm_logs_consumer_group"] == "${module.eventhubs.gateway_logs_consumer_group_name}"
    assert call["identity_principal_id"] == '${module.identity.principal_ids["function"]}'
    assert static.literal(config.root.locals["store_container"]) == "chargeback"


def test_the_settings_override_survives_the_provider_bug(config: static.Config) -> None:
    """azapi PUTs exactly the module's settings (plus App Insights) after every change of the app."""
    module = config.modules["function_app"]
    action = module.resources[("azapi_resource_action", "app_settings")]
    assert action["method"] == '"PUT"' and action["resource_id"].endswith('/config/appsettings"')
    assert action["body"]["properties"] == "${local.all_app_settings}"
    assert set(action["sensitive_body"]["properties"]) == {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
    assert action["lifecycle"][0]["replace_triggered_by"] == ["${azurerm_function_app_flex_consumption.this}"]


# --- data layout and security posture ------------------------------------------------------------

def test_the_ledger_container_matches_the_adapter(config: static.Config) -> None:
    container = config.modules["cosmos"].resources[("azurerm_cosmosdb_sql_container", "ledger")]
    assert container["partition_key_paths"] == ['"/id"']
    assert container["default_ttl"] == "${var.ledger_ttl_seconds}"
    assert config.root.variables["cosmos_ledger_ttl_seconds"]["default"] == -1
    policy = container["indexing_policy"][0]
    assert static.unquote(policy["indexing_mode"]) == INDEXING_POLICY["indexingMode"]
    assert [static.unquote(path["path"]) for path in policy["included_path"]] == [
        path["path"] for path in INDEXING_POLICY["includedPaths"]]
    assert [static.unquote(path["path"]) for path in policy["excluded_path"]] == [
        path["path"] for path in INDEXING_POLICY["excludedPaths"]]
    assert [[(static.unquote(index["path"]), static.unquote(index["order"]).lower()) for index in composite["index"]]
            for composite in policy["composite_index"]] == [
        [(index["path"], index["order"]) for index in composite] for composite in INDEXING_POLICY["compositeIndexes"]]


def test_no_service_accepts_keys(config: static.Config) -> None:
    def attribute(module: str, resource: tuple[str, str], *path: str) -> Any:
        value: Any = config.modules[module].resources[resource]
        for key in path:
            value = value[key][0] if isinstance(value[key], list) else value[key]
        return value

    assert attribute("cosmos", ("azurerm_cosmosdb_account", "this"), "local_authentication_enabled") is False
    assert attribute("storage", ("azurerm_storage_account", "this"), "shared_access_key_enabled") is False
    assert attribute("eventhubs", ("azurerm_eventhub_namespace", "usage"), "local_authentication_enabled") is False
    assert attribute("redis", ("azurerm_managed_redis", "this"), "default_database",
                     "access_keys_authentication_enabled") is False
    assert attribute("keyvault", ("azurerm_key_vault", "this"), "rbac_authorization_enabled") is True
    assert attribute("function_app", ("azurerm_function_app_flex_consumption", "this"),
                     "webdeploy_publish_basic_authentication_enabled") is False
    assert attribute("function_app", ("azurerm_function_app_flex_consumption", "this"),
                     "storage_authentication_type") == '"UserAssignedIdentity"'
    logger = attribute("apim", ("azurerm_api_management_logger", "usage"), "eventhub")
    assert "connection_string" not in logger and logger["endpoint_uri"] == "${var.usage_namespace_fqdn}"
    # The logger is created only once the gateway may send to the hub (azure-review C8).
    assert attribute("apim", ("azurerm_api_management_logger", "usage"), "depends_on") == \
        "${azurerm_role_assignment.usage_sender}"
    # The one SAS-enabled namespace is the one Azure Monitor diagnostic settings require.
    assert attribute("eventhubs", ("azurerm_eventhub_namespace", "gateway_logs"), "local_authentication_enabled")
    assert attribute("redis", ("azurerm_managed_redis", "this"), "default_database",
                     "eviction_policy") == '"NoEviction"'


# (principal, role, scope), principal and scope as the expressions the grants use.
EXPECTED_GRANTS = {
    ("${azurerm_api_management.this.identity[0].principal_id}", "Azure Event Hubs Data Sender",
     "${var.usage_hub_id}"),
    ("${var.apim_principal_id}", "Cognitive Services OpenAI User", "${var.openai_account_id}"),
    ("${var.apim_principal_id}", "Storage Blob Data Reader", "${var.store_container_scope}"),
    ("${var.function_principal_id}", "Azure Event Hubs Data Receiver", "${var.usage_hub_id}"),
    ("${var.function_principal_id}", "Azure Event Hubs Data Receiver", "${var.gateway_logs_hub_id}"),
    ("${var.function_principal_id}", "Storage Blob Data Contributor", "${var.store_container_scope}"),
    ("${var.function_principal_id}", "Storage Blob Data Owner", "${var.host_storage_account_id}"),
    ("${var.function_principal_id}", "Monitoring Metrics Publisher", "${var.application_insights_id}"),
    ("${var.function_principal_id}", "Monitoring Reader", "${var.openai_account_id}"),
    ('${module.identity.principal_ids["capture"]}', "Storage Blob Data Contributor",
     '${module.storage.container_scopes["capture"]}'),
}


def test_grants_are_exactly_the_least_privilege_list(config: static.Config) -> None:
    grants = set()
    for module in static.all_modules(config):
        for (kind, _), body in module.resources.items():
            if kind != "azurerm_role_assignment":
                continue
            if body.get("for_each") == "${local.role_grants}":
                for grant in module.locals["role_grants"].values():
                    if isinstance(grant, dict):
                        grants.add((grant["principal_id"], static.unquote(grant["role"]), grant["scope"]))
            else:
                grants.add((body["principal_id"], static.unquote(body["role_definition_name"]), body["scope"]))
    assert grants == EXPECTED_GRANTS
    access = config.modules["access"]
    cosmos = access.resources[("azurerm_cosmosdb_sql_role_assignment", "function_ledger")]
    assert cosmos["role_definition_id"].endswith('/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002"')
    assert cosmos["scope"] == "${var.cosmos_database_scope}"
    database_scope = config.modules["cosmos"].outputs["database_scope"]["value"]
    assert database_scope.endswith('/dbs/${azurerm_cosmosdb_sql_database.this.name}"')
    redis = access.resources[("azurerm_managed_redis_access_policy_assignment", "function_counters")]
    assert redis["object_id"] == "${var.function_principal_id}"
    text = "\n".join(path.read_text(encoding="utf-8") for path in TERRAFORM.rglob("*.tf"))
    for broad in ('"Owner"', '"Contributor"', '"User Access Administrator"', "azurerm_resource_group.this.id"):
        assert broad not in text


# --- terraform fmt -------------------------------------------------------------------

def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary here (terraform fmt -check runs where one is installed)")
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- delivery ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return loaded


def steps(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from job.get("steps", [])


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps(job))


def test_the_workflow_tests_packages_then_deploys_each_environment_in_turn(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    assert "make test" in runs(jobs["test"])
    assert "make package" in runs(jobs["package"]) and jobs["package"]["needs"] == "test"
    upload = next(step for step in steps(jobs["package"])
                  if str(step.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "dist/chargeback-functions.zip"
    previous = "package"
    for environment in ENVIRONMENTS:
        plan, apply = jobs[f"plan-{environment}"], jobs[f"apply-{environment}"]
        assert plan["needs"] == previous and apply["needs"] == f"plan-{environment}"
        assert f"-var-file=environments/{environment}.tfvars -out={environment}.tfplan" in runs(plan)
        assert f"key=chargeback-{environment}.tfstate" in runs(plan)
        assert f"apply -input=false {environment}.tfplan" in runs(apply)  # the reviewed plan, nothing else
        assert apply["environment"] == environment
        assert "pull_request" in apply["if"]  # pull requests plan, never apply
        for job in (plan, apply):
            assert job["permissions"]["id-token"] == "write"
        previous = f"apply-{environment}"
    # prod applies only after a person approves: the GitHub environment "prod" has required reviewers.
    assert jobs["apply-prod"]["environment"] == "prod"
    assert "required reviewers" in WORKFLOW.read_text(encoding="utf-8")


def test_the_workflow_holds_no_secret_and_pins_its_tools(workflow: dict[str, Any]) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "secrets." not in text and "client-secret" not in text and "ARM_CLIENT_SECRET" not in text
    assert workflow["permissions"] == {"contents": "read"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", workflow["env"]["TERRAFORM_VERSION"])
    for job in workflow["jobs"].values():
        for step in steps(job):
            if "uses" in step:
                assert re.search(r"@v\d+$|@[0-9a-f]{40}$", step["uses"]), step["uses"]


def test_rollback_is_a_run_of_the_workflow_at_an_earlier_commit(workflow: dict[str, Any]) -> None:
    # PyYAML reads the key `on` as True.
    triggers: dict[str, Any] = workflow["on"] if "on" in workflow else workflow[True]  # type: ignore[index]
    assert "ref" in triggers["workflow_dispatch"]["inputs"]
    for job in workflow["jobs"].values():
        checkout = next((step for step in steps(job) if str(step.get("uses", "")).startswith("actions/checkout")), None)
        if checkout is not None:
            assert checkout["with"]["ref"] == "${{ env.DEPLOY_REF }}"
    readme = (TERRAFORM / "README.md").read_text(encoding="utf-8")
    assert "## Rollback" in readme and "config-zip" in readme and "ref" in readme


# --- the README explains every variable, the cost and the teardown -------------------------------

def test_the_readme_documents_every_variable_the_cost_and_the_teardown(config: static.Config) -> None:
    readme = (TERRAFORM / "README.md").read_text(encoding="utf-8")
    for name in config.root.variables:
        assert f"`{name}`" in readme, f"terraform/README.md does not explain {name}"
    for heading in ("## Deploy", "## Variables", "## Cost of dev", "## Tear down", "## Rollback"):
        assert heading in readme


def test_outputs_give_what_a_user_needs_next(config: static.Config) -> None:
    assert {"apim_gateway_url", "function_app_name", "storage_blob_endpoint", "storage_reports_url",
            "storage_capture_url"} <= config.root.outputs.keys()



def test_the_provider_never_polls_the_storage_data_plane(config: static.Config) -> None:
    """Prod's accounts admit no public traffic: the provider's data-plane polling (403 from a CI
    runner) would fail every apply and refresh (azure-review A1)."""
    providers = static.parse_file(config.terraform / "providers.tf")["provider"]
    azurerm = next(block['"azurerm"'] for block in providers if '"azurerm"' in block)
    assert azurerm["features"][0]["storage"][0]["data_plane_available"] is False


def test_each_environment_s_redis_holds_its_dedupe_marks(config: static.Config) -> None:
    """The shipped tfvars pass the redis module's precondition: expected requests x 8 days x 210
    bytes (make bench: 183-210 bytes per counted event) fit on ONE primary shard (every key has the
    {cb} hash tag), i.e. within four fifths of the SKU's memory divided by its primary shards."""
    default = config.root.variables["redis_expected_requests_per_day"]["default"]
    redis = config.modules["redis"].locals
    assert (redis["mark_bytes"], redis["mark_days"], redis["usable_fraction"]) == (210, 8, 0.8)
    skus = {static.unquote(name): sku for name, sku in redis["skus"].items()}
    # Spot checks against learn.microsoft.com/azure/redis/architecture, "Sharding configuration".
    assert skus["Balanced_B0"] == {"gb": 0.5, "shards": 1} and skus["Balanced_B3"] == {"gb": 3, "shards": 2}
    assert skus["Balanced_B5"] == {"gb": 6, "shards": 2} and skus["Balanced_B20"] == {"gb": 24, "shards": 6}
    assert all(re.fullmatch(r"(Balanced_B|MemoryOptimized_M|ComputeOptimized_X)\d+", name) for name in skus)

    def shard_gb(name: str) -> float:
        return float(skus[name]["gb"]) * 0.8 / int(skus[name]["shards"])

    for environment, values in config.tfvars.items():
        sku = static.unquote(values.get("redis_sku_name", config.root.variables["redis_sku_name"]["default"]))
        needed_gb = values.get("redis_expected_requests_per_day", default) * 8 * 210 / 1e9
        assert sku in skus and needed_gb <= shard_gb(sku), environment
    assert config.tfvars["prod"]["redis_expected_requests_per_day"] >= 1_000_000
    # At 1M requests a day (1.68 GB of marks) a Balanced_B3's shard (1.2 GB) is too small.
    assert shard_gb("Balanced_B3") < 1_000_000 * 8 * 210 / 1e9 <= shard_gb("Balanced_B5")


def test_a_redis_sku_too_small_for_its_marks_is_refused_by_plan(config: static.Config) -> None:
    """The module refuses, at plan, an unknown SKU and one whose shard cannot hold the marks."""
    resource = config.modules["redis"].resources[("azurerm_managed_redis", "this")]
    conditions = [check["condition"] for check in resource["lifecycle"][0]["precondition"]]
    assert conditions == ["${contains(keys(local.skus), var.sku_name)}",
                          "${lookup(local.shard_gb, var.sku_name, 0) >= local.needed_gb}"]
    assert config.root.calls["redis"]["expected_requests_per_day"] == "${var.redis_expected_requests_per_day}"


def test_capture_s_account_keeps_a_firewalled_public_endpoint_where_private_endpoints_are_on(
        config: static.Config) -> None:
    """Event Hubs Capture writes through the storage firewall's trusted-services exception, which no
    document says holds with public network access Disabled (azure-review C3): with private
    endpoints (prod) the data account keeps its endpoint, default Deny with the AzureServices
    bypass; the host account takes no public traffic; the checkov skip says why."""
    account = config.modules["storage"].resources[("azurerm_storage_account", "this")]
    assert account["public_network_access_enabled"] == '${var.private_endpoints_enabled ? each.key == "data" : true}'
    rules = account["network_rules"][0]
    assert rules["default_action"] == '${var.private_endpoints_enabled ? "Deny" : "Allow"}'
    assert '"AzureServices"' in rules["bypass"] and account["shared_access_key_enabled"] is False
    assert config.root.calls["eventhubs"]["capture_storage_account_id"] == '${module.storage.accounts["data"].id}'
    assert config.tfvars["prod"]["private_endpoints_enabled"] is True
    storage = (TERRAFORM / "modules/storage/main.tf").read_text(encoding="utf-8")
    assert re.search(r"#checkov:skip=CKV_AZURE_59:.*trusted-services exception", storage)


def test_duckdb_gets_half_the_instance_and_spills_to_tmp(config: static.Config) -> None:
    """DuckDB's memory limit is floor(instance memory / 2) MiB (1024MiB on 2,048 MB instances) and
    its temporary directory is under the writable /tmp, never a path relative to the read-only
    package mount (azure-review C5); DefaultAzureCredential gets the app's identity."""
    settings = terraform_app_settings(config)
    assert settings["CHARGEBACK_DUCKDB_MEMORY_LIMIT"] == '"${floor(var.instance_memory_mb / 2)}MiB"'
    assert re.fullmatch(r'"/tmp/[\w-]+"', settings["CHARGEBACK_DUCKDB_TEMP_DIR"])
    assert settings["AZURE_CLIENT_ID"] == "${var.identity_client_id}"
    assert config.root.calls["function_app"]["instance_memory_mb"] == "${var.function_instance_memory_mb}"
    assert config.root.calls["function_app"]["identity_client_id"] == '${module.identity.client_ids["function"]}'
    assert {"CHARGEBACK_DUCKDB_MEMORY_LIMIT", "CHARGEBACK_DUCKDB_TEMP_DIR"} <= set(Settings.variables())
