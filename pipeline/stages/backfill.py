"""Backfill: rollups for snapshot files committed without one of this version (written before
rollups, or by another version of their SQL) or whose rollup is gone, so that reports of those
days sum rollups too; on request (`check_present`, `chargeback snapshot --rollups`), also for
those whose rollup is there but damaged (not Parquet a reader can read, or not the rollup's
columns), which a report passes over for the file's events.

No snapshot file is rewritten. Each file without a rollup of this version is read, its rollup
written under the name of its version (pipeline.lake.rollups.rollup_key; a damaged one is replaced
there: a rollup is derived from its file, and an object is replaced atomically), and the rollups
are committed together by the next manifest, which names no new file and keeps the latest cursor
(`Manifest.rollups`). Committing takes the next manifest number create-if-absent, as a snapshot
does: a backfill and a snapshot racing for it cannot both commit, and the loser runs again. A
backfill that dies before its commit leaves rollup objects nobody reads.

A backfill that leaves no file for a next run writes `rolled_up_note_key()` (the latest manifest then),
so that the Functions snapshot timer, which backfills a few files after each snapshot, stops
looking once a store is done: one read a run instead of the manifests' list of files. It is a
hint, never read by a report: files committed later by an older version (two versions running
side by side during a deploy) are read from their events until `chargeback snapshot --rollups`,
which always looks, rolls them up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.manifests import (
    Manifest,
    PublishedFile,
    PublishedRollup,
    latest_manifest,
    published_files,
    write_checkpoint,
)
from pipeline.lake.rollups import (
    ROLLUP_LAYOUT,
    RollupMaker,
    note_rolled_up,
    read_rollup,
    rolled_up_note_key,
    rollup_key,
    rollups_folder,
)
from pipeline.lake.snapshot_scans import rolled_up
from pipeline.lake.usage import USAGE_SCHEMA, conformed
from pipeline.ports import ObjectStore, SourceError
from pipeline.stages.snapshot import commit_manifest

DEFAULT_MOST_FILES = 10_000  # files rolled up per manifest: a long history is done in several runs
BATCH_ROWS = 65_536  # rows handed to DuckDB at a time


@dataclass(slots=True)
class BackfillResult:
    files: int = 0  # files given a rollup
    left: int = 0  # files beyond `most_files`: the next run takes them
    unrolled: int = 0  # files whose sums pass 64 bits: reports sum their events
    damaged: int = 0  # of `files`, those whose rollup was there but damaged (`check_present`)
    manifest: int | None = None  # the manifest that committed them
    skipped: bool = False  # `unless_complete` and a backfill had found no file left: nothing looked at
    seconds: float = 0.0


def backfill_rollups(store: ObjectStore, most_files: int = DEFAULT_MOST_FILES, *,
                     unless_complete: bool = False, check_present: bool = False) -> BackfillResult:
    """Roll up at most `most_files` committed files that have no rollup of this version, and
    commit their rollups by one manifest; safe to run again at any time. `unless_complete`: do
    nothing when a backfill found no file left before (rolled_up_note_key). `check_present`: also
    read every rollup there (a few KiB a day), and roll up again the files whose rollup is damaged."""
    started = time.perf_counter()
    result = BackfillResult()
    if unless_complete and store.exists(rolled_up_note_key()):
        result.skipped, result.seconds = True, time.perf_counter() - started
        return result
    files = published_files(store)
    present = set(store.list(rollups_folder())) if files else set()  # one listing, not a read each
    # A file's own rollup of this version, or its day's that sums exactly the files naming it.
    rolled = {key: named for key, named in rolled_up(files, date.max).items() if key in present}
    covered = {file.key for named in rolled.values() for file in named}
    wanting = [file for file in files if file.key not in covered]
    damaged = _damaged(store, rolled) if check_present else []
    wanting += damaged
    if not wanting:  # (a store that needs nothing never loads DuckDB)
        _note_complete(store)
        result.seconds = time.perf_counter() - started
        return result
    made: list[PublishedRollup] = []
    maker = RollupMaker()
    try:
        for file in wanting[:most_files]:
            source = store.open(file.key)
            if source is None:
                raise SourceError(f"{store.url}/{file.key}: a committed snapshot file is gone; restore it from "
                                  "a backup, or replay its events into a new ledger and snapshot")
            with source:  # read a row group at a time, each batch with the columns of now (an earlier layout's too)
                try:
                    batches = (conformed(batch) for batch in pq.ParquetFile(source).iter_batches(BATCH_ROWS))
                    rollup = maker.rollup(pa.RecordBatchReader.from_batches(USAGE_SCHEMA, batches))
                except pa.ArrowException as error:  # a damaged file: reports read its events and fail on it too
                    raise SourceError(f"{store.url}/{file.key}: a committed snapshot file is not readable Parquet "
                                      f"({error}); restore it from a backup") from None
            if rollup is None:  # sums past 64 bits: the report keeps summing its events
                result.unrolled += 1
                continue
            key = rollup_key(file.key)
            # A leftover of a backfill that died is rewritten (never read), a damaged rollup replaced
            # (atomically: a report reads the one or the other).
            store.put(key, rollup, overwrite=True)
            made.append(PublishedRollup(file.key, key, ROLLUP_LAYOUT))
    finally:
        maker.close()
    result.files, result.left = len(made), max(0, len(wanting) - most_files)
    remade = {rollup.key for rollup in made}
    result.damaged = sum(file.key in remade for file in damaged)
    if made:
        result.manifest = commit_rollups(store, made)
    if not result.left:
        _note_complete(store, result.manifest)
    result.seconds = time.perf_counter() - started
    return result


def commit_rollups(store: ObjectStore, made: list[PublishedRollup]) -> int:
    """Commit rollups of files committed before by the next manifest, which names no new file and
    keeps the latest cursor (create-if-absent: SnapshotConflict when a snapshot took the number),
    and write its checkpoint when one is due; returns its number."""
    latest = latest_manifest(store)
    assert latest is not None  # the files rolled up are named by one
    number = latest.number + 1
    commit_manifest(store, Manifest(number, latest.cursor, [], datetime.now(UTC), made))
    write_checkpoint(store, number)
    return number


def _damaged(store: ObjectStore, rolled: dict[str, list[PublishedFile]]) -> list[PublishedFile]:
    """The files of those rollups (each there) that cannot be read, or do not have the columns a
    rollup made now has."""
    if not rolled:
        return []
    maker = RollupMaker()
    try:  # the columns of a rollup as this version makes it: that of no rows
        empty = maker.rollup(pa.Table.from_batches([], USAGE_SCHEMA))
    finally:
        maker.close()
    assert empty is not None  # sums of nothing pass no limit
    expected = pq.read_schema(pa.BufferReader(empty))
    found = []
    for key, named in rolled.items():
        table = read_rollup(store, key)
        if table is None or not table.schema.equals(expected):
            found.extend(named)
    return found


def _note_complete(store: ObjectStore, manifest: int | None = None) -> None:
    """Write the note as of `manifest` (the one this backfill committed), else of the latest."""
    if manifest is None:
        latest = latest_manifest(store)
        manifest = latest.number if latest else 0
    note_rolled_up(store, manifest)
