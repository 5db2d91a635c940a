"""The embedded ledger on SQLite: append-only, idempotent by eventId, readable as a change feed.

Layout (user_version 2):
- `event_ids (event_id PRIMARY KEY, batch)`: what idempotence needs, and nothing more. An
  eventId is new when its row is created; the first copy wins.
- `batches (batch, first_seq, last_seq, events)`: the NEW events of each append, as one Arrow IPC
  stream in USAGE_SCHEMA, with `ledger_seq` numbered first_seq..last_seq.

Both are written in one transaction, so an event is in `event_ids` exactly when it is in a batch.
`ledger_seq` is the change-feed cursor: SQLite has one writer at a time and each append numbers
its events after every event committed before it, so an event that becomes visible always has a
higher seq than every event visible before it. A ledger of the first layout (one `events` row per
event) is converted when opened, in one transaction, keeping every event's seq, so the cursors
in existing snapshot manifests stay valid.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.adapters import sqlite_ledger_v1
from pipeline.domain.events import UsageEvent
from pipeline.ports import AppendResult, Changes
from pipeline.usage_schema import USAGE_SCHEMA

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOOKUP_CHUNK = 500  # eventIds per IN query: below SQLite's limit on bound parameters
ONE_MICROSECOND = timedelta(microseconds=1)
LAYOUT = 2  # PRAGMA user_version of this layout; 0 is the first one (or a new, empty file)

_DDL = """
CREATE TABLE IF NOT EXISTS event_ids (event_id TEXT PRIMARY KEY, batch INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    batch INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL UNIQUE,
    rows INTEGER NOT NULL, events BLOB NOT NULL);
"""
# One statement for a whole batch: the ids travel as one JSON array, and RETURNING names the rows
# created, i.e. the new eventIds. JSON text cannot carry NUL through SQLite, so ids holding one
# take the one-row statement.
_INSERT_IDS = "INSERT OR IGNORE INTO event_ids SELECT value, ? FROM json_each(?) RETURNING event_id"
_INSERT_ID = "INSERT OR IGNORE INTO event_ids VALUES (?, ?)"
_encode = msgspec.json.Encoder().encode
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


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
        self._db.execute("BEGIN IMMEDIATE")
        try:
            layout = self._db.execute("PRAGMA user_version").fetchone()[0]
            if layout > LAYOUT:
                raise RuntimeError(f"{path} is a ledger of layout {layout}, newer than this version's ({LAYOUT}): "
                                   "upgrade chargeback to read it")
            if layout < LAYOUT:
                for statement in _DDL.split(";"):
                    self._db.execute(statement)
                for rows in sqlite_ledger_v1.take_rows(self._db):  # a first-layout ledger: convert it
                    self._write(sqlite_ledger_v1.record_batch(rows))
                self._db.execute(f"PRAGMA user_version = {LAYOUT}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def append(self, events: Sequence[UsageEvent]) -> AppendResult:
        first: dict[str, UsageEvent] = {}
        for event in events:
            first.setdefault(event.event_id, event)
        if not first:
            return AppendResult(new=0, duplicates=len(events))
        ingested_at = datetime.now(UTC)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            batch, last_seq = self._db.execute(
                "SELECT coalesce(max(batch), 0) + 1, coalesce(max(last_seq), 0) FROM batches").fetchone()
            created = self._insert_ids(sorted(first), batch)  # in key order: neighbours share index pages
            new = [event for event_id, event in first.items() if event_id in created]
            if new:
                self._write(_record_batch(new, last_seq + 1, ingested_at), batch)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return AppendResult(new=len(new), duplicates=len(events) - len(new))

    def _insert_ids(self, event_ids: list[str], batch: int) -> set[str]:
        """Create the rows of the eventIds not present yet; returns those."""
        ids = _encode(event_ids)
        if b"\\u0000" not in ids:
            return {row[0] for row in self._db.execute(_INSERT_IDS, (batch, ids))}
        return {event_id for event_id in event_ids if self._db.execute(_INSERT_ID, (event_id, batch)).rowcount == 1}

    def _write(self, events: pa.RecordBatch, batch: int | None = None) -> None:
        """Store one batch of new events (their eventIds already in event_ids)."""
        seqs = events.column("ledger_seq")
        if batch is None:  # a converted first-layout chunk: its ids go in with it
            batch = self._db.execute("SELECT coalesce(max(batch), 0) + 1 FROM batches").fetchone()[0]
            self._db.executemany(_INSERT_ID, ((event_id, batch) for event_id in events.column("event_id").to_pylist()))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, events.schema, options=_IPC_OPTIONS) as writer:
            writer.write_batch(events)
        self._db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
                         (batch, seqs[0].as_py(), seqs[-1].as_py(), events.num_rows, memoryview(sink.getvalue())))

    def changes(self, cursor: str | None, max_rows: int) -> Changes:
        after = int(cursor) if cursor else 0
        batches = list(self._batches_after(after, max_rows))
        if not batches:
            return Changes(USAGE_SCHEMA.empty_table(), cursor)
        return Changes(pa.Table.from_batches(batches, USAGE_SCHEMA), str(batches[-1].column("ledger_seq")[-1]))

    def _batches_after(self, after: int, max_rows: int) -> Iterator[pa.RecordBatch]:
        """The events with ledger_seq > after, at most max_rows, batch by batch (one blob in memory
        at a time besides what is returned)."""
        rows = 0
        found = self._db.execute("SELECT first_seq, events FROM batches WHERE last_seq > ? ORDER BY last_seq", (after,))
        try:
            for first_seq, blob in found:
                events = pa.ipc.open_stream(pa.py_buffer(blob)).read_next_batch()
                if first_seq <= after:  # the cursor is inside this batch
                    events = events.slice(pc.sum(pc.less_equal(events.column("ledger_seq"), after)).as_py())
                events = events.slice(0, max_rows - rows)
                rows += events.num_rows
                yield events
                if rows >= max_rows:
                    return
        finally:
            found.close()

    def existing(self, event_ids: Sequence[str]) -> set[str]:
        unique = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start:start + LOOKUP_CHUNK]
            query = f"SELECT event_id FROM event_ids WHERE event_id IN ({', '.join('?' * len(chunk))})"
            found.update(row[0] for row in self._db.execute(query, chunk))
        return found

    def count(self) -> int:
        return int(self._db.execute("SELECT coalesce(sum(rows), 0) FROM batches").fetchone()[0])

    def close(self) -> None:
        self._db.close()


_TIMESTAMP = USAGE_SCHEMA.field("timestamp").type
_STRING = pa.string()
_INT64 = pa.int64()


def _record_batch(events: list[UsageEvent], first_seq: int, ingested_at: datetime) -> pa.RecordBatch:
    """The events in USAGE_SCHEMA, built column by column from the structs (one list per column:
    plain attribute reads, then one conversion in Arrow)."""
    usages = [event.usage for event in events]
    origins = [event.origin for event in events]
    columns = {
        "event_id": pa.array([event.event_id for event in events], _STRING),
        "timestamp": pa.array([event.timestamp for event in events], _TIMESTAMP),
        "subscription_id": pa.array([event.subscription_id for event in events], _STRING),
        "product_id": pa.array([event.product_id for event in events], _STRING),
        "api_id": pa.array([event.api_id for event in events], _STRING),
        "operation_id": pa.array([event.operation_id for event in events], _STRING),
        "caller_app_id": pa.array([event.caller_app_id for event in events], _STRING),
        "caller_tenant_id": pa.array([event.caller_tenant_id for event in events], _STRING),
        "caller_object_id": pa.array([event.caller_object_id for event in events], _STRING),
        "cost_center": pa.array([event.cost_center for event in events], _STRING),
        "deployment": pa.array([event.deployment for event in events], _STRING),
        "model": pa.array([event.model for event in events], _STRING),
        "region": pa.array([event.region for event in events], _STRING),
        "stream": pa.array([event.stream for event in events], pa.bool_()),
        "status_code": pa.array([event.status_code for event in events], pa.int16()),
        "duration_ms": pa.array([event.duration_ms for event in events], _INT64),
        "usage_source": pa.array([event.usage_source for event in events], _STRING),
        "prompt_tokens": pa.array([None if u is None else u.prompt_tokens for u in usages], _INT64),
        "completion_tokens": pa.array([None if u is None else u.completion_tokens for u in usages], _INT64),
        "total_tokens": pa.array([None if u is None else u.total_tokens for u in usages], _INT64),
        "cached_tokens": pa.array([None if u is None else u.cached_tokens for u in usages], _INT64),
        "reasoning_tokens": pa.array([None if u is None else u.reasoning_tokens for u in usages], _INT64),
        "tags": _tags(events),
        "extra": pa.array([event.extra for event in events], _STRING),
        "source": pa.array([None if o is None else o.source for o in origins], _STRING),
        "source_position": pa.array([None if o is None else o.position for o in origins], _STRING),
        "eventhub_partition": pa.array([None if o is None else o.partition for o in origins], _STRING),
        "eventhub_sequence_number": pa.array([None if o is None else o.sequence_number for o in origins], _INT64),
        "eventhub_offset": pa.array([None if o is None else o.offset for o in origins], _STRING),
        "eventhub_enqueued_time": pa.array([None if o is None else o.enqueued_time for o in origins], _TIMESTAMP),
        "schema_version": pa.array([event.schema_version for event in events], pa.int8()),
        "ledger_seq": pa.array(range(first_seq, first_seq + len(events)), _INT64),
        "ingested_at": pa.repeat(pa.scalar(ingested_at, _TIMESTAMP), len(events)),
    }
    return pa.RecordBatch.from_arrays([columns[name] for name in USAGE_SCHEMA.names], schema=USAGE_SCHEMA)


def _tags(events: list[UsageEvent]) -> pa.Array:
    offsets, missing = [0], []
    keys: list[str] = []
    values: list[str] = []
    for event in events:
        tags = event.tags
        if tags is not None:
            keys.extend(tags)
            values.extend(tags.values())
        offsets.append(len(keys))
        missing.append(tags is None)
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.string()),
                                   pa.array(values, pa.string()), type=USAGE_SCHEMA.field("tags").type,
                                   mask=pa.array(missing, pa.bool_()))
