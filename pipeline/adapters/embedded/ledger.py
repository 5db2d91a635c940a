"""The embedded ledger on SQLite: append-only, idempotent by eventId, readable as a change feed.

Layout (user_version 3):
- `event_ids (event_id PRIMARY KEY, batch)` and `recent_event_ids`, its twin for the ids added
  since the last move (pipeline.adapters.embedded.event_id_set): what idempotence needs, and
  nothing more. An eventId is new when neither table holds it; the first copy wins.
- `batches (batch, first_seq, last_seq, events)`: the NEW events of each append, as one Arrow IPC
  stream in USAGE_SCHEMA, with `ledger_seq` numbered first_seq..last_seq.

All are written in one transaction, so an event's id is kept exactly when it is in a batch.
`ledger_seq` is the change-feed cursor: SQLite has one writer at a time and each append numbers
its events after every event committed before it, so an event that becomes visible always has a
higher seq than every event visible before it. A ledger of the first layout (one `events` row per
event) is converted when opened, in one transaction, keeping every event's seq, so the cursors
in existing snapshot manifests stay valid; one of the second (no recent table) gains the table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa

from pipeline.adapters.embedded import ledger_v1
from pipeline.adapters.embedded.event_id_set import EventIdSet
from pipeline.adapters.embedded.sqlite import connect, probe_write, write_transaction
from pipeline.domain.events import UsageEvent, first_copies
from pipeline.lake.usage import USAGE_SCHEMA, conformed, events_batch
from pipeline.ports import AppendResult, Changes, LedgerUnavailable, Pending, UserError

if TYPE_CHECKING:  # the ingest's columns: pyarrow.compute, which a report's catch-up need not load
    from pipeline.lake.event_columns import EventColumns

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
LAYOUT = 3  # PRAGMA user_version of this layout; 0 is the first one (or a new, empty file)

EVENT_IDS = EventIdSet("event_ids", ("batch INTEGER NOT NULL",))
_BATCHES = """CREATE TABLE IF NOT EXISTS batches (
    batch INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL UNIQUE,
    rows INTEGER NOT NULL, events BLOB NOT NULL)"""
_INSERT_ID = "INSERT OR IGNORE INTO event_ids VALUES (?, ?)"  # a converted first-layout chunk's ids
_encode = msgspec.json.Encoder().encode
_decode_ids = msgspec.json.Decoder(list[str]).decode
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
_SEQ, _INGESTED = USAGE_SCHEMA.get_field_index("ledger_seq"), USAGE_SCHEMA.get_field_index("ingested_at")


def _at_or_before(events: pa.RecordBatch, first_seq: int, last_seq: int, count: int, after: int) -> int:
    """How many rows of a batch have ledger_seq <= after. An append numbers its rows one after
    another, so that is arithmetic; only a converted first-layout chunk may have gaps, and is
    counted. (Arithmetic also keeps pyarrow from importing pandas, 0.2 s, for a scalar.)"""
    if last_seq - first_seq + 1 == count:
        return after - first_seq + 1
    import pyarrow.compute as pc  # here: only a converted chunk needs it, and it costs a start 90 ms

    return int(pc.sum(pc.less_equal(events.column("ledger_seq"), pa.scalar(after, pa.int64()))).as_py())


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // ONE_MICROSECOND


class SqliteLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)
        with write_transaction(self._db):
            layout = self._db.execute("PRAGMA user_version").fetchone()[0]
            if layout > LAYOUT:
                raise UserError(f"{path} is a ledger of layout {layout}, newer than this version's ({LAYOUT}): "
                                "upgrade chargeback to read it")
            if layout < LAYOUT:
                EVENT_IDS.create(self._db)
                self._db.execute(_BATCHES)
                for rows in ledger_v1.take_rows(self._db):  # a first-layout ledger: convert it
                    self._write(ledger_v1.record_batch(rows))
                self._db.execute(f"PRAGMA user_version = {LAYOUT}")

    def append(self, events: Sequence[UsageEvent]) -> AppendResult:
        first = first_copies(events)
        if not first:
            return AppendResult(new=0, duplicates=len(events))
        ingested_at = datetime.now(UTC)
        with write_transaction(self._db):
            batch, last_seq = self._db.execute(
                "SELECT coalesce(max(batch), 0) + 1, coalesce(max(last_seq), 0) FROM batches").fetchone()
            held = self._insert_ids(_encode(sorted(first)), batch)  # in key order: neighbours share pages
            new = [events[at] for event_id, at in first.items() if event_id not in held]
            if new:
                seqs = range(last_seq + 1, last_seq + 1 + len(new))
                self._write(events_batch(new, ingested_at, seqs), batch)
        return AppendResult(new=len(new), duplicates=len(events) - len(new))

    def append_columns(self, columns: EventColumns) -> AppendResult:
        """`append` of a batch decoded elsewhere: the same rows, seqs and result (the columns are
        already the first copies, and their ids already sorted)."""
        if not columns.rows:
            return AppendResult(new=0, duplicates=columns.copies)
        ingested_at = pa.scalar(datetime.now(UTC), USAGE_SCHEMA.field("ingested_at").type)
        with write_transaction(self._db):
            batch, last_seq = self._db.execute(
                "SELECT coalesce(max(batch), 0) + 1, coalesce(max(last_seq), 0) FROM batches").fetchone()
            held = self._insert_ids(columns.sorted_ids, batch)
            new = columns.rows - len(held)
            if new:
                keep = columns.without(held)
                events = columns.events if keep is None else columns.events.filter(keep)
                seqs = pa.array(range(last_seq + 1, last_seq + 1 + events.num_rows), pa.int64())
                events = events.set_column(_SEQ, USAGE_SCHEMA.field(_SEQ), seqs).set_column(
                    _INGESTED, USAGE_SCHEMA.field(_INGESTED), pa.repeat(ingested_at, events.num_rows))
                self._write(events, batch)
        return AppendResult(new=new, duplicates=columns.copies - new)

    def _insert_ids(self, ids: bytes, batch: int) -> set[str]:
        """Keep the eventIds (a JSON array of distinct ids) not kept yet; returns those kept before."""
        if b"\\u0000" not in ids:
            return EVENT_IDS.add(self._db, ids, batch)
        # JSON text cannot carry NUL through SQLite: such a batch goes one id at a time.
        return {event_id for event_id in _decode_ids(ids) if not EVENT_IDS.add_one(self._db, event_id, batch)}

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
        try:
            after = int(cursor) if cursor else 0
        except ValueError:  # a snapshot store fed by another ledger (the Cosmos DB one's cursor is JSON)
            raise UserError(f"cursor {cursor!r} was not written by the embedded ledger {self.path}: the snapshots "
                            "were made from another ledger; point CHARGEBACK_STORE at this ledger's snapshots") \
                from None
        batches = list(self._batches_after(after, max_rows))
        if not batches:
            return Changes(pa.Table.from_batches([], USAGE_SCHEMA), cursor)  # (empty_table() imports pandas)
        return Changes(pa.Table.from_batches(batches, USAGE_SCHEMA), str(batches[-1].column("ledger_seq")[-1]))

    def _batches_after(self, after: int, max_rows: int) -> Iterator[pa.RecordBatch]:
        """The events with ledger_seq > after, at most max_rows, batch by batch (one blob in memory
        at a time besides what is returned)."""
        rows = 0
        found = self._db.execute("SELECT first_seq, last_seq, rows, events FROM batches WHERE last_seq > ? "
                                 "ORDER BY last_seq", (after,))
        try:
            for first_seq, last_seq, count, blob in found:
                events = conformed(pa.ipc.open_stream(pa.py_buffer(blob)).read_next_batch())
                if first_seq <= after:  # the cursor is inside this batch
                    events = events.slice(_at_or_before(events, first_seq, last_seq, count, after))
                events = events.slice(0, max_rows - rows)
                rows += events.num_rows
                yield events
                if rows >= max_rows:
                    return
        finally:
            found.close()

    def existing(self, event_ids: Sequence[str]) -> set[str]:
        return EVENT_IDS.present(self._db, event_ids)

    def pending(self) -> Pending:
        return Pending()  # a committed append is in the change feed at once

    def count(self) -> int:
        return int(self._db.execute("SELECT coalesce(sum(rows), 0) FROM batches").fetchone()[0])

    def probe(self) -> None:
        probe_write(self._db, self.path, LedgerUnavailable)

    def close(self) -> None:
        self._db.close()
