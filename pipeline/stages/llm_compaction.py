"""Compaction of the `llm-usage` area: a settled day's many small files of LLM-log usage rewritten
as few, so that a report joining streamed usage opens a file or two a day instead of one per
host batch (pipeline.stages.llm_usage writes a file per batch and day: 2,976 files of a month
took 2.9 s to open and count, docs/benchmarks.md, "twenty-fourth pass").

The area has no manifest: readers list it (pipeline.lake.llm_usage.llm_usage_keys) and the
warehouse deduplicates its records by join id, by a total order of their values, so a record
read twice counts once. A compaction writes the rows of a day's files (runs of up to
COMPACT_ROWS), unchanged, as `date=D/compact-<hash of their keys>.parquet`, then the note
`date=D/compact-<hash>.json` naming them. The note is the commit: a reader that lists both the
file and its note leaves the files it names out; one that lists the file alone (a crash between
the two, or a version before compaction) reads it with them, and still counts each record once.

The files replaced are deleted by the first run RETAIN (7 days) after the note; the notes stay
(a reader that listed a file before it was deleted still finds the note, and leaves the file out).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.llm_usage import COMPACT_PREFIX, LLM_USAGE_SCHEMA, CompactionNote, file_day, read_note
from pipeline.ports import ObjectStore
from pipeline.stages.compaction import COMPACT_MIN_FILES, COMPACT_ROWS, RETAIN, chosen_days
from pipeline.stages.day_rollups import RECENT_DAYS, settled_before


@dataclass(slots=True)
class LlmCompactionResult:
    days: int = 0  # days compacted
    replaced: int = 0  # the files their new files replace
    written: int = 0  # the new files
    unreadable: list[str] | None = None  # days left as they are: a file of theirs could not be read
    deleted: int = 0  # files deleted, replaced more than RETAIN ago


def compact_recent_llm_days(store: ObjectStore, now: datetime | None = None) -> LlmCompactionResult:
    """Compact the last RECENT_DAYS settled days of the area at `now` (default now) and the
    oldest day before them still to compact; delete the files replaced RETAIN ago."""
    moment = now or datetime.now(UTC)
    first_unsettled = settled_before(moment)
    return compact_llm_days(store, first_unsettled, first_unsettled - timedelta(days=RECENT_DAYS), moment, backlog=1)


def compact_llm_days(store: ObjectStore, settled_before: date, since: date | None = None,
                     now: datetime | None = None, backlog: int = 0) -> LlmCompactionResult:
    """Rewrite the small files of each day before `settled_before` (from `since` on, and the
    `backlog` oldest days before it) that has COMPACT_MIN_FILES of them not compacted yet; delete
    the files that notes RETAIN old before `now` (default now) replaced. Only the notes of a day
    that lists COMPACT_MIN_FILES small files or more are read (a day whose files replaced are
    deleted lists few)."""
    moment = now or datetime.now(UTC)
    listed = store.list("")
    present = set(listed)
    days: dict[date, list[str]] = defaultdict(list)
    notes: dict[date, list[str]] = defaultdict(list)
    for key in listed:
        day = file_day(key)
        if day is None:
            continue
        if _is_note(key):
            notes[day].append(key)
        elif key.endswith(".parquet") and not _name(key).startswith(COMPACT_PREFIX):
            days[day].append(key)
    result = LlmCompactionResult()
    wanting: dict[date, list[str]] = {}
    for day, keys in sorted(days.items()):
        if len(keys) < COMPACT_MIN_FILES:
            continue
        covered: set[str] = set()
        for key in notes[day]:
            note = read_note(store, key)
            if note is None or key.removesuffix(".json") + ".parquet" not in present:
                continue
            covered.update(note.replaces)
            if note.created <= moment - RETAIN:
                result.deleted += sum(1 for source in note.replaces if source in present and store.delete(source))
        left = [key for key in keys if key not in covered]
        if day < settled_before and len(left) >= COMPACT_MIN_FILES:
            wanting[day] = left
    for day, keys in chosen_days(wanting, since, backlog).items():
        written = _compact_day(store, keys, moment)
        if written is None:
            result.unreadable = [*(result.unreadable or []), day.isoformat()]
            continue
        result.days += 1
        result.replaced += len(keys)
        result.written += written
    return result


def _compact_day(store: ObjectStore, keys: list[str], now: datetime) -> int | None:
    """The day's files as files of up to COMPACT_ROWS rows, each with its note; how many, or None
    when one of the files cannot be read (nothing is written then). The files are held as they
    are stored (compressed) and decoded a run at a time."""
    files = []
    for key in keys:
        try:
            files.append(pq.ParquetFile(pa.BufferReader(store.get(key) or b"")))
        except pa.ArrowException:
            return None
    runs: list[list[int]] = [[]]
    rows = 0
    for at, file in enumerate(files):
        if runs[-1] and rows + file.metadata.num_rows > COMPACT_ROWS:
            runs.append([])
            rows = 0
        runs[-1].append(at)
        rows += file.metadata.num_rows
    made = []
    for run in runs:
        try:
            table = pa.concat_tables([files[at].read().select(LLM_USAGE_SCHEMA.names).cast(LLM_USAGE_SCHEMA)
                                      for at in run])
        except (pa.ArrowException, KeyError):
            return None
        sources = sorted(keys[at] for at in run)
        digest = hashlib.sha256("\n".join(sources).encode()).hexdigest()[:32]
        folder = sources[0].rsplit("/", 1)[0]
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        del table
        made.append((f"{folder}/{COMPACT_PREFIX}{digest}", sink.getvalue().to_pybytes(), sources))
    for name, data, sources in made:  # nothing written unless every run could be read
        store.put(f"{name}.parquet", data, overwrite=False)
        store.put(f"{name}.json", msgspec.json.encode(CompactionNote(sources, now)),
                  overwrite=False)  # the commit: readers leave the sources out from now on
    return len(made)


def _is_note(key: str) -> bool:
    return _name(key).startswith(COMPACT_PREFIX) and key.endswith(".json")


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]
