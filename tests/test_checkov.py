"""checkov over terraform/ as a user runs it (`checkov -d terraform`, and with each environment's
variables): 0 failed, because every accepted finding is skipped inline with its reason, where
checkov reads it; and no skip outlives its reason: each must still fail without it, on its own
resource, in exactly the environments its reason names. Seeded: a stale skip, a skip on the wrong
resource of a file where the check fails elsewhere, a new failure, a skip whose environments are
wrong."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.checkov_skips import ENVIRONMENTS, Failure, Skip, failures, inline_skips, problems, uncovered, without_skips

REPO = Path(__file__).resolve().parent.parent
TERRAFORM = REPO / "terraform"
CHECKOV = Path(os.environ.get("CHECKOV_BIN", REPO / ".venv" / "checkov" / "bin" / "checkov"))


def require_checkov() -> None:
    if not CHECKOV.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} is missing: `make checkov-venv` installs it (make test does)")
        pytest.skip(f"{CHECKOV} is missing: run `make checkov-venv`")


def run_all(tree: Path, stripped: Path, environments: tuple[str, ...]) -> tuple[dict[str, set[Failure]],
                                                                                 dict[str, set[Failure]]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        as_is = pool.map(lambda environment: failures(CHECKOV, tree, environment), environments)
        bare = pool.map(lambda environment: failures(CHECKOV, stripped, environment), environments)
        return dict(zip(environments, as_is, strict=True)), dict(zip(environments, bare, strict=True))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, set[Failure]], dict[str, set[Failure]]]:
    require_checkov()
    stripped = without_skips(TERRAFORM, tmp_path_factory.mktemp("stripped") / "terraform")
    return run_all(TERRAFORM, stripped, ENVIRONMENTS)


def test_checkov_shows_0_failed_and_every_skip_is_still_needed(
        results: tuple[dict[str, set[Failure]], dict[str, set[Failure]]]) -> None:
    as_is, stripped = results
    assert as_is == {environment: set() for environment in ENVIRONMENTS}
    skips = inline_skips(TERRAFORM)
    assert problems(skips, as_is, stripped) == []
    # Everything that fails without the skips has a skip on its resource: nothing else is hidden.
    assert uncovered(skips, set().union(*stripped.values())) == set()


def test_the_reason_names_the_environments() -> None:
    def environments(reason: str) -> set[str]:
        return set(Skip("main.tf", 1, "CKV_AZURE_1", reason).environments)

    assert environments("Fails in defaults, dev and staging only. No private endpoints there.") == {
        "defaults", "dev", "staging"}
    assert environments("Fails in prod only. Because.") == {"prod"}
    assert environments("Not applicable to Flex Consumption.") == set(ENVIRONMENTS)
    assert not [skip for skip in inline_skips(TERRAFORM) if not skip.environments <= set(ENVIRONMENTS)]


def test_a_stale_skip_a_new_failure_and_wrong_environments_are_caught(tmp_path: Path) -> None:
    require_checkov()
    import shutil

    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy)
    storage = copy / "modules" / "storage" / "main.tf"
    text = storage.read_text(encoding="utf-8")
    head = 'resource "azurerm_storage_account" "this" {\n'
    text = text.replace(head, head + "  #checkov:skip=CKV_AZURE_3:HTTPS only is on: this skip hides nothing at all\n")
    # CKV2_AZURE_1 fails in this file, but on the account: on a container, the skip hides nothing.
    containers = 'resource "azurerm_storage_container" "this" {\n'
    text = text.replace(containers, f"{containers}  #checkov:skip=CKV2_AZURE_1:the wrong resource, the right file\n")
    storage.write_text(text, encoding="utf-8")
    plan = copy / "modules" / "function_app" / "main.tf"
    plan.write_text(re.sub(r"  #checkov:skip=CKV_AZURE_212:.*\n", "", plan.read_text(encoding="utf-8")),
                    encoding="utf-8")
    cosmos = copy / "modules" / "cosmos" / "main.tf"
    cosmos.write_text(cosmos.read_text(encoding="utf-8").replace(
        "#checkov:skip=CKV_AZURE_101:Fails in defaults, dev and staging only.",
        "#checkov:skip=CKV_AZURE_101:Fails in prod only."), encoding="utf-8")
    as_is, stripped = run_all(copy, without_skips(copy, tmp_path / "stripped"), ("dev", "prod"))
    found = problems(inline_skips(copy), as_is, stripped)
    assert "dev: CKV_AZURE_212 fails in terraform/modules/function_app/main.tf: fix it, or skip it there with " \
           "#checkov:skip=CKV_AZURE_212:REASON" in found
    for check in ("CKV_AZURE_3", "CKV2_AZURE_1"):
        assert any(line.startswith("terraform/modules/storage/main.tf:") and line.endswith(
            f": {check}: stale skip, the check passes on its resource in every environment: remove it")
            for line in found), found
    assert any(line.startswith("terraform/modules/cosmos/main.tf:") and ": CKV_AZURE_101: fails in dev, the "
               "reason says prod: start it with 'Fails in ... only.' or fix it" in line for line in found), found
    assert len(found) == 5, "\n".join(found)  # CKV_AZURE_212 fails in dev and in prod; nothing else is reported
