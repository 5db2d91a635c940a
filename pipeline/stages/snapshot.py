"""Snapshot: copy new ledger events into Parquet files, Hive-partitioned by UTC event date.

A run first records its intent (the ledger cursor range it will publish) in the store's state
object, then writes one file per event date and chunk, named by the chunk's cursor range, and
only then advances the watermark. Files are created atomically and never overwritten: a run
that died halfway is finished by the next one, which finds the same intent, skips the files
already published and writes the rest. Late events land as new files in their own date folder.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
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
_PART = re.compile(r"/part-(\d{12})-(\d{12})\.parquet$")


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
        published: list[tuple[int, int]] = []
    else:  # resuming a run that died: keep the chunks it already started
        published = _published_ranges(store, state.watermark, state.pending_upto)
    result = SnapshotResult(watermark_from=state.watermark, watermark_to=state.pending_upto)
    for low, high in _chunks(state.watermark, state.pending_upto, chunk_rows, published):
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


def _published_ranges(store: ObjectStore, after: int, upto: int) -> list[tuple[int, int]]:
    ranges = set()
    for key in store.list(USAGE_PREFIX):
        match = _PART.search(key)
        if match and int(match[1]) > after and int(match[2]) <= upto:
            ranges.add((int(match[1]) - 1, int(match[2])))
    return sorted(ranges)


def _chunks(after: int, upto: int, size: int, fixed: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Cursor ranges (low, high] covering (after, upto]: the fixed ones as they are, the gaps
    between them cut into pieces of `size`."""
    cursor = after
    for low, high in [*fixed, (upto, upto)]:
        while cursor < low:
            yield cursor, min(cursor + size, low)
            cursor = min(cursor + size, low)
        if low < high:
            yield low, high
        cursor = max(cursor, high)


def _split_by_date(table: pa.Table) -> list[tuple[str, pa.Table]]:
    days = pc.strftime(table["timestamp"], format="%Y-%m-%d")
    return [(day, table.filter(pc.equal(days, day))) for day in sorted(pc.unique(days).to_pylist())]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue()
