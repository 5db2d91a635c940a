"""A set of eventIds in SQLite that stays cheap to add to as it grows: the ledger's `event_ids`
and the counters' `counted`.

eventIds are random (APIM's request ids are GUIDs), so each id of a batch lands on its own page
of a B-tree: once the tree holds millions, a commit of 25,000 ids rewrites 25,000 pages, and the
cost of an event grows with the ids already kept (a bare test of 10M ids in batches of 25,000:
148 s in one table). So an id is added to a small `recent_*` table, as new when it is in neither
table, and once that table holds RECENT_LIMIT ids they are moved, in key order and in the same
transaction, into the settled table. A settled page is then rewritten once per move, not once per
commit (the same 10M ids: 86 s; docs/benchmarks.md, "eighth pass").

Every change happens in the caller's transaction, so the two tables never disagree with the
rest of the file: an id is in exactly one of them once its transaction commits. The size of the
recent table is kept in `id_set_sizes`, written in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

RECENT_LIMIT = 500_000  # ids in the recent table before they move (1M at 64 KiB pages: 2.66 s vs 3.3 flat)
LOOKUP_CHUNK = 500  # eventIds per IN query: below SQLite's limit on bound parameters
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class EventIdSet:
    """The eventIds of one table `settled` and its `recent_<settled>` twin, each row the id and
    `extra` more values (the ledger keeps the batch number; the counters nothing)."""

    settled: str
    extra_columns: tuple[str, ...] = ()  # e.g. ("batch INTEGER NOT NULL",)

    @property
    def recent(self) -> str:
        return f"recent_{self.settled}"

    @property
    def _values(self) -> str:
        return "value" + ", ?" * len(self.extra_columns)

    def create(self, db: sqlite3.Connection) -> None:
        """Create the tables not there yet (a file of an earlier layout has the settled one)."""
        columns = ", ".join(("event_id TEXT PRIMARY KEY", *self.extra_columns))
        for table in (self.settled, self.recent):
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}) WITHOUT ROWID")
        db.execute("CREATE TABLE IF NOT EXISTS id_set_sizes (name TEXT PRIMARY KEY, recent INTEGER NOT NULL)")
        db.execute(f"INSERT OR IGNORE INTO id_set_sizes SELECT ?, count(*) FROM {self.recent}", (self.settled,))

    def add(self, db: sqlite3.Connection, ids: bytes, *extra: object) -> set[str]:
        """Add the eventIds of a JSON array (in key order: neighbours share pages) that neither
        table holds; returns those it held already. Those are few (a redelivery's copies): they
        are looked up first, and the others inserted without a second lookup in the settled table
        (both in the caller's transaction, so nothing comes between). Reading back every id added
        (RETURNING) cost 0.8 µs an id more. JSON text cannot carry NUL through SQLite: a batch
        holding one goes id by id (`add_one`)."""
        held = [row[0] for row in db.execute(
            f"SELECT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM {self.recent} WHERE event_id = value) "
            f"OR EXISTS (SELECT 1 FROM {self.settled} WHERE event_id = value)", (ids,))]
        insert = f"INSERT OR IGNORE INTO {self.recent} SELECT {self._values} FROM json_each(?)"
        if held:
            added = db.execute(f"{insert} WHERE value NOT IN (SELECT value FROM json_each(?))",
                               (*extra, ids, _encode(held))).rowcount
        else:
            added = db.execute(insert, (*extra, ids)).rowcount
        self._grown(db, added)
        return set(held)

    def add_one(self, db: sqlite3.Connection, event_id: str, *extra: object) -> bool:
        """Add one eventId unless a table holds it; True when it was added."""
        placeholders = ", ".join("?" * (1 + len(extra)))
        added = db.execute(
            f"INSERT OR IGNORE INTO {self.recent} SELECT {placeholders} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.settled} WHERE event_id = ?)",
            (event_id, *extra, event_id)).rowcount == 1
        self._grown(db, int(added))
        return added

    def present(self, db: sqlite3.Connection, event_ids: Sequence[str]) -> set[str]:
        """Those of the eventIds either table holds."""
        unique = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start:start + LOOKUP_CHUNK]
            marks = ", ".join("?" * len(chunk))
            found.update(row[0] for row in db.execute(
                f"SELECT event_id FROM {self.settled} WHERE event_id IN ({marks}) "
                f"UNION ALL SELECT event_id FROM {self.recent} WHERE event_id IN ({marks})", chunk + chunk))
        return found

    def remove(self, db: sqlite3.Connection, event_ids: Sequence[str]) -> None:
        """Remove the eventIds from both tables: one statement per table over the ids as a JSON
        array in key order (neighbours share pages; a DELETE per id in the batch's order visited
        the tree at random: 11 s for a month of 1M ids), or id by id when one holds a NUL."""
        ordered = sorted(set(event_ids))
        if any("\x00" in event_id for event_id in ordered):
            rows = [(event_id,) for event_id in ordered]
            db.executemany(f"DELETE FROM {self.settled} WHERE event_id = ?", rows)
            before = db.total_changes
            db.executemany(f"DELETE FROM {self.recent} WHERE event_id = ?", rows)
        else:
            ids = _encode(ordered)
            db.execute(f"DELETE FROM {self.settled} WHERE event_id IN (SELECT value FROM json_each(?))", (ids,))
            before = db.total_changes
            db.execute(f"DELETE FROM {self.recent} WHERE event_id IN (SELECT value FROM json_each(?))", (ids,))
        self._grown(db, before - db.total_changes)

    def _grown(self, db: sqlite3.Connection, added: int) -> None:
        """Count `added` more recent ids (fewer when negative); move them all once they reach
        RECENT_LIMIT."""
        if not added:
            return
        [(size,)] = db.execute("UPDATE id_set_sizes SET recent = recent + ? WHERE name = ? RETURNING recent",
                               (added, self.settled)).fetchall()
        if size >= RECENT_LIMIT:
            # OR IGNORE, though no id is in both tables: a plain INSERT may abort half-way, so SQLite
            # keeps a statement journal of every settled page it changes, in memory (temp_store), and
            # the peak grew with the settled table (4M ids: 268 MiB against 99 with OR IGNORE).
            db.execute(f"INSERT OR IGNORE INTO {self.settled} SELECT * FROM {self.recent} ORDER BY event_id")
            db.execute(f"DELETE FROM {self.recent}")
            db.execute("UPDATE id_set_sizes SET recent = 0 WHERE name = ?", (self.settled,))
