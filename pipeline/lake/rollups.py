"""A snapshot file's rollup: its events summed per pricing key and usage origin, written next to
it (`rollups/v<ROLLUP_LAYOUT>/date=YYYY-MM-DD/<the file's name>`) and named by the same manifest
entry (PublishedFile.rollup), or by a later manifest for a file written without one
(pipeline.stages.backfill). A report sums a month from the rollups of its files (a row per key and
origin: the bench's month of 10M events has 2,400 a day for 320,000 events) instead of scanning
their events (pipeline.stages.report.sql, ROLLED_GROUPS_SQL).

A rollup is the report's own grouping of the file's rows, made by the same SQL over the same
`usage` view columns (pipeline.lake.views), so it holds what the report would have summed from
the file, with two conditions that the reader checks, falling back to the file's events:
- the file's day is older than the usage window: a streamed event without usage is `expired`
  in a rollup, where a younger one is still `pending`;
- nothing is voided, and no LLM-log usage is joined: both look at each event (its eventId).
A rollup made by another version of this SQL (`ROLLUP_LAYOUT`) is not read. A file whose sums
pass 64 bits gets no rollup.

A day's rollup (`DAY_ROLLUP_LAYOUT`, pipeline.stages.day_rollups) sums the rollups of several
files of one settled day into one object, which each of those files names: a month of 15-minute
snapshots has 96 files a day, and a report then reads 31 objects instead of 2,976. Its name holds
a hash of the keys of the files it sums (`day_rollup_key`), and a reader takes it only for exactly
those files (`sums_exactly`): a file that has come to name another rollup since (an older
version's backfill) makes the day's files read their own rollups or events, never a sum twice. A
version that knows only `ROLLUP_LAYOUT` reads those files' events.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from pipeline.lake.views import BILLING_COLUMNS, KEY_OF_DAY, SUMMED, USAGE_SUMS, USAGE_WITHOUT_LLM_USAGE
from pipeline.ports import ObjectStore

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

ROLLUP_PREFIX = "rollups"
# The version of the rollup's SQL: a manifest entry names the one its rollup was made with, and
# the report reads only those of this one (bump it whenever the grouping or a derived column changes).
ROLLUP_LAYOUT = 1
# A day's rollup: ROLLUP_LAYOUT's sums over several files of one day, named by each of them (a
# version whose rollup SQL changes bumps both). Not ROLLUP_LAYOUT, so that a version reading only
# one object per file never reads it once per file.
DAY_ROLLUP_LAYOUT = ROLLUP_LAYOUT + 100
DAY_ROLLUPS = "days"  # under rollups_folder(): `rollups/v1/days/date=D/<count>-<hash>.parquet`
_ROWS = USAGE_WITHOUT_LLM_USAGE.format(events="part", pending="false", billing=BILLING_COLUMNS)
_KEY = KEY_OF_DAY.replace("u.", "")
ROLLUP_SQL = (f"SELECT {_KEY}, {', '.join(f'{c}::BIGINT AS {c}' for c in SUMMED)}, origin FROM "
              f"(SELECT {KEY_OF_DAY}, {USAGE_SUMS}, u.usage_source AS origin FROM ({_ROWS}) u GROUP BY ALL) "
              f"ORDER BY ALL")
_MERGED_SQL = (f"SELECT {_KEY}, {', '.join(f'sum({c})::BIGINT AS {c}' for c in SUMMED)}, origin FROM part "
               f"GROUP BY ALL ORDER BY ALL")


def rolled_up_note_key(layout: int = ROLLUP_LAYOUT) -> str:
    """The note that no committed file lacks a rollup of version `layout` that a backfill could
    make (pipeline.stages.backfill writes it when it leaves no file, a snapshot when it begins a store)."""
    return f"_backfill/rollups-v{layout}.json"


def note_rolled_up(store: ObjectStore, manifest: int) -> None:
    """Write the note, as of manifest `manifest`."""
    note = {"layout": ROLLUP_LAYOUT, "manifest": manifest, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    store.put(rolled_up_note_key(), msgspec.json.encode(note), overwrite=True)


def rollups_folder(layout: int = ROLLUP_LAYOUT) -> str:
    """The folder of the rollups made by version `layout` of the SQL: `rollups/v<layout>`."""
    return f"{ROLLUP_PREFIX}/v{layout}"


def rollup_key(usage_key: str, layout: int = ROLLUP_LAYOUT) -> str:
    """Where the rollup of the snapshot file `usage/date=D/NAME` made by version `layout` of the
    SQL goes: `rollups/v<layout>/date=D/NAME` (a rollup of another version never takes its name)."""
    _, _, rest = usage_key.partition("/")
    return f"{rollups_folder(layout)}/{rest}"


def day_rollup_key(day: date, file_keys: Iterable[str]) -> str:
    """Where the rollup of these files of `day` goes: `rollups/v<ROLLUP_LAYOUT>/days/date=D/` and
    the number of files and the SHA-256 of their sorted keys (what `sums_exactly` checks)."""
    keys = sorted(set(file_keys))
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    return f"{rollups_folder()}/{DAY_ROLLUPS}/date={day.isoformat()}/{len(keys)}-{digest}.parquet"


def sums_exactly(rollup: str, day: date, file_keys: Iterable[str]) -> bool:
    """Whether the day's rollup `rollup` is the one of exactly these files."""
    return rollup == day_rollup_key(day, file_keys)


def read_rollup(store: ObjectStore, key: str) -> pa.Table | None:
    """The rollup at `key`; None when it is gone or is not readable Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = store.get(key)
    if data is None:
        return None
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read()  # read_table: its datasets cost as much again
    except pa.ArrowException:
        return None


class RollupMaker:
    """Makes rollups with one DuckDB connection, from any number of threads (a cursor each)."""

    def __init__(self) -> None:
        import duckdb  # here: a snapshot with nothing to write never loads it

        # Spilling, if ever, under the system's temporary folder as the warehouse does (Limits), never
        # DuckDB's default `.tmp` in the working directory (read-only in a Functions package mount);
        # one thread per query, since the snapshot makes a file and its rollup on a thread each.
        self._connection = duckdb.connect(config={
            "temp_directory": str(Path(tempfile.gettempdir()) / "chargeback-duckdb"), "threads": 1})
        self._lock = threading.Lock()
        self._errors: tuple[type[Exception], ...] = (duckdb.ConversionException, duckdb.OutOfRangeException)

    def rollup(self, part: pa.Table | pa.RecordBatchReader) -> bytes | None:
        """The rollup of a file's rows (USAGE_SCHEMA, all of one UTC day; a reader is streamed) as
        Parquet; None when a sum passes 64 bits (the report then sums the file's events)."""
        return self._summed(part, ROLLUP_SQL)

    def merged(self, rollups: list[pa.Table]) -> bytes | None:
        """One rollup summing these rollups (of files of one day) as Parquet, in a rollup's order;
        None when a sum passes 64 bits."""
        import pyarrow as pa

        return self._summed(pa.concat_tables(rollups, promote_options="default"), _MERGED_SQL)

    def _summed(self, part: pa.Table | pa.RecordBatchReader, sql: str) -> bytes | None:
        """`sql` over `part` (named `part`) as Parquet; None when a sum passes 64 bits."""
        import pyarrow.parquet as pq

        with self._lock:
            cursor: duckdb.DuckDBPyConnection = self._connection.cursor()
        try:
            try:
                relation = cursor.from_arrow(part).query("part", sql)
                assert relation is not None  # a SELECT has a result
                summed = relation.to_arrow_table()
            except self._errors:
                return None
        finally:
            cursor.close()
        sink = io.BytesIO()
        pq.write_table(summed, sink, compression="zstd")
        return sink.getvalue()

    def close(self) -> None:
        self._connection.close()
