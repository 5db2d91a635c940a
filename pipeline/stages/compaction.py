"""Compaction: the many small files of a settled day rewritten as few, so that whatever reads a
day's events (`chargeback query`, the FOCUS export, `reconcile`, a report that cannot take the
rollups) opens a file or two instead of 96.

The 15-minute snapshot timer writes a file a day at every run: 96 a day, 2,976 a month. The day
rollups spare the report from reading them (pipeline.stages.day_rollups), but every reader of
the events opened each one: `chargeback query` over such a month of 1M events took 7-10 s,
against 0.9-1.3 s over a file a day (docs/benchmarks.md, "twenty-fourth pass").

A settled day (older than the usage window, as for the day rollups) with COMPACT_MIN_FILES
committed files of this version's layout, each smaller than COMPACT_ROWS, has them rewritten in
commit order as files of up to COMPACT_ROWS rows, each with its rollup, like a snapshot's. Nothing
is overwritten: the next manifest names each new file with the files it replaces
(`Manifest.compactions`), and readers take it in their place (pipeline.lake.manifests). That
manifest takes the number after the one the files were read as of, create-if-absent, so a
snapshot or another compaction committed meanwhile makes this one commit nothing
(SnapshotConflict; the files it wrote stay unread, as a failed snapshot's do): the next run does
it, from the files as they are then. A day whose files cannot all be read is left as it is.

The files replaced are deleted once their compaction is RETAIN old (7 days, as Delta Lake's
VACUUM keeps by default): a reader that listed the files before the compaction, or a version that
does not know compactions, still finds them until then. Each compaction leaves a note
`_compacted/<n:08d>.json` before its manifest `n` is committed; a later run that finds manifest
`n` committed more than RETAIN ago deletes each file it replaced that no committed manifest names
any more (never one a reader may be given), with that file's rollup, and then the note. A note
whose manifest is a snapshot's (the compaction lost the race) is deleted as it is found.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.manifests import (
    SNAPSHOT_LAYOUT,
    USAGE_PREFIX,
    Compaction,
    Manifest,
    PublishedFile,
    committed_files,
    latest_manifest,
    manifest_at,
    numbered_objects,
    write_checkpoint,
)
from pipeline.lake.rollups import ROLLUP_LAYOUT, RollupMaker, rollup_key
from pipeline.lake.usage import USAGE_SCHEMA
from pipeline.ports import ObjectStore
from pipeline.stages.day_rollups import RECENT_DAYS, settled_before
from pipeline.stages.snapshot import commit_manifest, file_and_rollup

# A day is compacted once it has this many small files: a daily or hourly schedule leaves up
# to 24 and a replay a few more, which readers open quickly enough; a 15-minute one leaves 96.
COMPACT_MIN_FILES = 10
# Rows of a compacted file at most, and of a file compacted: a run's rows are held whole while
# its file and rollup are written. A day of 1,093,490 rows in 96 files peaked at 1,008 MiB in runs
# of 1M, 631 in runs of 500,000, 486 in runs of 250,000 (the timer shares a 2,048 MB instance with
# the Event Hub trigger; docs/benchmarks.md, "twenty-fourth pass").
COMPACT_ROWS = 500_000
RETAIN = timedelta(days=7)  # how long the files a compaction replaced stay after its commit
BACKLOG_DAYS = 1  # days before the last week compacted by each scheduled run, oldest first
T = TypeVar("T")
NOTES_PREFIX = "_compacted"  # `_compacted/<n:08d>.json`: manifest n compacts files, not deleted yet


@dataclass(slots=True)
class CompactionResult:
    days: int = 0  # days compacted
    replaced: int = 0  # the files their new files replace
    written: int = 0  # the new files
    rows: int = 0  # the rows rewritten
    unreadable: list[str] | None = None  # days left as they are: a file of theirs could not be read
    manifest: int | None = None  # the manifest that committed them
    deleted: int = 0  # files deleted, replaced by compactions committed more than RETAIN ago
    seconds: float = 0.0


def compact_recent_days(store: ObjectStore, now: datetime | None = None) -> CompactionResult:
    """compact_days over the last RECENT_DAYS settled days at `now` (default now), and the oldest
    day before them still to compact (BACKLOG_DAYS): what a run on a schedule does after its
    snapshot. So a store written before compaction is compacted with no one running anything (a
    year of 15-minute days in about four days of 15-minute runs)."""
    first_unsettled = settled_before(now)
    return compact_days(store, first_unsettled, since=first_unsettled - timedelta(days=RECENT_DAYS), now=now,
                        backlog=BACKLOG_DAYS)


def compact_days(store: ObjectStore, settled_before: date, since: date | None = None,
                 now: datetime | None = None, backlog: int = 0) -> CompactionResult:
    """Rewrite the small files of each day before `settled_before` (from `since` on, when given,
    and the `backlog` oldest days before `since`) that has COMPACT_MIN_FILES of them as files of
    up to COMPACT_ROWS rows, committed by one manifest, after deleting the files compactions
    replaced more than RETAIN before `now` (default now); safe to run again at any time (a day
    with fewer small files is left as it is)."""
    started = time.perf_counter()
    latest = latest_manifest(store)
    if latest is None:
        return CompactionResult()
    committed = committed_files(store, through=latest.number)
    # A file no manifest up to `latest` names is named by none after it either (names are fresh).
    result = CompactionResult(deleted=delete_replaced(store, now or datetime.now(UTC),
                                                      {file.key for file in committed}))
    days: dict[date, list[PublishedFile]] = defaultdict(list)
    for file in committed:
        if file.date < settled_before and _small(file):
            days[file.date].append(file)
    wanting = chosen_days({day: files for day, files in days.items() if len(files) >= COMPACT_MIN_FILES},
                          since, backlog)
    if not wanting:
        return result
    number = latest.number + 1
    made: list[Compaction] = []
    maker = RollupMaker()
    try:
        for day, files in wanting.items():
            compacted = _compacted_day(store, maker, day, files, number)
            if compacted is None:
                result.unreadable = [*(result.unreadable or []), day.isoformat()]
                continue
            if not compacted:  # each run of its files is one file already (of nearly COMPACT_ROWS rows)
                continue
            made.extend(compacted)
            result.days += 1
            result.replaced += sum(len(c.replaces) for c in compacted)
            result.written += len(compacted)
            result.rows += sum(c.file.rows for c in compacted)
    finally:
        maker.close()
    if made:
        store.put(_note_key(number), b"{}", overwrite=True)  # before the commit: a file it replaces is never left
        commit_manifest(store, Manifest(number, latest.cursor, [], datetime.now(UTC), compactions=made))
        write_checkpoint(store, number)
        result.manifest = number
    result.seconds = time.perf_counter() - started
    return result


def chosen_days(candidates: dict[date, T], since: date | None, backlog: int) -> dict[date, T]:
    """The days to compact of those that could be, in order: those from `since` on (all when
    None), and the `backlog` oldest before it."""
    first = since or date.min
    ordered = dict(sorted(candidates.items()))
    older = [day for day in ordered if day < first][:backlog]
    return {day: value for day, value in ordered.items() if day >= first or day in older}


def delete_replaced(store: ObjectStore, now: datetime, committed: set[str]) -> int:
    """Delete the files that compactions committed more than RETAIN before `now` replaced and
    that are not among the `committed` keys; returns how many."""
    deleted = 0
    for number, note in numbered_objects(store, NOTES_PREFIX):
        manifest = manifest_at(store, number)
        if manifest is None:  # its commit is under way, or never came: a later manifest takes the number
            continue
        if not manifest.compactions:  # a snapshot took the number first: nothing was replaced
            store.delete(note)
            continue
        if manifest.created > now - RETAIN:
            continue
        for key in (key for compaction in manifest.compactions for key in compaction.replaces):
            if key not in committed and store.delete(key):
                store.delete(rollup_key(key))
                deleted += 1
        store.delete(note)
    return deleted


def _note_key(number: int) -> str:
    return f"{NOTES_PREFIX}/{number:08d}.json"


def _small(file: PublishedFile) -> bool:
    return file.rows < COMPACT_ROWS and file.layout == SNAPSHOT_LAYOUT


def _compacted_day(store: ObjectStore, maker: RollupMaker, day: date, files: list[PublishedFile],
                   number: int) -> list[Compaction] | None:
    """The day's files rewritten in runs of up to COMPACT_ROWS rows (a run of one file stays as
    it is); None when one of them cannot be read."""
    compactions = []
    for run in _runs(files):
        if len(run) < 2:
            continue
        compaction = _compacted_run(store, maker, day, run, number)  # its rows gone before the next run's
        if compaction is None:
            return None
        compactions.append(compaction)
    return compactions


def _compacted_run(store: ObjectStore, maker: RollupMaker, day: date, run: list[PublishedFile],
                   number: int) -> Compaction | None:
    """The run's files as one, written with its rollup; None when one of them cannot be read."""
    tables = [_rows(store, file.key) for file in run]
    if any(table is None for table in tables):
        return None
    rows = pa.concat_tables([table for table in tables if table is not None])
    key = f"{USAGE_PREFIX}/date={day.isoformat()}/compact-{number:08d}-{uuid.uuid4().hex[:12]}.parquet"
    data, rollup = file_and_rollup(rows, maker)
    store.put(key, data, overwrite=False)  # a fresh name: never taken
    if rollup is None:  # its sums pass 64 bits: a report sums its events
        file = PublishedFile(key, day, rows.num_rows, SNAPSHOT_LAYOUT)
    else:
        store.put(rollup_key(key), rollup, overwrite=False)
        file = PublishedFile(key, day, rows.num_rows, SNAPSHOT_LAYOUT, rollup_key(key), ROLLUP_LAYOUT)
    return Compaction(file, [source.key for source in run])


def _runs(files: list[PublishedFile]) -> list[list[PublishedFile]]:
    """The files in commit order, cut into runs of COMPACT_ROWS rows at most."""
    runs: list[list[PublishedFile]] = [[]]
    rows = 0
    for file in files:
        if runs[-1] and rows + file.rows > COMPACT_ROWS:
            runs.append([])
            rows = 0
        runs[-1].append(file)
        rows += file.rows
    return runs


def _rows(store: ObjectStore, key: str) -> pa.Table | None:
    """A snapshot file's rows in USAGE_SCHEMA; None when it is gone or is not readable Parquet."""
    data = store.get(key)
    if data is None:
        return None
    try:
        table = pq.ParquetFile(pa.BufferReader(data)).read()  # read_table: 5 ms a small file more (datasets)
        return table.select(USAGE_SCHEMA.names).cast(USAGE_SCHEMA)
    except (pa.ArrowException, KeyError):
        return None
