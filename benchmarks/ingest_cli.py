"""`chargeback ingest FILE` as a whole process, as a user runs it over a month's JSON-lines file
(issue 19: embedded ingest >= 100k events/s "from a JSON-lines file", start-up included).

The file is a generated month (`benchmarks.data.json_events`, events spread over October, 1%
redeliveries, 10 malformed), cached in WORK/data. Each run ingests it into a fresh
CHARGEBACK_HOME with the benchmark world's deployment map, cost centers and budgets. The child's
own wall-clock and CPU seconds and peak RSS come from `os.wait4`, so nothing of this harness is
counted. Two sizes show whether memory stays flat as the file grows.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.launch import measured_run
from benchmarks.measure import Result
from benchmarks.stages import MONTH
from benchmarks.world import World, make_world, write_reference


def month_file(work: Path, world: World, events: int) -> Path:
    """The generated month of `events` raw events as JSON lines (written once, then cached)."""
    from benchmarks.data import json_events

    path = work / "data" / f"events-{events}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as sink:
            for body in json_events(world, events, seed=19):
                sink.write(body.replace(b"\n", b" ") + b"\n")
        partial.rename(path)
    return path


def run_ingest(work: Path, events: int, repeats: int, budget: float,
               reconciles: int = 0) -> list[dict[str, Any]]:
    """`repeats` whole-process runs of `chargeback ingest` over the month file (fewer when the
    time budget in seconds is spent after the first); then, when `reconciles`, that many runs of
    `chargeback reconcile --month` over the home the last run filled (every counter agrees with
    the ledger, so it recounts the month and finds no drift)."""
    world = make_world(MONTH)
    source = month_file(work, world, events)
    files = write_reference(world, work / "reference")
    script = str(Path(sys.executable).parent / "chargeback")
    result = Result("ingest-cli", "chargeback ingest FILE (whole process)", "stage", events,
                    extra={"file_mib": round(source.stat().st_size / 2**20)})
    recount = Result("reconcile-cli", "chargeback reconcile --month, that home (whole process)", "info", events)
    home = work / "ingest-cli"
    env = {**os.environ, "CHARGEBACK_HOME": str(home), "CHARGEBACK_DEPLOYMENTS": str(files["deployments"]),
           "CHARGEBACK_COST_CENTERS": str(files["cost_centers"]), "CHARGEBACK_BUDGETS": str(files["budgets"])}
    began = time.monotonic()
    for repeat in range(repeats):
        if repeat and budget and time.monotonic() - began > budget:
            break
        shutil.rmtree(home, ignore_errors=True)
        result.runs.append(measured_run([script, "ingest", str(source)], env, events))
    for _ in range(reconciles):
        recount.runs.append(measured_run([script, "reconcile", "--month", MONTH], env, events))
    shutil.rmtree(home, ignore_errors=True)
    return [result.as_dict(), *([recount.as_dict()] if reconciles else [])]
