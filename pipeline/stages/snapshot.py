"""Snapshot: copy new ledger events into Parquet files, Hive-partitioned by UTC event date.

A run first records its intent (the ledger cursor range it will publish) in the store's state
object, then writes one file per event date and chunk, named by the chunk's cursor range, and
only then advances the watermark. Files are created atomically and never overwritten: a run
that died halfway is finished by the next one, which finds the same intent, skips the files
already published and writes the rest. Late events land as new files in their own date folder.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.ports import Ledger, ObjectStore
from pipeline.usage_schema import USAGE_SCHEMA

STATE_KEY = "_state/snapshot.json"
USAGE_PREFIX = "usage"
DEFAULT_CHUNK_ROWS = 1_000_000
ROW_GROUP_ROWS = 1_000_000


class SnapshotState(msgspec.Struct):
    watermark: int = 0
    pending_upto: int | None = None


@dataclass(slots=True)
class SnapshotResult:
    rows: int = 0
    watermark_from: int = 0
    watermark_to: int = 0
    files: list[str] = field(default_factory=list)
    already_published: int = 0
    seconds: float = 0.0


def load_state(store: ObjectStore) -> SnapshotState:
    data = store.get(STATE_KEY)
    return SnapshotState() if data is None else msgspec.json.decode(data, type=SnapshotState)


def _save_state(store: ObjectStore, state: SnapshotState) -> None:
    store.put(STATE_KEY, msgspec.json.encode(state), overwrite=True)


def snapshot(ledger: Ledger, store: ObjectStore, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> SnapshotResult:
    """Publish every ledger event past the watermark; safe to run again at any time."""
    started = time.perf_counter()
    state = load_state(store)
    if state.pending_upto is None:
        head = ledger.head()
        if head <= state.watermark:
            return SnapshotResult(watermark_from=state.watermark, watermark_to=state.watermark,
                                  seconds=time.perf_counter() - started)
        state.pending_upto = head
        _save_state(store, state)
    result = SnapshotResult(watermark_from=state.watermark, watermark_to=state.pending_upto)
    # Chunk boundaries depend only on the intent, so a resumed run names its files identically.
    for low in range(state.watermark, state.pending_upto, chunk_rows):
        high = min(low + chunk_rows, state.pending_upto)
        batches = list(ledger.read(low, high, chunk_rows))
        if not batches:
            continue
        table = pa.Table.from_batches(batches, schema=USAGE_SCHEMA)
        result.rows += table.num_rows
        for day, rows in _split_by_date(table):
            key = f"{USAGE_PREFIX}/date={day}/part-{low + 1:012d}-{high:012d}.parquet"
            if store.put(key, _parquet_bytes(rows), overwrite=False):
                result.files.append(f"{store.url}/{key}")
            else:
                result.already_published += 1
    _save_state(store, SnapshotState(watermark=state.pending_upto))
    result.seconds = time.perf_counter() - started
    return result


def _split_by_date(table: pa.Table) -> list[tuple[str, pa.Table]]:
    days = pc.strftime(table["timestamp"], format="%Y-%m-%d")
    return [(day, table.filter(pc.equal(days, day))) for day in sorted(pc.unique(days).to_pylist())]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue()
