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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.world import make_world, write_reference

MONTH = "2026-10"


def month_file(work: Path, events: int) -> Path:
    """The generated month of `events` raw events as JSON lines (written once, then cached)."""
    from benchmarks.data import json_events

    path = work / "data" / f"events-{events}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as sink:
            for body in json_events(make_world(MONTH), events, seed=19):
                sink.write(body.replace(b"\n", b" ") + b"\n")
        partial.rename(path)
    return path


def run_ingest(work: Path, events: int, repeats: int, budget: float) -> dict[str, Any]:
    """`repeats` whole-process runs of `chargeback ingest` over the month file (fewer when the
    time budget in seconds is spent after the first)."""
    source = month_file(work, events)
    files = write_reference(make_world(MONTH), work / "reference")
    script = str(Path(sys.executable).parent / "chargeback")
    runs: list[dict[str, Any]] = []
    began = time.monotonic()
    for repeat in range(repeats):
        if repeat and budget and time.monotonic() - began > budget:
            break
        home = work / "ingest-cli"
        shutil.rmtree(home, ignore_errors=True)
        env = {**os.environ, "CHARGEBACK_HOME": str(home), "CHARGEBACK_DEPLOYMENTS": str(files["deployments"]),
               "CHARGEBACK_COST_CENTERS": str(files["cost_centers"]), "CHARGEBACK_BUDGETS": str(files["budgets"])}
        started = time.perf_counter()
        child = subprocess.Popen([script, "ingest", str(source)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        errors = child.stderr.read().decode(errors="replace") if child.stderr else ""
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"chargeback ingest failed (exit {child.returncode}): {errors.strip()[-400:]}")
        runs.append({"seconds": elapsed, "peak_mib": usage.ru_maxrss / 1024, "start_mib": 0.0, "peak_reset": False,
                     "loadavg": os.getloadavg()[0], "events": events,
                     "cpu_seconds": usage.ru_utime + usage.ru_stime})
        shutil.rmtree(home, ignore_errors=True)
    return {"stage": "ingest-cli", "variant": "chargeback ingest FILE (whole process)", "role": "stage",
            "events": events, "runs": runs, "extra": {"file_mib": round(source.stat().st_size / 2**20)}}
