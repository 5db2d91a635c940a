"""`chargeback report`, `usage`, `budgets` and `doctor` import pyarrow as on a machine without
NumPy (pipeline.lake.numpy_probe): the report's process never loads NumPy for the default formats,
and every format's files are the same bytes as those of a process that loaded NumPy first (where
the probe does nothing); the others load neither NumPy nor pyarrow.compute, and print the same. Each case
runs in a fresh process: whether NumPy is loaded is a fact of the whole process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import event, jsonl, usage

REPO = Path(__file__).resolve().parents[1]
ALL_FORMATS = "csv,parquet,focus,focus-1.2,html"


def run(code: str, env: dict[str, str]) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, capture_output=True,
                            text=True)
    return result.stdout.strip().splitlines()


def snapshotted_home(tmp_path: Path) -> dict[str, str]:
    """The environment of a CHARGEBACK_HOME whose store holds a snapshot of October's events."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl([event(subscriptionId=f"sub-{n}", timestamp=f"2026-10-{n + 1:02d}T10:00:00Z",
                                    usage=usage(1000 * (n + 1), 10 * n)) for n in range(6)]))
    env = {"CHARGEBACK_HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "")}
    chargeback = str(Path(sys.executable).parent / "chargeback")
    for command in (["ingest", str(events)], ["snapshot"]):
        subprocess.run([chargeback, *command], env=env, cwd=REPO, check=True, capture_output=True)
    return env


def report_code(out: Path, formats: str, first: str = "") -> str:
    """A process that runs `chargeback report` (after `first`), then prints whether NumPy is loaded."""
    return (f"import sys\n{first}\nfrom pipeline.entrypoints.cli import main\n"
            f"try:\n    main(['report', '--month', '2026-10', '--out', {str(out)!r}, '--format', {formats!r}])\n"
            "except SystemExit as done:\n    assert not done.code, done.code\n"
            "print('numpy' in sys.modules)")


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_report_process_loads_no_numpy(tmp_path: Path) -> None:
    env = snapshotted_home(tmp_path)
    lines = run(report_code(tmp_path / "out", "csv,parquet"), env)
    assert "Total" in "\n".join(lines) and "over 6 requests" in "\n".join(lines)
    assert lines[-1] == "False"
    assert sorted(files_of(tmp_path / "out")) == ["chargeback-2026-10-daily.csv", "chargeback-2026-10-unpriced.csv",
                                                  "chargeback-2026-10.csv", "chargeback-2026-10.parquet"]


def test_every_format_is_the_same_bytes_as_with_numpy_loaded_first(tmp_path: Path) -> None:
    env = snapshotted_home(tmp_path)
    without = run(report_code(tmp_path / "without", ALL_FORMATS), env)
    with_numpy = run(report_code(tmp_path / "with", ALL_FORMATS, first="import numpy"), env)
    assert with_numpy[-1] == "True"
    assert without[:-1] == [line.replace(str(tmp_path / "with"), str(tmp_path / "without"))
                            for line in with_numpy[:-1]]
    made, expected = files_of(tmp_path / "without"), files_of(tmp_path / "with")
    assert len(made) == 10 and made == expected


def test_the_probe_does_nothing_once_numpy_or_pyarrow_is_loaded(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "")}
    probe = "from pipeline.lake.numpy_probe import import_pyarrow_without_numpy as probe\n"
    assert run(f"import sys\n{probe}print(probe(), probe(), 'pyarrow' in sys.modules, 'numpy' in sys.modules)",
               env) == ["True False True False"]
    assert run(f"import sys, numpy\n{probe}print(probe())", env) == ["False"]
    assert run(f"import sys, pyarrow\n{probe}print(probe(), 'numpy' in sys.modules)", env) == ["False True"]
    # NumPy can still be imported afterwards; pyarrow, which recorded its absence, neither takes
    # nor gives NumPy arrays (what the module says this process must never ask of it).
    assert run(f"{probe}probe()\nimport numpy, pyarrow as pa\nprint(pa.array([1, 2]).to_pylist())\n"
               "for ask in (lambda: pa.array(numpy.arange(3)), lambda: pa.array([1]).to_numpy()):\n"
               "    try:\n        ask()\n    except (pa.ArrowInvalid, ImportError) as error:\n"
               "        print(type(error).__name__)", env) == ["[1, 2]", "ArrowInvalid", "ImportError"]


@pytest.mark.parametrize("command", [["usage", "--month", "2026-10"], ["budgets", "--month", "2026-10"],
                                     ["doctor", "--month", "2026-10"]])
def test_the_commands_people_wait_on_load_neither_numpy_nor_pyarrow_compute(command: list[str],
                                                                           tmp_path: Path) -> None:
    """Each of them reads the warehouse (DuckDB and pyarrow) and the live counters, whose ingest
    path (pyarrow.compute) they do not take; their output is the same with NumPy loaded first."""
    env = snapshotted_home(tmp_path)
    (tmp_path / "home" / "budgets.csv").write_text("scope,key,monthly_budget,currency\nsubscription,sub-1,100,USD\n")
    code = ("import sys\n{first}\nfrom pipeline.entrypoints.cli import main\n"
            f"try:\n    main({command!r})\nexcept SystemExit as done:\n    assert done.code in (None, 0), done.code\n"
            "print(sorted(m for m in ('numpy', 'pyarrow.compute', 'pyarrow') if m in sys.modules))")
    without, with_numpy = run(code.format(first=""), env), run(code.format(first="import numpy"), env)
    assert without[-1] == "['pyarrow']" and with_numpy[-1] == "['numpy', 'pyarrow']"
    assert without[:-1] == with_numpy[:-1] and len(without) > 3
