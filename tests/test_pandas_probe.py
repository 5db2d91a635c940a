"""pyarrow's first conversion of a Python list imports pandas (0.27 s) to ask whether the list is
a pandas object. The ingest commands' processes and the decoding workers answer that question
without the import (pipeline.lake.pandas_probe); pandas still works once asked for, and a process
that loaded pandas itself keeps pyarrow's pandas conversions; and a warehouse over days without
snapshots loads no Arrow dataset (which loads pandas). Each case runs in a fresh process: whether
pandas is loaded is a fact of the whole process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.factories import event, jsonl, usage

REPO = Path(__file__).resolve().parents[1]


def run(code: str, tmp_path: Path) -> list[str]:
    env = {"CHARGEBACK_HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "")}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, capture_output=True,
                            text=True)
    return result.stdout.strip().splitlines()


LOADED = "print('pandas' in sys.modules)"


def commands(tmp_path: Path, *argvs: list[str]) -> list[str]:
    """Run these `chargeback` commands in one fresh process; their output, then whether pandas
    was loaded (`True` or `False`, the last line)."""
    return run(f"import sys\nfrom pipeline.entrypoints.cli import main\nfor command in {list(argvs)!r}:\n"
               "    try:\n        main(command)\n"
               "    except SystemExit as done:\n        assert not done.code, done.code\n" + LOADED, tmp_path)


def test_ingest_and_snapshot_commands_build_arrow_columns_without_pandas(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl([event(subscriptionId=f"sub-{n}", usage=usage(100 + n, 10)) for n in range(3)]))
    lines = commands(tmp_path, ["ingest", str(events)], ["snapshot"])
    assert "received 3: ingested 3, duplicates 0, dead-lettered 0" in " ".join(lines)
    assert lines[-1] == "False"


def test_a_decoding_worker_prepares_a_batch_without_pandas(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl([event(eventId=f"e-{n}", usage=usage(100, 10)) for n in range(4)]))
    lines = run("import sys\nfrom pipeline.app import settings_reference\nfrom pipeline.settings import Settings\n"
                "from pipeline.inputs.event_files import json_lines\nfrom pipeline.stages import decode_ahead\n"
                "decode_ahead.start(settings_reference(Settings.from_env()), None, True, True)\n"
                f"[batch] = json_lines({str(events)!r}).batches(10)\n"
                "received, rejections, columns, unpriced = decode_ahead._prepare(batch)\n"
                "print(received, len(rejections), columns.rows)\n" + LOADED, tmp_path)
    assert lines == ["4 0 4", "False"]


def test_pandas_still_works_once_asked_for(tmp_path: Path) -> None:
    lines = run("import sys\nimport pyarrow as pa\nfrom pipeline.lake.pandas_probe import skip_pandas_probe\n"
                "skip_pandas_probe()\nbatch = pa.table({'n': pa.array([1, None], pa.int64())})\n" + LOADED + "\n"
                "frame = batch.to_pandas()\nprint(type(frame).__name__, frame['n'].isna().tolist())\n" + LOADED,
                tmp_path)
    assert lines == ["False", "DataFrame [False, True]", "True"]


def test_a_process_that_loaded_pandas_first_keeps_pyarrows_pandas_conversions(tmp_path: Path) -> None:
    """Not so after the probe (pyarrow then takes a Series for a plain sequence, its NaN for a
    number): which is why only processes of ours that never hand pyarrow pandas objects use it."""
    lines = run("import sys\nimport pandas as pd\nimport pyarrow as pa\n"
                "from pipeline.lake.pandas_probe import skip_pandas_probe\nskip_pandas_probe()\n"
                "print(pa.array(pd.Series([1, None])).null_count, pa.array([pd.NA, 1], from_pandas=True).to_pylist(),\n"
                "      pa.types.is_dictionary(pa.array(pd.Categorical(['a', 'b'])).type))", tmp_path)
    assert lines == ["1 [None, 1] True"]


def test_live_usage_over_days_without_snapshots_loads_no_pandas(tmp_path: Path) -> None:
    """The streams' status reads the snapshots of yesterday to tomorrow: with none there, the
    warehouse's events are an empty table, not an empty Arrow dataset (which loads pandas). The
    command runs in a process of its own, as from a shell (it opens no pipeline, so no probe)."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl([event(eventId="e-1", timestamp="2026-10-07T10:00:00Z", usage=usage(100, 10))]))
    commands(tmp_path, ["ingest", str(events)], ["snapshot"])
    lines = commands(tmp_path, ["usage", "--month", "2026-10"])
    assert "streamed requests of the last 24 h waiting for LLM-log usage: 0" in lines
    assert lines[-1] == "False"


def test_a_report_with_corrections_and_the_focus_export_loads_no_pandas(tmp_path: Path) -> None:
    """Both build Arrow tables from Python rows (the voided ids, the FOCUS rows): the report's
    process answers pyarrow's question without the import, and writes every file."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl([event(eventId=f"e-{n}", timestamp="2026-10-07T10:00:00Z", usage=usage(100, 10))
                              for n in range(3)]))
    corrections = tmp_path / "void.yaml"
    corrections.write_text("- {kind: void, event_ids: e-1, reason: a test call}\n")
    commands(tmp_path, ["ingest", str(events)], ["snapshot"], ["correct", str(corrections), "--by", "ops"])
    out = tmp_path / "out"
    lines = commands(tmp_path, ["report", "--month", "2026-10", "--out", str(out), "--format", "csv,focus"])
    assert "over 2 requests" in " ".join(lines) and lines[-1] == "False"
    assert (out / "chargeback-2026-10.csv").is_file() and (out / "chargeback-2026-10-focus.csv").is_file()


def test_llm_log_records_are_stored_without_pandas(tmp_path: Path) -> None:
    logs = tmp_path / "llm-logs.json"
    logs.write_text('{"records": [{"time": "2026-10-07T10:00:01Z", "category": "GatewayLlmLogs", "properties": '
                    '{"correlationId": "e-1", "promptTokens": 700, "completionTokens": 70}}]}')
    lines = commands(tmp_path, ["ingest-llm-logs", str(logs)])
    assert "kept 1 usage record(s)" in " ".join(lines) and lines[-1] == "False"
    assert list((tmp_path / "home").rglob("*.parquet"))  # the record was written, as Parquet
