"""Reading the embedded ledger's first layout (one `events` row per event, columns in SQLite), so
that `SqliteLedger` can convert such a file when it opens it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import msgspec
import pyarrow as pa

from pipeline.lake.usage import USAGE_SCHEMA, conformed

CHUNK_ROWS = 100_000
# `gateway_timeout` came after this layout and is derived from the tags (`conformed` makes it).
_COLUMNS = [f.name for f in USAGE_SCHEMA if f.name not in ("ledger_seq", "gateway_timeout")]
_NAMES = [*_COLUMNS, "ledger_seq"]
_READ_SCHEMA = pa.schema([USAGE_SCHEMA.field(name) for name in _NAMES])
_TAGS = _NAMES.index("tags")
_STREAM = _NAMES.index("stream")
_decode_tags = msgspec.json.Decoder(dict[str, str]).decode


def take_rows(db: sqlite3.Connection) -> Iterator[list[tuple[object, ...]]]:
    """The rows of a first-layout `events` table in seq order, in chunks; then drops the table.
    Nothing when there is none. Call it inside the transaction that writes them elsewhere."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone() is None:
        return
    present = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    for name in _COLUMNS:  # columns were added over time, never changed
        if name not in present:
            db.execute(f"ALTER TABLE events ADD COLUMN {name}")
    select = f"SELECT {', '.join(_COLUMNS)}, seq FROM events WHERE seq > ? ORDER BY seq LIMIT {CHUNK_ROWS}"
    after = 0
    while rows := db.execute(select, (after,)).fetchall():
        yield rows
        after = int(rows[-1][-1])
    db.execute("DROP TABLE events")


def record_batch(rows: list[tuple[object, ...]]) -> pa.RecordBatch:
    """First-layout rows in USAGE_SCHEMA (timestamps are microseconds since the epoch)."""
    columns: list[list[object]] = [list(column) for column in zip(*rows, strict=True)]
    columns[_TAGS] = [None if text is None else list(_decode_tags(str(text)).items()) for text in columns[_TAGS]]
    columns[_STREAM] = [bool(flag) for flag in columns[_STREAM]]
    arrays = [pa.array(column, type=field.type) for column, field in zip(columns, _READ_SCHEMA, strict=True)]
    return conformed(pa.RecordBatch.from_arrays(arrays, schema=_READ_SCHEMA))
