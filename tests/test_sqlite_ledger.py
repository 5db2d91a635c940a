"""The embedded ledger's own layout: the conversion of a first-layout file, eventIds that JSON
cannot carry through SQLite, and the change feed over batches (the port's contract is in
tests/test_ledger_contract.py)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.adapters.embedded.counters import SqliteCounters
from pipeline.adapters.embedded.ledger import LAYOUT, SqliteLedger, micros
from pipeline.domain.live import LiveCharge
from pipeline.lake.usage import USAGE_SCHEMA, events_table
from pipeline.ports import UserError
from tests.test_ledger_contract import FULL, event

V1_COLUMNS = [name for name in USAGE_SCHEMA.names if name not in ("ledger_seq", "gateway_timeout")]  # added later
V1_TIMES = ("timestamp", "eventhub_enqueued_time", "ingested_at")


def write_first_layout(path: Path, rows: list[dict[str, Any]]) -> None:
    """A ledger as the first layout stored it: one row per event, seq = rowid, timestamps in
    microseconds, tags as JSON text."""
    with sqlite3.connect(path) as db:
        db.executescript("CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL);"
                         "CREATE UNIQUE INDEX events_event_id ON events (event_id);")
        for name in V1_COLUMNS[1:]:
            db.execute(f"ALTER TABLE events ADD COLUMN {name}")
        for row in rows:
            values = {**row, "tags": None if row["tags"] is None else msgspec.json.encode(dict(row["tags"])).decode()}
            values |= {name: None if row[name] is None else micros(row[name]) for name in V1_TIMES}
            db.execute(f"INSERT INTO events (seq, {', '.join(V1_COLUMNS)}) "
                       f"VALUES (?, {', '.join('?' * len(V1_COLUMNS))})",
                       (row["ledger_seq"], *(values[name] for name in V1_COLUMNS)))
    db.close()


def test_a_first_layout_ledger_is_converted_keeping_every_event_and_its_seq(tmp_path: Path) -> None:
    ingested = datetime(2026, 10, 16, 8, 0, tzinfo=UTC)
    old = [FULL, event("evt-1", tags={"a": "b"}), event("evt-2", usage=None, usage_source="none")]
    rows = events_table(old, [ingested] * 3, ledger_seq=[3, 4, 7]).to_pylist()
    path = tmp_path / "ledger.sqlite3"
    write_first_layout(path, rows)
    ledger = SqliteLedger(path)
    changes = ledger.changes(None, 10)
    assert changes.table.schema.equals(USAGE_SCHEMA)
    got = changes.table.to_pylist()
    for row in got + rows:
        row["tags"] = None if row["tags"] is None else dict(row["tags"])  # a map: order is not kept
    assert (got, changes.cursor) == (rows, "7")
    assert [row["event_id"] for row in ledger.changes("3", 10).table.to_pylist()] == ["evt-1", "evt-2"]
    assert [row["event_id"] for row in ledger.changes("5", 10).table.to_pylist()] == ["evt-2"]  # a gap: 3, 4, 7
    assert ledger.changes("7", 10).table.num_rows == 0  # a cursor of an existing manifest stays valid
    assert (ledger.count(), ledger.existing(["evt-1", "evt-9"])) == (3, {"evt-1"})
    assert ledger.append([event("evt-2"), event("evt-3")]).new == 1  # the first copy still wins
    assert ledger.changes("7", 10).table.column("ledger_seq").to_pylist() == [8]
    ledger.close()
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert (tables, db.execute("PRAGMA user_version").fetchone()[0]) == (
            {"event_ids", "recent_event_ids", "id_set_sizes", "batches"}, LAYOUT)
    db.close()
    reopened = SqliteLedger(path)  # converted once: opening again changes nothing
    assert reopened.count() == 4 and reopened.changes(None, 10).cursor == "8"
    reopened.close()


def test_a_ledger_of_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {LAYOUT + 1}")
    db.close()
    with pytest.raises(UserError, match="upgrade chargeback"):
        SqliteLedger(path)


def test_event_ids_holding_nul_are_deduplicated_exactly(tmp_path: Path) -> None:
    ids = ["a\x00b", "a", "a\x00c", "\x00"]
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    assert ledger.append([event(i) for i in [*ids, "a\x00b"]]).new == 4
    assert ledger.append([event(i) for i in ["a\x00b", "a\x00", "a"]]).new == 1
    assert sorted(ledger.changes(None, 10).table.column("event_id").to_pylist()) == sorted([*ids, "a\x00"])
    assert ledger.existing(["a\x00b", "a\x00d"]) == {"a\x00b"}
    ledger.close()
    counters = SqliteCounters(tmp_path / "counters.sqlite3")
    charge = LiveCharge(cost_center="CC-1", micros=5, currency="USD", priced=True)
    assert counters.add([event(i) for i in ids], [charge] * 4).new == 4
    assert counters.add([event(i) for i in ["a\x00b", "a\x00"]], [charge] * 2).new == 1
    counters.close()


def test_the_change_feed_splits_and_continues_inside_batches(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    for start in (0, 5, 10):
        ledger.append([event(f"evt-{n:02d}") for n in range(start, start + 5)])
    seen, cursor = [], None
    while (changes := ledger.changes(cursor, 4)).table.num_rows:
        assert changes.table.num_rows <= 4
        seen += changes.table.column("ledger_seq").to_pylist()
        cursor = changes.cursor
    assert (seen, cursor) == (list(range(1, 16)), "15")
    assert ledger.changes("7", 100).table.column("event_id").to_pylist() == [f"evt-{n:02d}" for n in range(7, 15)]
    ledger.close()


def test_processes_opening_a_new_file_at_once_all_get_it(tmp_path: Path) -> None:
    # Two `chargeback ingest` runs on a fresh home race for the switch to WAL; SQLite answers the
    # loser `database is locked` at once (no busy handler), which connect() retries.
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(6) as pool:  # warm workers: they race tightly
        for attempt in range(20):
            path = tmp_path / f"race-{attempt}.sqlite3"
            assert pool.map(_journal_mode, [path] * 6, chunksize=1) == ["wal"] * 6


def _journal_mode(path: Path) -> str:
    from pipeline.adapters.embedded.sqlite import connect

    connection = connect(path)
    try:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        connection.close()
