"""What the embedded SQLite adapters share: how a database file is opened, and one write
transaction (`BEGIN IMMEDIATE`: the write lock is taken first, so two writers never deadlock)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.ports import AccessRefused, BackendUnavailable

BUSY_TIMEOUT = 60.0  # seconds a statement waits for another process's lock
PAGE_SIZE = 65_536  # bytes per page of a new file (SQLite's default: 4,096)
WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024  # (SQLite's default: 1,000 pages, 4 MiB)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    # Pages of 64 KiB: a commit of random eventIds writes fewer, larger pages (1M ids: 2.66 s
    # against 3.3 s at 4 KiB; docs/benchmarks.md, "eighth pass"). It takes effect in a new file
    # only; an existing file keeps its size.
    connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
    _write_ahead_log(connection)
    connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    connection.execute("PRAGMA cache_size=-65536")  # 64 MiB at most: 256 MiB bought no speed at 1M ids
    connection.execute("PRAGMA temp_store=MEMORY")
    # Copy the WAL into the file once it holds 64 MiB, not 4 MiB: an ingest's commit of 25,000
    # random eventIds dirties most pages of both id indexes, so at the default every commit was
    # followed by a checkpoint (a 1M-event file: 17.6-18.9 s instead of 18.1-20.0 s, alternating).
    # And cut the WAL back to that size after a checkpoint: moving the recent eventIds
    # (event_id_set) writes the settled table in one commit.
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
    connection.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_BYTES}")
    return connection


def _write_ahead_log(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL. Two processes opening a new file at once race for this switch, and
    SQLite answers the loser `database is locked` at once, without its busy handler: so the switch
    is retried (once it is made, it holds for every later connection) within the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def probe_write(db: sqlite3.Connection, path: Path, unavailable: type[BackendUnavailable]) -> None:
    """Write a row in a transaction that is rolled back: the file is left as it was. Raises
    AccessRefused when SQLite may not write the file (SQLITE_READONLY), `unavailable` when it
    fails otherwise (locked past the busy timeout, disk I/O)."""
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS doctor_probe (written TEXT)")
        db.execute("INSERT INTO doctor_probe VALUES ('probe')")
        if db.execute("SELECT count(*) FROM doctor_probe").fetchone()[0] < 1:
            raise sqlite3.OperationalError("the probe row was written but not read back")
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY:  # the primary code of any READONLY_*
            raise AccessRefused(f"{path}: SQLite may not write this database ({error}): give this user write "
                                "access to the file and its folder") from None
        raise unavailable(f"{path}: {error}") from error
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Commit what the block wrote, or roll all of it back when it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
