"""The eventIds of the embedded ledger and counters in two tables (pipeline.adapters.embedded.
event_id_set): an id stays a duplicate after it moved, a move is part of its append's transaction,
and files of the earlier layouts are upgraded in place. RECENT_LIMIT is made small so that moves
happen within a few appends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.adapters.embedded import event_id_set
from pipeline.adapters.embedded.counters import LAYOUT as COUNTERS_LAYOUT
from pipeline.adapters.embedded.counters import SqliteCounters
from pipeline.adapters.embedded.ledger import SqliteLedger
from pipeline.adapters.embedded.sqlite import PAGE_SIZE, connect, write_transaction
from pipeline.domain.live import LiveCharge
from pipeline.ports import UserError
from tests.test_ledger_contract import event

CHARGE = LiveCharge(cost_center="CC-1", micros=7, currency="USD", priced=True)


def tables(path: Path, settled: str) -> tuple[list[str], list[str], int]:
    """The ids in the settled and the recent table, and the recent table's recorded size."""
    with sqlite3.connect(path) as db:
        settled_ids = [row[0] for row in db.execute(f"SELECT event_id FROM {settled} ORDER BY event_id")]
        recent_ids = [row[0] for row in db.execute(f"SELECT event_id FROM recent_{settled} ORDER BY event_id")]
        [(size,)] = db.execute("SELECT recent FROM id_set_sizes WHERE name = ?", (settled,)).fetchall()
    db.close()
    return settled_ids, recent_ids, size


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(event_id_set, "RECENT_LIMIT", 4)
    return 4


def test_ledger_ids_that_moved_stay_duplicates(tmp_path: Path, small_limit: int) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    assert ledger.append([event(f"e-{n}") for n in range(3)]).new == 3
    assert tables(path, "event_ids") == ([], ["e-0", "e-1", "e-2"], 3)
    assert ledger.append([event("e-2"), event("e-3"), event("e-3")]).new == 1  # 4 recent: moved
    assert tables(path, "event_ids") == (["e-0", "e-1", "e-2", "e-3"], [], 0)
    result = ledger.append([event("e-0"), event("e-3"), event("e-4"), event("e-5")])
    assert (result.new, result.duplicates) == (2, 2)
    assert tables(path, "event_ids") == (["e-0", "e-1", "e-2", "e-3"], ["e-4", "e-5"], 2)
    assert ledger.append([event("a\x00b"), event("e-5"), event("e-1")]).new == 1  # the id-by-id way
    assert ledger.existing(["e-1", "e-5", "a\x00b", "e-9"]) == {"e-1", "e-5", "a\x00b"}
    assert ledger.count() == 7
    assert sorted(ledger.changes(None, 100).table.column("event_id").to_pylist()) == sorted(
        ["e-0", "e-1", "e-2", "e-3", "e-4", "e-5", "a\x00b"])
    ledger.close()


def test_counters_marks_that_moved_are_not_counted_again_and_can_be_forgotten(tmp_path: Path,
                                                                              small_limit: int) -> None:
    path = tmp_path / "counters.sqlite3"
    counters = SqliteCounters(path)
    assert counters.add([event(f"e-{n}") for n in range(5)], [CHARGE] * 5).new == 5
    assert tables(path, "counted") == ([f"e-{n}" for n in range(5)], [], 0)
    assert counters.add([event("e-1"), event("e-6")], [CHARGE] * 2).new == 1
    counters.forget(["e-1", "e-6", "e-9"])  # one settled, one recent, one never marked
    assert tables(path, "counted") == (["e-0", "e-2", "e-3", "e-4"], [], 0)
    assert counters.add([event("e-1"), event("e-6"), event("e-2")], [CHARGE] * 3).new == 2
    [month] = counters.month_to_date("2026-10")
    assert (month.requests, month.spend_micros) == (8, 56)
    assert counters.add([event("a\x00b")], [CHARGE]).new == 1  # an id JSON cannot carry
    counters.forget(["a\x00b", "e-0", "e-0"])  # forgotten the id-by-id way, a copy of an id too
    assert tables(path, "counted") == (["e-2", "e-3", "e-4"], ["e-1", "e-6"], 2)
    assert counters.add([event("a\x00b"), event("e-0")], [CHARGE] * 2).new == 2
    counters.close()


def test_a_move_that_fails_takes_its_append_back_with_it(tmp_path: Path, small_limit: int) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    ledger.append([event(f"e-{n}") for n in range(3)])
    with sqlite3.connect(path) as db:
        db.execute("CREATE TRIGGER no_room BEFORE INSERT ON event_ids BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="disk full"):
        ledger.append([event("e-3"), event("e-4")])
    assert (ledger.count(), tables(path, "event_ids")) == (3, ([], ["e-0", "e-1", "e-2"], 3))
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER no_room")
    db.close()
    assert ledger.append([event("e-2"), event("e-3"), event("e-4")]).new == 2
    assert (ledger.count(), tables(path, "event_ids")) == (5, (["e-0", "e-1", "e-2", "e-3", "e-4"], [], 0))
    ledger.close()


def test_a_move_keeps_the_settled_copy_of_an_id_in_both_tables(tmp_path: Path, small_limit: int) -> None:
    """No id is in both tables by construction; a file edited by hand that has one still moves,
    and the settled row (the first copy) wins: the move is INSERT OR IGNORE, which also spares
    SQLite the statement journal whose memory grew with the settled table."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    ledger.append([event("e-0"), event("e-1"), event("e-2"), event("e-3")])  # moved: all settled
    ledger.append([event("e-4")])
    with sqlite3.connect(path) as db:
        [(batch,)] = db.execute("SELECT batch FROM event_ids WHERE event_id = 'e-1'").fetchall()
        db.execute("INSERT INTO recent_event_ids VALUES ('e-1', ?)", (batch + 100,))
        db.execute("UPDATE id_set_sizes SET recent = recent + 1 WHERE name = 'event_ids'")
    db.close()
    assert ledger.append([event("e-5"), event("e-6")]).new == 2  # 4 recent: moved
    assert tables(path, "event_ids") == ([f"e-{n}" for n in range(7)], [], 0)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT batch FROM event_ids WHERE event_id = 'e-1'").fetchall() == [(batch,)]
    db.close()
    ledger.close()


def test_a_second_layout_ledger_gains_the_recent_table_and_keeps_its_ids(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    ledger.append([event("e-0"), event("e-1")])
    ledger.close()
    with sqlite3.connect(path) as db:  # back to the second layout: every id in event_ids
        db.execute("INSERT INTO event_ids SELECT * FROM recent_event_ids")
        db.executescript("DROP TABLE recent_event_ids; DROP TABLE id_set_sizes; PRAGMA user_version = 2;")
    db.close()
    reopened = SqliteLedger(path)
    result = reopened.append([event("e-1"), event("e-2")])
    assert (result.new, result.duplicates, reopened.count()) == (1, 1, 3)
    assert tables(path, "event_ids") == (["e-0", "e-1"], ["e-2"], 1)
    reopened.close()


def test_first_layout_counters_are_upgraded_and_newer_ones_refused(tmp_path: Path) -> None:
    path = tmp_path / "counters.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("CREATE TABLE counted (event_id TEXT PRIMARY KEY) WITHOUT ROWID;"
                         "INSERT INTO counted VALUES ('e-0');")
    db.close()
    counters = SqliteCounters(path)
    assert counters.add([event("e-0"), event("e-1")], [CHARGE] * 2).new == 1
    counters.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == COUNTERS_LAYOUT
        db.execute(f"PRAGMA user_version = {COUNTERS_LAYOUT + 1}")
    db.close()
    with pytest.raises(UserError, match="upgrade chargeback"):
        SqliteCounters(path)


def test_new_files_get_large_pages_and_existing_ones_keep_theirs(tmp_path: Path) -> None:
    fresh = connect(tmp_path / "new.sqlite3")
    fresh.execute("CREATE TABLE t (x)")
    assert fresh.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    assert fresh.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 64 * 1024 * 1024 // PAGE_SIZE
    fresh.close()
    with sqlite3.connect(tmp_path / "old.sqlite3") as db:
        db.execute("CREATE TABLE t (x)")  # SQLite's default pages, 4 KiB
    db.close()
    old = connect(tmp_path / "old.sqlite3")
    assert (old.execute("PRAGMA page_size").fetchone()[0], old.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == (
        4096, 16_384)
    old.close()


def test_add_returns_the_ids_it_held_before_and_adds_the_others(tmp_path: Path, small_limit: int) -> None:
    """The ids already held (recent or settled) are named and left as they were; every other id
    of the array is added with its extra value and counted once, however the two tables split."""
    ids = event_id_set.EventIdSet("event_ids", ("batch INTEGER NOT NULL",))
    db = connect(tmp_path / "ids.sqlite3")
    ids.create(db)
    with write_transaction(db):
        assert ids.add(db, b'["a", "b", "c"]', 1) == set()
        assert ids.add(db, b'["a", "c"]', 2) == {"a", "c"}
        assert ids.add(db, b'["b", "d", "e"]', 3) == {"b"}  # 5 recent: moved to the settled table
        assert ids.add(db, b'["a", "e", "f"]', 4) == {"a", "e"}  # held by the settled table
    settled = db.execute("SELECT event_id, batch FROM event_ids ORDER BY event_id").fetchall()
    recent = db.execute("SELECT event_id, batch FROM recent_event_ids ORDER BY event_id").fetchall()
    assert (settled, recent) == ([("a", 1), ("b", 1), ("c", 1), ("d", 3), ("e", 3)], [("f", 4)])
    assert db.execute("SELECT recent FROM id_set_sizes").fetchall() == [(1,)]
    db.close()
