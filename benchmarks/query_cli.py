"""`chargeback query` over the month as the Functions app leaves it, a file a day at every
15-minute snapshot (96 a day), against the same month once its days are compacted
(pipeline.stages.compaction): whole processes by turns, as finance runs a query.

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
    outputs = {name: subprocess.run(command, env=envs[name], capture_output=True, check=True).stdout
               for name in envs}
    names = tuple(results)
    started = time.monotonic()
    for repeat in range(repeats):
        if repeat >= min_repeats and budget and time.monotonic() - started > budget:
            break
        for name in (names if repeat % 2 == 0 else names[::-1]):
            results[name].runs.append(measured_run(command, envs[name]))
    shutil.rmtree(place / "home", ignore_errors=True)
    same = outputs["as-is"] == outputs["compacted"] and outputs["as-is"].count(b"\n") > 1
    results["compacted"].extra["same_output"] = same
    lines = outputs["as-is"].count(b"\n") - 1
    check = (f"chargeback query over {events:,} events, {files_per_day} files a day vs compacted "
             f"({done.replaced:,} files -> {done.written}): {'IDENTICAL' if same else 'DIFFERENT'} ({lines} rows)")
    return [*(result.as_dict() for result in results.values()), compaction.as_dict()], check


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
