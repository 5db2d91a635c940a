"""`chargeback report --month` as a whole process against the hand-written DuckDB query as a
whole process (issue 19: "as whole processes, start-up included"), over the same generated month
of snapshot files (`benchmarks.stages.stage_prepare`, cached in WORK/data).

The report runs as a user runs it: a fresh CHARGEBACK_HOME whose store holds the month's
snapshots, the benchmark world's deployment map and cost centers, and a fresh --out folder (the
default formats: the CSV files and the Parquet). The query is `python -m benchmarks.report_sql`.
The two alternate run by run, so that load from elsewhere falls on both. Each child's own wall
and CPU seconds and peak RSS come from `os.wait4`: nothing of this harness is counted. The
report's CSV, summed to the query's grain, must hold the query's totals exactly.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.launch import measured_run
from benchmarks.measure import Result
from benchmarks.stages import MONTH, snapshot_root
from benchmarks.world import make_world, write_reference

KEY = ("cost_center", "subscription_id", "model", "deployment_type", "currency")
SUMMED = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens")


def run_report_cli(work: Path, events: int, repeats: int, budget: float, min_repeats: int = 2,
                   files_per_day: int = 1) -> tuple[list[dict[str, Any]], list[list[Any]], list[list[Any]]]:
    """`repeats` runs of each (fewer once `budget` seconds are spent, never fewer than
    `min_repeats`): the results, and the rows of the last run of the report and of the query.
    `files_per_day` 96: the month as the Functions app leaves it (stage `report-15min`: 2,976
    files with their day rollups), without the variant that sums the events."""
    root = snapshot_root(work, events, files_per_day)
    if not (root / ".complete").exists():
        raise SystemExit(f"{root}: no generated snapshot; run the prepare stage first")
    files = write_reference(make_world(MONTH), work / "reference")
    from pipeline.inputs.catalog import shipped_catalog_path

    stage = "report-cli" if files_per_day == 1 else "report-15min"
    place = work / stage
    shutil.rmtree(place, ignore_errors=True)
    (place / "store").mkdir(parents=True)
    (place / "store" / "snapshots").symlink_to(root.resolve(), target_is_directory=True)
    if files_per_day == 1:
        without_rollups(root, place / "store-events" / "snapshots")
    env = {**os.environ, "CHARGEBACK_HOME": str(place / "home"), "CHARGEBACK_STORE": (place / "store").as_uri(),
           "CHARGEBACK_DEPLOYMENTS": str(files["deployments"]), "CHARGEBACK_COST_CENTERS": str(files["cost_centers"])}
    envs = {"report": env, "events": {**env, "CHARGEBACK_STORE": (place / "store-events").as_uri()}, "sql": env}
    out, rows_out = place / "out", place / "sql-rows.json"
    report = [str(Path(sys.executable).parent / "chargeback"), "report", "--month", MONTH, "--out", str(out)]
    commands = {
        "report": report, "events": report,
        "sql": [sys.executable, "-m", "benchmarks.report_sql", str(root), "--month", MONTH,
                "--deployments", str(files["deployments"]), "--cost-centers", str(files["cost_centers"]),
                "--prices", str(shipped_catalog_path()), "--rows-out", str(rows_out)],
    }
    shape = "" if files_per_day == 1 else f", {files_per_day} files a day"
    results = {"report": Result(stage, f"chargeback report --month (whole process){shape}", "stage", events),
               "events": Result(stage, "  the same, manifests without rollups (summing the events)", "info",
                                events),
               "sql": Result(stage, f"hand-written DuckDB SQL (whole process){shape}", "baseline", events)}
    if files_per_day != 1:
        del results["events"]
    names = tuple(results)
    began = time.monotonic()
    from_events: list[list[Any]] | None = None
    for repeat in range(repeats):
        if repeat >= min_repeats and budget and time.monotonic() - began > budget:
            break
        for name in (names if repeat % 2 == 0 else names[::-1]):
            shutil.rmtree(out, ignore_errors=True)  # a first report into the folder, every run
            results[name].runs.append(measured_run(commands[name], envs[name]))
            if name == "events":
                from_events = report_csv_rows(out / f"chargeback-{MONTH}.csv")
            elif name == "report":
                ours = report_csv_rows(out / f"chargeback-{MONTH}.csv")
    shutil.rmtree(place / "home", ignore_errors=True)
    if from_events is not None and from_events != ours:
        raise SystemExit("the report summing the events differs from the report summing the rollups")
    return [result.as_dict() for result in results.values()], ours, json.loads(rows_out.read_text())


def without_rollups(root: Path, into: Path) -> None:
    """The snapshots of `root` as a store whose manifests name no rollups (the files linked, not
    copied): what a report reads of snapshots written before rollups."""
    from pipeline.lake.manifests import MANIFEST_PREFIX, USAGE_PREFIX, Manifest

    (into / MANIFEST_PREFIX).mkdir(parents=True)
    (into / USAGE_PREFIX).symlink_to((root / USAGE_PREFIX).resolve(), target_is_directory=True)
    for path in sorted((root / MANIFEST_PREFIX).glob("*.json")):
        manifest = msgspec.json.decode(path.read_bytes(), type=Manifest)
        files = [msgspec.structs.replace(file, rollup=None, rollup_layout=0) for file in manifest.files]
        (into / MANIFEST_PREFIX / path.name).write_bytes(msgspec.json.encode(msgspec.structs.replace(manifest,
                                                                                                      files=files)))


def report_csv_rows(path: Path) -> list[list[Any]]:
    """The report CSV's rows summed to the query's grain (the report also splits by catalog,
    charge class, tier and spillover), in the query's row shape; an unpriced row has no cost."""
    summed: dict[tuple[str, ...], list[Any]] = {}
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
            key = tuple(row[column] for column in KEY)
            into = summed.setdefault(key, [0, 0, 0, 0, None])
            for at, column in enumerate(SUMMED):
                into[at] += int(row[column])
            if row["cost"]:
                into[4] = (into[4] or Decimal(0)) + Decimal(row["cost"])
    return [[*key, *values[:4], None if values[4] is None else str(values[4])] for key, values in summed.items()]
