"""Snapshot: copy new ledger events into Parquet files, Hive-partitioned by UTC event date.

Publishing is a log of manifests, like a table format's commit log. A run reads the ledger's
change feed from the cursor of the latest manifest, writes new files (new names, never
overwriting), and then commits them by creating the next manifest `_manifests/<n>.json`,
which holds the files and the cursor to continue from. Creating a manifest is atomic and
create-if-absent, so:
- readers see only committed files (`published_files`), never a partial or orphaned one;
- a run that dies before its commit leaves orphan files that nobody reads, and the next run
  starts again from the last committed cursor: nothing is lost or published twice;
- two snapshot runs racing for the same manifest number cannot both commit.
Late events land as new files in their own date folder.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.manifests import (
    MANIFEST_PREFIX,
    SNAPSHOT_LAYOUT,
    USAGE_PREFIX,
    Manifest,
    PublishedFile,
    latest_manifest,
    write_checkpoint,
)
from pipeline.lake.rollups import ROLLUP_LAYOUT, RollupMaker, note_rolled_up, rollup_key
from pipeline.lake.usage import USAGE_SCHEMA
from pipeline.ports import Changes, ChargebackError, Ledger, ObjectStore, Pending

DEFAULT_CHUNK_ROWS = 1_000_000
ROW_GROUP_ROWS = 1_000_000
# A day of twice this many rows or more is written as several files at once, one per core at
# most: pyarrow encodes a Parquet file on one thread, and releases the GIL while it does.
PART_ROWS = 200_000


class SnapshotConflict(ChargebackError):
    """Another snapshot run committed the same manifest number first."""


@dataclass(slots=True)
class SnapshotResult:
    rows: int = 0
    files: list[str] = field(default_factory=list)
    manifests: list[int] = field(default_factory=list)
    cursor: str | None = None
    seconds: float = 0.0
    pending: Pending = field(default_factory=Pending)  # ledger events not taken yet: they settle until then


def snapshot(ledger: Ledger, store: ObjectStore, chunk_rows: int = DEFAULT_CHUNK_ROWS,
             part_rows: int = PART_ROWS) -> SnapshotResult:
    """Publish every ledger event not yet published; safe to run again at any time."""
    started = time.perf_counter()
    latest = latest_manifest(store)
    number = latest.number if latest else 0
    cursor = latest.cursor if latest else None
    result = SnapshotResult(cursor=cursor)
    rollups: RollupMaker | None = None
    try:
        while True:
            changes = ledger.changes(cursor, chunk_rows)
            if changes.table.num_rows == 0:
                break
            rollups = rollups or RollupMaker()
            number += 1
            files = _commit(store, changes, number, part_rows, rollups)
            cursor = changes.cursor
            result.rows += changes.table.num_rows
            result.files.extend(f"{store.url}/{file.key}" for file in files)
            result.manifests.append(number)
            result.cursor = cursor
    finally:
        if rollups is not None:
            rollups.close()
    if result.manifests:
        write_checkpoint(store, number)  # every CHECKPOINT_EVERY manifests: what readers start from
        if latest is None:  # this store begun with rollups: nothing for a backfill to do
            note_rolled_up(store, number)
    result.pending = ledger.pending()
    result.seconds = time.perf_counter() - started
    return result


def _commit(store: ObjectStore, changes: Changes, number: int, part_rows: int,
            rollups: RollupMaker) -> list[PublishedFile]:
    """Write a chunk of the change feed as files, each with its rollup, then commit them as
    manifest `number`; returns the files."""
    files = []
    table = changes.table.replace_schema_metadata(USAGE_SCHEMA.metadata)
    for day, rows, data, rollup in _written(table, part_rows, rollups):
        key = f"{USAGE_PREFIX}/date={day.isoformat()}/part-{number:08d}-{uuid.uuid4().hex[:12]}.parquet"
        store.put(key, data, overwrite=False)  # a fresh name: never taken
        if rollup is None:  # its sums pass 64 bits: a report sums its events
            files.append(PublishedFile(key, day, rows, SNAPSHOT_LAYOUT))
            continue
        store.put(rollup_key(key), rollup, overwrite=False)
        files.append(PublishedFile(key, day, rows, SNAPSHOT_LAYOUT, rollup_key(key), ROLLUP_LAYOUT))
    commit_manifest(store, Manifest(number, changes.cursor, files, datetime.now(UTC)))
    return files


def commit_manifest(store: ObjectStore, manifest: Manifest) -> None:
    """Create the manifest's object, create-if-absent: SnapshotConflict when another run
    committed that number first (a snapshot's or a backfill's)."""
    key = f"{MANIFEST_PREFIX}/{manifest.number:08d}.json"
    if not store.put(key, msgspec.json.encode(manifest), overwrite=False):
        raise SnapshotConflict(f"manifest {manifest.number} was committed by another snapshot run; run again")


def _split_by_date(table: pa.Table) -> Iterator[tuple[date, pa.Table]]:
    """The chunk's rows of each UTC day, one day at a time: a day's rows are a copy of every column,
    so only one day's copy lives while it is written (all of them at once doubled the peak)."""
    import pyarrow.compute as pc  # here: a run with nothing new (every report's catch-up) does not load it (90 ms)

    days = pc.cast(table["timestamp"], pa.date32())  # UTC timestamps: the UTC date
    # Compared as Arrow scalars: a Python date turned into Arrow makes pyarrow import pandas (0.2 s).
    distinct = pc.unique(days).sort()
    if len(distinct) == 1:  # the usual chunk: one day, written as it is (a filter would copy every column)
        yield distinct[0].as_py(), table
        return
    for day in distinct:
        yield day.as_py(), table.filter(pc.equal(days, day))


def _written(table: pa.Table, part_rows: int,
             rollups: RollupMaker) -> Iterator[tuple[date, int, bytes, bytes | None]]:
    """Each day's rows as Parquet, with their rollup, in order of day: a day of 2 x `part_rows`
    rows or more as several files written at once, one per core at most and each of `part_rows`
    rows at least. No more files are in the making than there are cores, so at most that many
    days' copies live at a time."""
    cores = _cores()
    with ThreadPoolExecutor(cores, thread_name_prefix="snapshot-parquet") as pool:
        making: deque[tuple[date, int, Future[tuple[bytes, bytes | None]]]] = deque()
        for day, rows in _split_by_date(table):
            for part in _parts(rows, min(cores, rows.num_rows // part_rows) or 1):
                if len(making) == cores:
                    done_day, done_rows, done = making.popleft()
                    yield done_day, done_rows, *done.result()
                making.append((day, part.num_rows, pool.submit(file_and_rollup, part, rollups)))
        while making:
            done_day, done_rows, done = making.popleft()
            yield done_day, done_rows, *done.result()


def _parts(rows: pa.Table, count: int) -> list[pa.Table]:
    """`rows` in `count` slices of about the same size (slices share the table's buffers)."""
    size = -(-rows.num_rows // count)
    return [rows.slice(start, size) for start in range(0, rows.num_rows, size)]


def _cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def file_and_rollup(table: pa.Table, rollups: RollupMaker) -> tuple[bytes, bytes | None]:
    """A snapshot file's bytes (USAGE_SCHEMA rows of one UTC day) and its rollup's (None: its
    sums pass 64 bits)."""
    return _parquet_bytes(table), rollups.rollup(table)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue()
