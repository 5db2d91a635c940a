"""The layout holds: the dependency rule (import-linter contracts in pyproject.toml), a pure domain,
one reader of the environment, small modules, and a CLI that imports a command only to run it.
Each rule is also shown to fail on a seeded violation."""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

from pipeline.entrypoints.cli import COMMANDS, SUMMARY_WIDTH, main
from pipeline.entrypoints.cli import report as report_command
from pipeline.stages.report import model

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "pipeline"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_LINES = 400
# What the domain may import besides the standard library and itself.
DOMAIN_EXTERNALS = {"msgspec"}
# The only module that reads the environment.
ENVIRONMENT_READER = "pipeline/settings.py"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the `pipeline` package under `root`, with the contracts of pyproject.toml."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)},
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_dependency_rule_holds() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"{len(contracts)} kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "source", "broken"), [
    ("stages/seeded.py", "from pipeline.adapters.embedded.ledger import SqliteLedger\n", "Entry points on top"),
    ("domain/seeded.py", "from pipeline.lake.usage import USAGE_SCHEMA\n", "Entry points on top"),
    ("entrypoints/cli/seeded.py", "from pipeline.adapters.azure.blob_store import open_blob_store\n",
     "Only the composition root"),
    ("adapters/azure/seeded.py", "from pipeline.adapters.embedded.local_store import LocalObjectStore\n",
     "do not import each other"),
    ("stages/report/seeded_model.py", "import typing\nif typing.TYPE_CHECKING:\n"
                                      "    from pipeline.stages.report.focus import FocusContext\n", None),
])
def test_a_seeded_violation_breaks_its_contract(tmp_path: Path, module: str, source: str, broken: str | None) -> None:
    shutil.copytree(PACKAGE, tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "pipeline" / module
    if broken is None:  # a type-level cycle: the report's model importing a renderer, as it once did
        target = tmp_path / "pipeline" / "stages" / "report" / "model.py"
        target.write_text(target.read_text() + source)
        broken = "The report's modules import downwards only"
    else:
        target.write_text(source)
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "1 broken" in result.stdout and broken in result.stdout.replace("\n", " ")


def test_the_domain_imports_only_the_standard_library_and_msgspec() -> None:
    graph = grimp.build_graph("pipeline", include_external_packages=True)
    imported = {name.split(".")[0] for module in graph.find_children("pipeline.domain") | {"pipeline.domain"}
                for name in graph.find_modules_directly_imported_by(module)
                if not name.startswith("pipeline")}
    assert imported - set(sys.stdlib_module_names) == DOMAIN_EXTERNALS


def reads_environment(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in ("environ", "getenv", "environb")
    if isinstance(node, ast.Call):  # a click option's envvar= (or a group's auto_envvar_prefix=)
        return any(keyword.arg in ("envvar", "auto_envvar_prefix") for keyword in node.keywords)
    if isinstance(node, ast.ImportFrom):
        return node.module == "os" and any(alias.name in ("environ", "getenv") for alias in node.names)
    return False


def environment_reads(source: str) -> list[int]:
    """Lines that read the environment: os.environ, os.getenv, a click option's envvar=."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if reads_environment(node)]  # type: ignore[attr-defined]


def test_settings_is_the_only_reader_of_the_environment() -> None:
    readers = {path.relative_to(REPO).as_posix(): lines for path in sorted(PACKAGE.rglob("*.py"))
               if (lines := environment_reads(path.read_text(encoding="utf-8")))}
    assert list(readers) == [ENVIRONMENT_READER]
    assert (REPO / "function_app.py").read_text().count("environ") == 0


@pytest.mark.parametrize("source", [
    "import os\nURL = os.environ.get('X')\n",
    "import os\nURL = os.getenv('X')\n",
    "from os import environ\n",
    "import click\n@click.option('--x', envvar='X')\ndef f(x): ...\n",
])
def test_a_seeded_environment_read_is_found(source: str) -> None:
    assert environment_reads(source)


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {path.relative_to(REPO).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {path: lines for path, lines in sizes.items() if lines > MAX_LINES} == {}


def test_every_command_is_listed_with_its_own_summary() -> None:
    for name, entry in COMMANDS.items():
        command = getattr(importlib.import_module(f"pipeline.entrypoints.cli.{entry.module}"), entry.attribute)
        assert command.name == name
        assert entry.summary == command.get_short_help_str(limit=SUMMARY_WIDTH), name
    assert main.list_commands(None) == list(COMMANDS)  # type: ignore[arg-type]


def test_the_report_command_names_the_report_formats() -> None:
    # Named in the command so that its --help does not load the report's modules.
    assert (report_command.FORMATS, report_command.DEFAULT_FORMATS) == (model.FORMATS, model.DEFAULT_FORMATS)


HEAVY = ("duckdb", "pyarrow", "rich", "msgspec", "redis", "azure", "pipeline.stages", "pipeline.lake",
         "pipeline.adapters", "pipeline.app")


def loaded_after(code: str) -> set[str]:
    """The top-level names of HEAVY that a fresh interpreter has loaded after running `code`."""
    probe = (f"import sys\n{code}\nprint(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    return {name for name in HEAVY for module in ast.literal_eval(result.stdout.strip().splitlines()[-1])
            if module == name or module.startswith(f"{name}.")}


def test_the_cli_help_loads_click_and_nothing_of_the_pipeline() -> None:
    loaded = loaded_after("from pipeline.entrypoints.cli import main\n"
                          "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert loaded == set()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_help_loads_no_backend_and_no_stage(command: str) -> None:
    loaded = loaded_after("from pipeline.entrypoints.cli import main\n"
                          f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass")
    assert not loaded & {"duckdb", "pyarrow", "redis", "azure", "pipeline.adapters", "pipeline.app", "pipeline.stages"}


def test_a_report_of_snapshotted_usage_loads_neither_pandas_nor_pyarrow_compute(tmp_path: Path) -> None:
    """Each costs every report's process start (0.2 s and 0.09 s): a cast, a Python date made an
    Arrow value or `pyarrow.dataset` brings them in. The report must go without, also when LLM-log
    usage fills a streamed event (its files are read by DuckDB, not as an Arrow dataset)."""
    from tests.factories import event, jsonl, usage

    events = tmp_path / "events.jsonl"
    streamed = event(eventId="0b7e6f52-5d0c-4d38-9a47-2f7f3f4b1c11", timestamp="2026-10-07T10:00:00Z",
                     stream=True, usage=None, usageSource="stream")
    events.write_bytes(jsonl([*(event(subscriptionId=f"sub-{n}", timestamp=f"2026-10-{n + 1:02d}T10:00:00Z",
                                      usage=usage(1000 * (n + 1), 10)) for n in range(5)), streamed]))
    logs = tmp_path / "llm-logs.json"
    logs.write_text(json.dumps({"records": [{
        "time": "2026-10-07T10:00:01Z", "category": "GatewayLlmLogs",
        "properties": {"correlationId": streamed["eventId"], "promptTokens": 700, "completionTokens": 70}}]}))
    env = {"CHARGEBACK_HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "")}
    chargeback = str(Path(sys.executable).parent / "chargeback")
    for command in (["ingest", str(events)], ["snapshot"], ["ingest-llm-logs", str(logs)]):
        subprocess.run([chargeback, *command], env=env, cwd=REPO, check=True, capture_output=True)
    probe = ("import sys\nfrom pipeline.entrypoints.cli import main\n"
             f"try:\n    main(['report', '--month', '2026-10', '--out', {str(tmp_path / 'out')!r}])\n"
             "except SystemExit as done:\n    assert not done.code, done.code\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas' or m == 'pyarrow.compute'))")
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, check=True, capture_output=True,
                            text=True)
    assert "over 6 requests" in result.stdout and "llm-log 1" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
