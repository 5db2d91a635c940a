"""`chargeback query` over the month as the Functions app leaves it, a file a day at every
15-minute snapshot (96 a day), against the same month once its days are compacted
(pipeline.stages.compaction): whole processes by turns, as finance runs a query. And the same for
a month of LLM-log usage, a file per host batch (pipeline.stages.llm_compaction).

The compacted store is a copy of the month's manifests with its files linked, not copied (the
compaction writes its own files next to the links, never into the generated month); the
compaction's own time is reported too. Both stores must give the query's output byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.launch import measured_run
from benchmarks.measure import Result, Run
from benchmarks.stages import MONTH, snapshot_root
from benchmarks.world import make_world, write_reference

QUERY = "SELECT cost_center, month, count(*) AS requests, sum(cost) AS cost FROM costs GROUP BY ALL ORDER BY ALL"
SETTLED = date(2026, 12, 1)  # every day of the month settled


def run_query_cli(work: Path, events: int, files_per_day: int, repeats: int, budget: float,
                  min_repeats: int = 2) -> tuple[list[dict[str, Any]], str]:
    """`repeats` runs of the query over each store (fewer once `budget` seconds are spent, never
    fewer than `min_repeats`), and the check that both print the same."""
    from pipeline.adapters.embedded.local_store import LocalObjectStore
    from pipeline.stages.compaction import compact_days

    root = snapshot_root(work, events, files_per_day)
    if not (root / ".complete").exists():
        raise SystemExit(f"{root}: no generated snapshot; run the prepare stage first")
    files = write_reference(make_world(MONTH), work / "reference")
    place = work / "query-15min"
    shutil.rmtree(place, ignore_errors=True)
    (place / "store").mkdir(parents=True)
    (place / "store" / "snapshots").symlink_to(root.resolve(), target_is_directory=True)
    compacted = place / "store-compacted" / "snapshots"
    _linked_copy(root, compacted)
    began = time.perf_counter()
    done = compact_days(LocalObjectStore(compacted), SETTLED)
    seconds = time.perf_counter() - began
    env = {**os.environ, "CHARGEBACK_HOME": str(place / "home"),
           "CHARGEBACK_DEPLOYMENTS": str(files["deployments"]), "CHARGEBACK_COST_CENTERS": str(files["cost_centers"])}
    envs = {"as-is": {**env, "CHARGEBACK_STORE": (place / "store").as_uri()},
            "compacted": {**env, "CHARGEBACK_STORE": (place / "store-compacted").as_uri()}}
    command = [str(Path(sys.executable).parent / "chargeback"), "query", QUERY, "--format", "csv"]
    results = {"compacted": Result("query-15min", "chargeback query (whole process), the month compacted", "stage",
                                   events),
               "as-is": Result("query-15min", f"the same over {files_per_day} files a day", "baseline", events)}
    results["compacted"].extra["compaction"] = {"files": done.replaced, "written": done.written,
                                                "seconds": round(seconds, 3)}
    compaction = Result("query-15min", f"  compact_days of the month ({done.replaced:,} files -> {done.written})",
                        "info", done.rows, [Run(seconds, 0.0, 0.0, False, os.getloadavg()[0], events=done.rows)])
    outputs = _by_turns(command, envs, results, repeats, budget, min_repeats)
    shutil.rmtree(place / "home", ignore_errors=True)
    same = outputs["as-is"] == outputs["compacted"] and outputs["as-is"].count(b"\n") > 1
    results["compacted"].extra["same_output"] = same
    lines = outputs["as-is"].count(b"\n") - 1
    check = (f"chargeback query over {events:,} events, {files_per_day} files a day vs compacted "
             f"({done.replaced:,} files -> {done.written}): {'IDENTICAL' if same else 'DIFFERENT'} ({lines} rows)")
    return [*(result.as_dict() for result in results.values()), compaction.as_dict()], check


def _by_turns(command: list[str], envs: dict[str, dict[str, str]], results: dict[str, Result], repeats: int,
              budget: float, min_repeats: int) -> dict[str, bytes]:
    """The command's output in each environment, then `repeats` runs of it in each by turns
    (fewer once `budget` seconds are spent, never fewer than `min_repeats`) into `results`."""
    outputs = {name: subprocess.run(command, env=env, capture_output=True, check=True).stdout
               for name, env in envs.items()}
    names = tuple(results)
    started = time.monotonic()
    for repeat in range(repeats):
        if repeat >= min_repeats and budget and time.monotonic() - started > budget:
            break
        for name in (names if repeat % 2 == 0 else names[::-1]):
            results[name].runs.append(measured_run(command, envs[name]))
    return outputs


def _linked_copy(root: Path, into: Path) -> None:
    """`root`'s folders made again under `into`, each file a link to its own, the manifests and
    checkpoints copied (small), so that what is written into `into` stays there."""
    for folder, _, names in os.walk(root):
        target = into / Path(folder).relative_to(root)
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            source = Path(folder) / name
            if source.parent.name in ("_manifests", "_checkpoints") or name.startswith("."):
                shutil.copyfile(source, target / name)
            else:
                (target / name).symlink_to(source.resolve())


LLM_QUERY = ("SELECT count(*) AS records, sum(total_tokens) AS tokens, count(DISTINCT deployment) AS deployments "
             "FROM llm_usage")


def run_llm_query_cli(work: Path, files_per_day: int, records_per_file: int, repeats: int, budget: float,
                      min_repeats: int = 2) -> tuple[list[dict[str, Any]], str]:
    """`chargeback query` of the `llm_usage` view over a month of LLM-log usage as the Functions
    trigger leaves it (a file per host batch and day), against the same area compacted
    (pipeline.stages.llm_compaction); both must print the same."""
    from pipeline.adapters.embedded.local_store import LocalObjectStore
    from pipeline.stages.llm_compaction import compact_llm_days

    place = work / "query-llm"
    shutil.rmtree(place, ignore_errors=True)
    records = _llm_month(LocalObjectStore(place / "store" / "llm-usage"), files_per_day, records_per_file)
    shutil.copytree(place / "store", place / "store-compacted")
    began = time.perf_counter()
    done = compact_llm_days(LocalObjectStore(place / "store-compacted" / "llm-usage"), SETTLED)
    seconds = time.perf_counter() - began
    env = {**os.environ, "CHARGEBACK_HOME": str(place / "home")}
    envs = {"as-is": {**env, "CHARGEBACK_STORE": (place / "store").as_uri()},
            "compacted": {**env, "CHARGEBACK_STORE": (place / "store-compacted").as_uri()}}
    command = [str(Path(sys.executable).parent / "chargeback"), "query", LLM_QUERY, "--format", "csv"]
    results = {"compacted": Result("query-llm", "chargeback query of llm_usage (whole process), compacted", "stage",
                                   records),
               "as-is": Result("query-llm", f"the same over {done.replaced:,} files ({files_per_day} a day)",
                               "baseline", records)}
    compaction = Result("query-llm", f"  compact_llm_days of the month ({done.replaced:,} files -> {done.written})",
                        "info", records, [Run(seconds, 0.0, 0.0, False, os.getloadavg()[0], events=records)])
    outputs = _by_turns(command, envs, results, repeats, budget, min_repeats)
    shutil.rmtree(place / "home", ignore_errors=True)
    same = outputs["as-is"] == outputs["compacted"] and outputs["as-is"].startswith(b"records")
    results["compacted"].extra["same_output"] = same
    check = (f"chargeback query of llm_usage over {records:,} records in {done.replaced:,} files vs compacted "
             f"({done.written}): {'IDENTICAL' if same else 'DIFFERENT'}: {outputs['as-is'].decode().split()[-1]}")
    return [*(result.as_dict() for result in results.values()), compaction.as_dict()], check


def _llm_month(store: Any, files_per_day: int, records_per_file: int) -> int:
    """A month of LLM-log usage records, `files_per_day` host batches a day; returns the records."""
    from datetime import UTC, datetime, timedelta

    from pipeline.domain.llm_logs import LlmUsage
    from pipeline.lake.llm_usage import batch_files

    start = datetime(2026, 10, 1, tzinfo=UTC)
    count = 0
    for day in range(31):
        for _ in range(files_per_day):
            records = []
            for _ in range(records_per_file):
                at = start + timedelta(days=day, seconds=count % 86_400)
                prompt, completion = 100 + count % 900, 20 + count % 300
                records.append(LlmUsage(join_id=f"req-{count:09d}", time=at, prompt_tokens=prompt,
                                        completion_tokens=completion, total_tokens=prompt + completion,
                                        cached_tokens=None, deployment=f"chat-{count % 7}", model="gpt-4o",
                                        is_stream=True, sequence_number=count))
                count += 1
            for key, data in batch_files(records).items():
                store.put(key, data, overwrite=False)
    return count
