"""docs/cli.md is every command's --help as this version prints it (regenerate with `make docs`),
and the README shows every command."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from pipeline.entrypoints.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent


def reference_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", REPO / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_current() -> None:
    expected = reference_script().render()
    assert (REPO / "docs" / "cli.md").read_text(encoding="utf-8") == expected, "docs/cli.md is stale: run make docs"


def test_the_reference_has_a_section_per_command() -> None:
    text = reference_script().render()
    sections = re.findall(r"^## `chargeback ?([a-z-]*(?: [a-z-]+)?)`$", text, flags=re.MULTILINE)
    assert sections[0] == "" and set(COMMANDS) <= {s.split(" ")[0] for s in sections[1:]}
    assert "prices check" in sections


def test_the_readme_shows_every_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"^### `chargeback ([a-z-]+)", readme, flags=re.MULTILINE))
    assert set(COMMANDS) - shown == set()
