"""A decoded batch as Arrow columns: what the embedded ledger and counters write without one
Python object per event in the process that writes (issue 19).

A file or a replay is decoded and priced in worker processes (pipeline.stages.decode_ahead).
Shipping the events back as Python objects cost the writing process a msgpack decode, an Arrow
conversion for the ledger blob and a Python sum per event for the counters: two thirds of its
time. Instead the worker builds the ledger's Arrow batch once, with the live charges as columns
beside it, and the writer only filters the rows its id index says are new, and sums them in
Arrow. `sum_rows` gives exactly the rows `Tally.add` then `Tally.rows` give for the same events
and charges (tests/test_event_columns.py holds them equal). Pickled (to cross a process
boundary), the batches travel as Arrow IPC streams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.domain.counters import TOKENS, SumRows, hour_text
from pipeline.domain.events import UsageEvent, first_copies
from pipeline.domain.live import LiveCharge
from pipeline.lake.usage import events_batch
from pipeline.ports import AppendResult, CountResult

CHARGES_SCHEMA = pa.schema([pa.field("cost_center", pa.string(), nullable=False),
                            pa.field("micros", pa.int64(), nullable=False),
                            pa.field("priced", pa.bool_(), nullable=False)])
_PLACEHOLDER = datetime(1970, 1, 1, tzinfo=UTC)  # ingested_at until the ledger sets it
_MICROS_PER_HOUR = 3_600_000_000
_encode = msgspec.json.Encoder().encode
_IPC = pa.ipc.IpcWriteOptions(compression=None)  # a pipe between two processes: speed over size


@dataclass(frozen=True, slots=True)
class EventColumns:
    """The first copy of each eventId of a batch, in order, as USAGE_SCHEMA rows (`ledger_seq`
    null and `ingested_at` a placeholder: the ledger sets both), with each row's live charge."""

    events: pa.RecordBatch
    charges: pa.RecordBatch  # CHARGES_SCHEMA, row i the charge of events row i
    sorted_ids: bytes  # the eventIds as one JSON array, sorted: what both id indexes take
    copies: int  # the events decoded, copies of an eventId within the batch included
    # The last mask `without` made, and for which ids: the counters usually ask for the mask the
    # ledger asked for (the ids both held already), and a set compares faster than a mask is made.
    _masks: list[tuple[set[str], pa.Array]] = field(default_factory=list, compare=False, repr=False)

    @property
    def rows(self) -> int:
        return int(self.events.num_rows)

    def without(self, held: set[str]) -> pa.Array | None:
        """The mask of the rows whose eventId is not in `held`; None when that is every row."""
        if not held:
            return None
        for asked, mask in self._masks:
            if asked == held:
                return mask
        mask = pc.invert(pc.is_in(self.events.column("event_id"), value_set=pa.array(list(held), pa.string())))
        self._masks[:] = [(set(held), mask)]
        return mask

    def months(self) -> set[str]:
        """The UTC months (YYYY-MM) of the events."""
        return set(pc.unique(pc.strftime(self.events.column("timestamp"), "%Y-%m")).to_pylist())

    def __reduce__(self) -> tuple[Callable[..., EventColumns], tuple[bytes, bytes, bytes, int]]:
        return _from_ipc, (_ipc(self.events), _ipc(self.charges), self.sorted_ids, self.copies)


def _from_ipc(events: bytes, charges: bytes, sorted_ids: bytes, copies: int) -> EventColumns:
    return EventColumns(_batch(events), _batch(charges), sorted_ids, copies)


def event_columns(events: Sequence[UsageEvent], charges: Sequence[LiveCharge]) -> EventColumns:
    """The columns of the first copy of each eventId (the copy the ledger keeps)."""
    copies = len(events)
    first = first_copies(events)
    if len(first) < len(events):
        kept = list(first.values())
        events, charges = [events[i] for i in kept], [charges[i] for i in kept]
    return EventColumns(events_batch(events, _PLACEHOLDER), charges_batch(charges), _encode(sorted(first)), copies)


def columns_priced_by(events: Sequence[UsageEvent],
                      price: Callable[[pa.RecordBatch, Sequence[UsageEvent]], pa.RecordBatch],
                      first: dict[str, int] | None = None) -> EventColumns:
    """`event_columns` with the charges `price` gives the first copies (their USAGE_SCHEMA rows,
    and the events themselves), priced after the rows are made instead of before. `first`: the
    events' `first_copies`, when the caller has them already."""
    first = first_copies(events) if first is None else first
    kept = events if len(first) == len(events) else [events[i] for i in first.values()]
    rows = events_batch(kept, _PLACEHOLDER)
    return EventColumns(rows, price(rows, kept), _encode(sorted(first)), len(events))


def charges_batch(charges: Sequence[LiveCharge]) -> pa.RecordBatch:
    """Live charges as CHARGES_SCHEMA rows."""
    return pa.RecordBatch.from_arrays(
        [pa.array([c.cost_center for c in charges], pa.string()), pa.array([c.micros for c in charges], pa.int64()),
         pa.array([c.priced for c in charges], pa.bool_())], schema=CHARGES_SCHEMA)


def sum_rows(columns: EventColumns, keep: pa.Array | None = None) -> SumRows:
    """The sums of the rows `keep` selects (all when None), as `Tally.add` sums their events:
    one Arrow group-by per table of sums, read back a column at a time."""
    return summed_rows(sums_of(columns.events, columns.charges, keep))


@dataclass(frozen=True, slots=True)
class Sums:
    """Sums as Arrow tables, hours and months as numbers (`summed_rows` names them): per
    (subscription_id, deployment, hour), per (subscription_id, month) and per (cost_center, month),
    each a `count_all` column, then a `<measure>_sum` column per measure."""

    hours: pa.Table
    months: pa.Table
    centers: pa.Table


_HOUR_KEY, _MONTH_KEY, _CENTER_KEY = ("subscription_id", "deployment", "hour"), ("subscription_id", "month"), \
    ("cost_center", "month")
_MONTH_MEASURES = (*TOKENS, "micros", "unpriced")


def sums_of(events: pa.RecordBatch | pa.Table, charges: pa.RecordBatch, keep: pa.Array | None = None) -> Sums:
    """The sums of USAGE_SCHEMA rows with their live charges (CHARGES_SCHEMA, row for row), of
    the rows `keep` selects (all when None)."""
    timestamps = events.column("timestamp")
    table = pa.table({
        "subscription_id": events.column("subscription_id"), "deployment": events.column("deployment"),
        "cost_center": charges.column("cost_center"),
        "hour": pc.divide(timestamps.cast(pa.int64()), _MICROS_PER_HOUR),
        "month": pc.add(pc.multiply(pc.year(timestamps), 100), pc.month(timestamps)),
        **{name: pc.fill_null(events.column(name), 0) for name in TOKENS},
        "micros": charges.column("micros"), "unpriced": pc.invert(charges.column("priced")).cast(pa.int64()),
    })
    if keep is not None:
        table = table.filter(keep)
    return Sums(_grouped(table, _HOUR_KEY, [([], "count_all"), *((name, "sum") for name in TOKENS)]),
                _grouped(table, _MONTH_KEY, [([], "count_all"), *((name, "sum") for name in _MONTH_MEASURES)]),
                _grouped(table, _CENTER_KEY, [([], "count_all"), ("micros", "sum")]))


def merged(parts: Sequence[Sums]) -> Sums:
    """The sums of several parts as the sums of all their rows at once."""
    if len(parts) == 1:
        return parts[0]

    def again(tables: list[pa.Table], keys: tuple[str, ...]) -> pa.Table:
        table = pa.concat_tables(tables)
        measures = [name for name in table.column_names if name not in keys]
        regrouped = _grouped(table, keys, [(name, "sum") for name in measures])
        return regrouped.rename_columns([*keys, *measures])

    return Sums(again([p.hours for p in parts], _HOUR_KEY), again([p.months for p in parts], _MONTH_KEY),
                again([p.centers for p in parts], _CENTER_KEY))


def summed_rows(sums: Sums) -> SumRows:
    """The sums as the rows `Tally.rows` gives: hours as `YYYY-MM-DDTHH`, months as `YYYY-MM`."""
    return SumRows(hour_rows(sums.hours), month_rows(sums.months), center_rows(sums.centers))


def hour_rows(hours: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of `Sums.hours` (or a slice of it) as (subscription, deployment, hour text, *HOURLY)."""
    columns = _columns(hours, _HOUR_KEY, TOKENS)
    columns[2] = [hour_text(number) for number in columns[2]]
    return list(zip(*columns, strict=True))


def month_rows(months: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of `Sums.months` as (subscription, month text, *MONTHLY)."""
    return _named_months(months, _MONTH_KEY, _MONTH_MEASURES)


def center_rows(centers: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of `Sums.centers` as (cost center, month text, requests, micros)."""
    return _named_months(centers, _CENTER_KEY, ("micros",))


def _named_months(table: pa.Table, keys: tuple[str, ...], summed: tuple[str, ...]) -> list[tuple[Any, ...]]:
    columns = _columns(table, keys, summed)
    columns[1] = [f"{number // 100:04d}-{number % 100:02d}" for number in columns[1]]
    return list(zip(*columns, strict=True))


def _grouped(table: pa.Table, keys: tuple[str, ...], aggregations: list[tuple[Any, str]]) -> pa.Table:
    # The keys first, then the aggregates in the order asked (Arrow puts the keys last).
    groups = table.group_by(list(keys), use_threads=False).aggregate(aggregations)
    return groups.select([*keys, *(name for name in groups.column_names if name not in keys)])


def _columns(table: pa.Table, keys: tuple[str, ...], summed: tuple[str, ...]) -> list[list[Any]]:
    """The columns of a table of sums: the keys, the row count, then each sum, as Python lists."""
    names = [*keys, "count_all", *(f"{name}_sum" for name in summed)]
    return [table.column(name).to_pylist() for name in names]


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_IPC) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue())


def _batch(data: bytes) -> pa.RecordBatch:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()


@runtime_checkable
class ColumnarLedger(Protocol):
    """A ledger that appends EventColumns as they are (the embedded one)."""

    def append_columns(self, columns: EventColumns) -> AppendResult: ...


@runtime_checkable
class ColumnarCounters(Protocol):
    """Counters that count EventColumns as they are (the embedded ones)."""

    def add_columns(self, columns: EventColumns) -> CountResult: ...
