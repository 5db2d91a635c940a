"""The embedded ledger: one SQLite table, append-only, idempotent by eventId.

`seq` (the rowid) is the change-feed cursor. SQLite has a single writer at a time, so a row
that becomes visible always has a higher seq than every row visible before it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pyarrow as pa

from pipeline.domain.events import UsageEvent
from pipeline.ports import AppendResult, Changes
from pipeline.usage_schema import USAGE_SCHEMA

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOOKUP_CHUNK = 500  # eventIds per IN query: below SQLite's limit on bound parameters
ONE_MICROSECOND = timedelta(microseconds=1)

_COLUMNS = [f.name for f in USAGE_SCHEMA if f.name not in ("ledger_seq",)]
_DDL = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (event_id);
"""
_INSERT = f"INSERT OR IGNORE INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_SELECT = f"SELECT {', '.join(_COLUMNS)}, seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
_encode = msgspec.json.Encoder().encode
_decode_tags = msgspec.json.Decoder(dict[str, str]).decode


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // ONE_MICROSECOND


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    connection.execute("PRAGMA cache_size=-262144")  # 256 MiB at most: random eventIds hit the whole index
    connection.execute("PRAGMA temp_store=MEMORY")
    return connection


class SqliteLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)
        self._db.executescript(_DDL)
        # Columns are added, never changed: a ledger written by an older version stays readable.
        present = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        for name in _COLUMNS:
            if name not in present:
                self._db.execute(f"ALTER TABLE events ADD COLUMN {name}")

    def append(self, events: Sequence[UsageEvent]) -> AppendResult:
        ingested_at = micros(datetime.now(UTC))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            before = self._db.total_changes
            # In key order: neighbouring eventIds land on the same index pages.
            rows = sorted((_row(event, ingested_at) for event in events), key=_by_event_id)
            self._db.executemany(_INSERT, rows)
            new = self._db.total_changes - before
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return AppendResult(new=new, duplicates=len(events) - new)

    def changes(self, cursor: str | None, max_rows: int) -> Changes:
        after = int(cursor) if cursor else 0
        rows = self._db.execute(_SELECT, (after, max_rows)).fetchall()
        if not rows:
            return Changes(USAGE_SCHEMA.empty_table(), cursor)
        return Changes(pa.Table.from_batches([_record_batch(rows)]), str(rows[-1][-1]))

    def existing(self, event_ids: Sequence[str]) -> set[str]:
        unique = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start:start + LOOKUP_CHUNK]
            query = f"SELECT event_id FROM events WHERE event_id IN ({', '.join('?' * len(chunk))})"
            found.update(row[0] for row in self._db.execute(query, chunk))
        return found

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        self._db.close()


_NO_ORIGIN = (None,) * 6


def _by_event_id(row: tuple[object, ...]) -> str:
    return row[0]  # type: ignore[return-value]


def _row(event: UsageEvent, ingested_at: int) -> tuple[object, ...]:
    usage, origin = event.usage, event.origin
    return (
        event.event_id, micros(event.timestamp), event.subscription_id, event.product_id, event.api_id,
        event.operation_id, event.caller_app_id, event.caller_tenant_id, event.caller_object_id,
        event.cost_center, event.deployment, event.model, event.region, event.stream, event.status_code,
        event.duration_ms, event.usage_source,
        usage.prompt_tokens if usage else None,
        usage.completion_tokens if usage else None,
        usage.total_tokens if usage else None,
        usage.cached_tokens if usage else None,
        usage.reasoning_tokens if usage else None,
        None if event.tags is None else _encode(event.tags).decode(),
        event.extra,
        *(_NO_ORIGIN if origin is None else (
            origin.source, origin.position, origin.partition, origin.sequence_number, origin.offset,
            None if origin.enqueued_time is None else micros(origin.enqueued_time))),
        event.schema_version, ingested_at,
    )


_NAMES = [*_COLUMNS, "ledger_seq"]
_READ_SCHEMA = pa.schema([USAGE_SCHEMA.field(name) for name in _NAMES])
_TAGS = _NAMES.index("tags")
_STREAM = _NAMES.index("stream")


def _record_batch(rows: list[tuple[object, ...]]) -> pa.RecordBatch:
    columns: list[list[object]] = [list(column) for column in zip(*rows, strict=True)]
    columns[_TAGS] = [None if text is None else list(_decode_tags(str(text)).items()) for text in columns[_TAGS]]
    columns[_STREAM] = [bool(flag) for flag in columns[_STREAM]]
    arrays = [pa.array(column, type=field.type) for column, field in zip(columns, _READ_SCHEMA, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=_READ_SCHEMA).select(USAGE_SCHEMA.names)
