"""`chargeback replay FOLDER` of Event Hubs Capture files as a whole process (issue 19: "`replay`
of Capture files at the same rate" as the ingest of a JSON-lines file).

The Capture files are the month of `benchmarks.ingest_cli.month_file` as Capture writes it (the
default layout `{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}.avro`,
records `Microsoft.ServiceBus.Messaging.EventData` with .NET's `M/d/yyyy h:mm:ss tt` enqueued
times): 4 partitions, one file per partition and 15-minute window (Capture's longest), records in
enqueued order. Generated once and cached in WORK/data. Each run replays them into a fresh
CHARGEBACK_HOME; the child's own wall, CPU and peak RSS come from `os.wait4`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import msgspec

from benchmarks.ingest_cli import month_file
from benchmarks.launch import measured_run
from benchmarks.measure import Result
from benchmarks.stages import MONTH
from benchmarks.world import make_world, write_reference

PARTITIONS = 4
WINDOW_SECONDS = 900
CAPTURE_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "EventData", "namespace": "Microsoft.ServiceBus.Messaging", "fields": [
        {"name": "SequenceNumber", "type": "long"}, {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": {"type": "map", "values": ["long", "double", "string", "bytes"]}},
        {"name": "Properties", "type": {"type": "map", "values": ["long", "double", "string", "bytes", "null"]}},
        {"name": "Body", "type": ["null", "bytes"]}]})


class _Stamp(msgspec.Struct):
    timestamp: datetime


def capture_folder(work: Path, events: int) -> Path:
    """The month's events as Capture files under WORK/data/capture-N (written once, then cached)."""
    folder = work / "data" / f"capture-{events}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    stamp = msgspec.json.Decoder(_Stamp)
    fallback = datetime(2026, 10, 1, tzinfo=UTC)
    windows: dict[tuple[int, int], list[tuple[datetime, bytes]]] = defaultdict(list)
    with month_file(work, make_world(MONTH), events).open("rb") as lines:
        for number, line in enumerate(lines):
            body = line.rstrip(b"\n")
            try:
                moment = stamp.decode(body).timestamp.astimezone(UTC)
            except (msgspec.DecodeError, ValueError):  # the file's malformed lines are captured too
                moment = fallback
            windows[(number % PARTITIONS, int(moment.timestamp()) // WINDOW_SECONDS)].append((moment, body))
    sequences = [0] * PARTITIONS
    for (partition, window), records in sorted(windows.items()):
        start = datetime.fromtimestamp(window * WINDOW_SECONDS, UTC)
        path = folder / "bench-ns" / "usage" / str(partition) / f"{start:%Y/%m/%d/%H/%M/%S}.avro"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        for moment, body in sorted(records, key=lambda record: record[0]):
            sequences[partition] += 1
            rows.append({"SequenceNumber": sequences[partition], "Offset": str(sequences[partition] * 1024),
                         "EnqueuedTimeUtc": f"{moment.month}/{moment.day}/{moment.year} "
                                            f"{moment:%I}:{moment:%M}:{moment:%S} {moment:%p}".replace(" 0", " ", 1),
                         "SystemProperties": {}, "Properties": {}, "Body": body})
        with path.open("wb") as sink:
            fastavro.writer(sink, CAPTURE_SCHEMA, rows)
    (folder / ".complete").touch()
    return folder


def run_replay(work: Path, events: int, repeats: int, budget: float) -> dict[str, Any]:
    """`repeats` whole-process runs of `chargeback replay` over the Capture folder."""
    folder = capture_folder(work, events)
    files = write_reference(make_world(MONTH), work / "reference")
    script = str(Path(sys.executable).parent / "chargeback")
    result = Result("replay-cli", "chargeback replay CAPTURE-FOLDER (whole process)", "stage", events,
                    extra={"files": sum(1 for _ in folder.rglob("*.avro"))})
    began = time.monotonic()
    for repeat in range(repeats):
        if repeat and budget and time.monotonic() - began > budget:
            break
        home = work / "replay-cli"
        shutil.rmtree(home, ignore_errors=True)
        env = {**os.environ, "CHARGEBACK_HOME": str(home), "CHARGEBACK_DEPLOYMENTS": str(files["deployments"]),
               "CHARGEBACK_COST_CENTERS": str(files["cost_centers"]), "CHARGEBACK_BUDGETS": str(files["budgets"])}
        result.runs.append(measured_run([script, "replay", str(folder)], env, events))
        shutil.rmtree(home, ignore_errors=True)
    return result.as_dict()
