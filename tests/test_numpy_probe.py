"""The `chargeback` commands refuse `import numpy` (pipeline.lake.numpy_probe), so that pyarrow
goes without it: a command's process never loads NumPy, every report format's files are the same
bytes as those of a process that loaded NumPy first (where nothing is refused), and the other
commands print the same and keep the same. Each case runs in a fresh process: whether NumPy is
loaded is a fact of the whole process."""

from __future__ import annotations

import os
import re
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


def command_code(command: list[str], first: str = "") -> str:
    """A process that runs one `chargeback` command (after `first`), then prints which of NumPy,
    pyarrow.compute and pyarrow it loaded."""
    return (f"import sys\n{first}\nfrom pipeline.entrypoints.cli import main\n"
            f"try:\n    main({command!r})\nexcept SystemExit as done:\n    assert done.code in (None, 0), done.code\n"
            "print(sorted(m for m in ('numpy', 'pyarrow.compute', 'pyarrow') if m in sys.modules))")


def report_of(out: Path, formats: str) -> list[str]:
    return ["report", "--month", "2026-10", "--out", str(out), "--format", formats]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_report_process_loads_no_numpy(tmp_path: Path) -> None:
    env = snapshotted_home(tmp_path)
    lines = run(command_code(report_of(tmp_path / "out", "csv,parquet")), env)
    assert "Total" in "\n".join(lines) and "over 6 requests" in "\n".join(lines)
    assert lines[-1] == "['pyarrow']"
    assert sorted(files_of(tmp_path / "out")) == ["chargeback-2026-10-daily.csv", "chargeback-2026-10-unpriced.csv",
                                                  "chargeback-2026-10.csv", "chargeback-2026-10.parquet"]


def test_every_format_is_the_same_bytes_as_with_numpy_loaded_first(tmp_path: Path) -> None:
    env = snapshotted_home(tmp_path)
    without = run(command_code(report_of(tmp_path / "without", ALL_FORMATS)), env)
    with_numpy = run(command_code(report_of(tmp_path / "with", ALL_FORMATS), "import numpy"), env)
    # The FOCUS export computes (pyarrow.compute), without NumPy too.
    assert without[-1] == "['pyarrow', 'pyarrow.compute']"
    assert with_numpy[-1] == "['numpy', 'pyarrow', 'pyarrow.compute']"
    assert without[:-1] == [line.replace(str(tmp_path / "with"), str(tmp_path / "without"))
                            for line in with_numpy[:-1]]
    made, expected = files_of(tmp_path / "without"), files_of(tmp_path / "with")
    assert len(made) == 10 and made == expected


def test_numpy_is_refused_inside_the_block_unless_numpy_or_pyarrow_was_loaded(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "")}
    probe = "import sys\nfrom pipeline.lake.numpy_probe import numpy_refused\n"
    block = ("with numpy_refused() as refused:\n    import pyarrow.compute\n    try:\n        import numpy\n"
             "    except ImportError:\n        print('refused')\n")
    assert run(f"{probe}{block}print(refused, 'numpy' in sys.modules)", env) == ["refused", "True False"]
    assert run(f"{probe}import numpy\n{block}print(refused)", env) == ["False"]
    assert run(f"{probe}import pyarrow\n{block}print(refused, 'numpy' in sys.modules)", env) == ["False True"]
    # After the block NumPy can be imported; pyarrow, which recorded its absence, neither takes
    # nor gives NumPy arrays (what the module says no command asks of it).
    assert run(f"{probe}{block}import numpy, pyarrow as pa\nprint(pa.array([1, 2]).to_pylist())\n"
               "for ask in (lambda: pa.array(numpy.arange(3)), lambda: pa.array([1]).to_numpy()):\n"
               "    try:\n        ask()\n    except (pa.ArrowInvalid, ImportError) as error:\n"
               "        print(type(error).__name__)", env) == ["refused", "[1, 2]", "ArrowInvalid", "ImportError"]


@pytest.mark.parametrize(("command", "loads"), [
    (["usage", "--month", "2026-10"], "['pyarrow']"), (["budgets", "--month", "2026-10"], "['pyarrow']"),
    (["doctor", "--month", "2026-10"], "['pyarrow']"), (["snapshot"], "['pyarrow']"),
    (["reconcile", "--month", "2026-10"], "['pyarrow', 'pyarrow.compute']")])
def test_each_command_loads_no_numpy_and_prints_the_same_as_with_it(command: list[str], loads: str,
                                                                   tmp_path: Path) -> None:
    env = snapshotted_home(tmp_path)
    (tmp_path / "home" / "budgets.csv").write_text("scope,key,monthly_budget,currency\nsubscription,sub-1,100,USD\n")
    without, with_numpy = run(command_code(command), env), run(command_code(command, "import numpy"), env)
    assert without[-1] == loads and with_numpy[-1] == loads.replace("[", "['numpy', ", 1)
    assert without[:-1] == with_numpy[:-1] and len(without) > 1


def test_an_ingest_without_numpy_keeps_what_an_ingest_with_it_keeps(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl([event(subscriptionId=f"sub-{n % 3}", usage=usage(100 + n, n)) for n in range(40)]))
    outputs: list[list[str]] = []
    for first in ("", "import numpy"):
        env = {"CHARGEBACK_HOME": str(tmp_path / f"home{len(outputs)}"), "PATH": os.environ.get("PATH", "")}
        lines = run(command_code(["ingest", str(events)], first), env)
        outputs.append([re.sub(r" \(.* events/s\)", "", line) for line in lines[:-1]])  # its rate varies
        assert lines[-1] == ("['pyarrow', 'pyarrow.compute']" if not first else
                             "['numpy', 'pyarrow', 'pyarrow.compute']")
        month = run(command_code(["usage", "--all"], first), env)
        outputs.append(month[:-1])
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
    assert outputs[0] == ["received 40: ingested 40, duplicates 0, dead-lettered 0"]


def test_a_decoding_worker_prepares_a_batch_without_numpy(tmp_path: Path) -> None:
    """A worker refuses NumPy in its initializer (pipeline.stages.decode_worker), before the
    decoding's modules load pyarrow; its batch is the one a process with NumPy prepares."""
    body = jsonl([event(usage=usage(1200, 300))]).strip()
    code = ("import multiprocessing\nfrom concurrent.futures import ProcessPoolExecutor\n"
            "from pipeline.app import settings_reference\nfrom pipeline.settings import Settings\n"
            "from pipeline.domain.decode import RawMessage\nfrom pipeline.stages import decode_ahead\n"
            "from pipeline.stages.decode_worker import start_worker\n"
            f"batch = decode_ahead._columns([RawMessage({body!r}, 'events.jsonl', '1')])\n"
            "reference = settings_reference(Settings.from_env())\n"
            "with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'), initializer=start_worker,\n"
            "                         initargs=(reference, None, True, True)) as pool:\n"
            "    received, rejections, columns, unpriced = pool.submit(decode_ahead._prepare, batch).result()\n"
            "    print(received, rejections, unpriced, columns.events.column('prompt_tokens').to_pylist(),\n"
            "          columns.charges.column('micros').to_pylist())\n"
            "    print(pool.submit(eval, \"sorted(m for m in ('numpy', 'pyarrow.compute', 'pyarrow') \"\n"
            "                            \"if m in __import__('sys').modules)\").result())\n")
    env = {"CHARGEBACK_HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "")}
    worker = run(code, env)
    assert worker[-1] == "['pyarrow', 'pyarrow.compute']"
    here = run("from pipeline.app import settings_reference\nfrom pipeline.settings import Settings\n"
               "from pipeline.domain.decode import RawMessage\nfrom pipeline.stages import decode_ahead\n"
               f"batch = decode_ahead._columns([RawMessage({body!r}, 'events.jsonl', '1')])\n"
               "decode_ahead.start(settings_reference(Settings.from_env()), None, True, True)\n"
               "received, rejections, columns, unpriced = decode_ahead._prepare(batch)\n"
               "print(received, rejections, unpriced, columns.events.column('prompt_tokens').to_pylist(),\n"
               "      columns.charges.column('micros').to_pylist())\nimport sys\nprint('numpy' in sys.modules)", env)
    assert worker[0] == here[0] == "1 [] 1 [1200] [0]" and here[-1] == "True"  # (no deployment map: unpriced)
