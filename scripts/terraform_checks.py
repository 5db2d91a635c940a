#!/usr/bin/env python3
"""The Terraform checks outside pytest.

    python scripts/terraform_checks.py check
        run the static checks of tests/terraform_static.py and print every problem
    python scripts/terraform_checks.py provider-arguments AZURERM_CHECKOUT AZAPI_CHECKOUT
        rewrite tests/terraform_fixtures/provider-arguments.json: the argument names of every
        resource type terraform/ uses, read from the documentation of the pinned provider releases
        (git checkouts of hashicorp/terraform-provider-azurerm at v4.81.0 and Azure/terraform-provider-azapi
        at v2.12.0; the versions are those of terraform/versions.tf). Run it after a provider upgrade.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.terraform_static import load_config, run_checks  # noqa: E402

FIXTURE = ROOT / "tests" / "terraform_fixtures" / "provider-arguments.json"
# Terraform's own resource, not a provider's (https://developer.hashicorp.com/terraform/language/resources/terraform-data).
BUILTIN = {"terraform_data": ["input", "triggers_replace"]}


def azurerm_arguments(checkout: Path, kind: str, folder: str) -> list[str]:
    page = checkout / "website" / "docs" / folder / f"{kind.removeprefix('azurerm_')}.html.markdown"
    text = page.read_text(encoding="utf-8")
    start = re.search(r"^## Arguments? Reference", text, re.M)
    end = re.search(r"^## Attributes Reference", text, re.M)
    if start is None:
        raise SystemExit(f"{page}: no Arguments Reference section")
    section = text[start.end():end.start() if end else len(text)]
    return sorted(set(re.findall(r"^\* `([a-z0-9_]+)`", section, re.M)))


def azapi_arguments(checkout: Path, kind: str) -> list[str]:
    page = checkout / "docs" / "resources" / f"{kind.removeprefix('azapi_')}.md"
    text = page.read_text(encoding="utf-8")
    start, end = text.index("## Schema"), text.find("### Read-Only")
    return sorted(set(re.findall(r"^- `([a-z0-9_]+)`", text[start:end if end > 0 else len(text)], re.M)))


def provider_arguments(azurerm: Path, azapi: Path) -> dict[str, list[str]]:
    config = load_config(ROOT / "terraform")
    kinds = {kind for module in [config.root, *config.modules.values()] for kind, _ in module.resources}
    data = {kind for module in [config.root, *config.modules.values()] for kind, _ in module.data}
    result: dict[str, list[str]] = {}
    for kind in sorted(kinds):
        if kind in BUILTIN:
            result[kind] = BUILTIN[kind]
        elif kind.startswith("azapi_"):
            result[kind] = azapi_arguments(azapi, kind)
        else:
            result[kind] = azurerm_arguments(azurerm, kind, "r")
    for kind in sorted(data):
        result[f"data.{kind}"] = azurerm_arguments(azurerm, kind, "d")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="run the static checks")
    refresh = commands.add_parser("provider-arguments", help="rewrite the provider arguments fixture")
    refresh.add_argument("azurerm", type=Path, help="checkout of terraform-provider-azurerm at the pinned tag")
    refresh.add_argument("azapi", type=Path, help="checkout of terraform-provider-azapi at the pinned tag")
    args = parser.parse_args(argv)
    if args.command == "check":
        results = run_checks(ROOT)
        for name, problems in results.items():
            print(f"{name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
            for problem in problems:
                print(f"  {problem}")
        return 1 if any(results.values()) else 0
    fixture = {
        "source": "argument names from the documentation of hashicorp/azurerm v4.81.0 (website/docs) and "
                  "Azure/azapi v2.12.0 (docs/resources), for the resource types terraform/ uses; "
                  "regenerate with scripts/terraform_checks.py provider-arguments",
        "resources": provider_arguments(args.azurerm, args.azapi),
    }
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {FIXTURE.relative_to(ROOT)} ({len(fixture['resources'])} resource types)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
