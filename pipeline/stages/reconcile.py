"""Reconcile: recount a month's live counters from the ledger, report the drift per key, and
(with apply) rebuild them. The answer to a Redis flush or failover.

The expected counters are the ledger's events of the month summed as the counters sum them
(pipeline.domain.counters.Tally), read in chunks and priced and summed in Arrow
(pipeline.lake.live_columns, pipeline.lake.event_columns): memory grows with the keys, not the
events. Rebuilding
clears the month's sums, forgets the events' marks and adds the events again, chunk by chunk;
alerts already raised stay raised. Spend is re-priced with the catalog in force now. Run it
while ingest for that month is quiet (or run it again: it converges, and is idempotent).
"""

from __future__ import annotations

import operator
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.domain.counters import HOURLY, MONTHLY, HourlyRow, Key, Tally
from pipeline.domain.live import LivePricer, SubscriptionMonth
from pipeline.domain.periods import midnight, month_bounds
from pipeline.lake.event_columns import ColumnarCounters, EventColumns, merged, summed_rows, sums_of
from pipeline.lake.live_columns import live_charges
from pipeline.lake.usage import events_from_table
from pipeline.ports import Counters, Ledger

CHUNK_ROWS = 50_000
_encode = msgspec.json.Encoder().encode
MERGE_ROWS = 1_000_000  # hour sums held from several chunks before they are summed as one


@dataclass(frozen=True, slots=True)
class Drift:
    """One counter that differs from what the ledger says."""

    key: str  # e.g. "subscription sub-a", "cost-center CC-A", "hourly sub-a chat 2026-10-05T10"
    measure: str
    counted: int
    expected: int


@dataclass(slots=True)
class ReconcileResult:
    month: str
    events: int = 0
    drift: list[Drift] = field(default_factory=list)
    applied: bool = False
    drift_after: list[Drift] = field(default_factory=list)
    seconds: float = 0.0


def reconcile(ledger: Ledger, counters: Counters, pricer: LivePricer, month: str, *,
              apply: bool = False) -> ReconcileResult:
    started = time.perf_counter()
    result = ReconcileResult(month)
    expected, result.events = expected_tally(ledger, pricer, month)
    result.drift = compare(counters, expected, month)
    if apply and result.drift:
        counters.clear_month(month)
        for table in month_tables(ledger, month):
            rebuild(counters, pricer, table)
        result.applied = True
        result.drift_after = compare(counters, expected, month)
    result.seconds = time.perf_counter() - started
    return result


def expected_tally(ledger: Ledger, pricer: LivePricer, month: str) -> tuple[Tally, int]:
    """The month's ledger events summed as the counters sum them, and how many there were. Priced
    and summed in Arrow (pipeline.lake.live_columns): the same sums as `Tally.add` over the events
    and their `pricer.charges`, which prices the rare chunk whose costs overflow 64 bits."""
    expected, events, parts, held = Tally(), 0, [], 0
    for table in month_tables(ledger, month):
        events += table.num_rows
        charges = live_charges(table, pricer)
        if charges is None:
            batch = events_from_table(table)
            expected.add(zip(batch, pricer.charges(batch), strict=True))
            continue
        parts.append(sums_of(table, charges))
        held += parts[-1].hours.num_rows
        if held > MERGE_ROWS:  # the sums of many chunks as one, so that memory follows the keys
            parts, held = [merged(parts)], 0
    if parts:
        expected.add_rows(summed_rows(merged(parts)))
    return expected, events


def rebuild(counters: Counters, pricer: LivePricer, table: pa.Table) -> None:
    """Forget these ledger rows' events in the counters and count them again: as Arrow columns
    where the counters take them (the embedded ones), else as events."""
    ids = table.column("event_id").to_pylist()
    counters.forget(ids)
    charges = live_charges(table, pricer) if isinstance(counters, ColumnarCounters) else None
    if charges is not None and isinstance(counters, ColumnarCounters):
        events = table.combine_chunks().to_batches()[0]
        counters.add_columns(EventColumns(events, charges, _encode(sorted(ids)), len(ids)))
    else:
        batch = events_from_table(table)
        counters.add(batch, pricer.charges(batch))


def month_tables(ledger: Ledger, month: str) -> Iterator[pa.Table]:
    """The ledger's rows whose UTC timestamp falls in the month, in chunks (USAGE_SCHEMA)."""
    start, end = (midnight(day) for day in month_bounds(month))
    cursor: str | None = None
    while True:
        changes = ledger.changes(cursor, CHUNK_ROWS)
        if changes.table.num_rows == 0:
            return
        cursor = changes.cursor
        stamps = changes.table["timestamp"]
        inside = pc.and_(pc.greater_equal(stamps, pa.scalar(start, stamps.type)),
                         pc.less(stamps, pa.scalar(end, stamps.type)))
        selected = changes.table.filter(inside)
        if selected.num_rows:
            yield selected


def compare(counters: Counters, expected: Tally, month: str) -> list[Drift]:
    """Every counter of the month that differs from the expected sums."""
    drift: list[Drift] = []
    counted_months = {row.subscription_id: row for row in counters.month_to_date(month)}
    expected_months = {sub: SubscriptionMonth(sub, month, *sums)
                       for (sub, of), sums in expected.monthly.items() if of == month}
    # The month's expected hours, by subscription, in one pass (a pass per subscription was
    # quadratic: 50 s for 400 subscriptions over 700k hour keys); an hour's sums as the list in
    # HOURLY order that the tally holds, so that the hours that agree (all of them, mostly) cost
    # one comparison each.
    hours_of: dict[str, dict[Key, list[int]]] = defaultdict(dict)
    for key, sums in expected.hourly.items():
        if key[2].startswith(month):  # (subscription, deployment, hour)
            hours_of[key[0]][key] = sums
    for subscription in sorted(counted_months.keys() | expected_months.keys()):
        drift += _differences(f"subscription {subscription}", _measures(counted_months.get(subscription)),
                              _measures(expected_months.get(subscription)))
        counted_hours: dict[Key, list[int]] = {(subscription, row.deployment, row.hour): _hourly_sums(row)
                                               for row in counters.hourly(subscription, month)}
        expected_hours = hours_of.get(subscription, {})
        differing = [key for key in counted_hours.keys() | expected_hours.keys()
                     if counted_hours.get(key, _NO_HOURS) != expected_hours.get(key, _NO_HOURS)]
        for hour_key in sorted(differing):
            drift += _differences(f"hourly {' '.join(hour_key)}",
                                  dict(zip(HOURLY, counted_hours.get(hour_key, _NO_HOURS), strict=True)),
                                  dict(zip(HOURLY, expected_hours.get(hour_key, _NO_HOURS), strict=True)))
    counted_centers = counters.cost_center_spend(month)
    expected_centers = {center: sums[1] for (center, of), sums in expected.cost_centers.items() if of == month}
    for center in sorted(counted_centers.keys() | expected_centers.keys()):
        drift += _differences(f"cost-center {center}", {"spend_micros": counted_centers.get(center, 0)},
                              {"spend_micros": expected_centers.get(center, 0)})
    return drift


_HOURLY_OF = operator.attrgetter(*HOURLY)
_NO_HOURS = [0] * len(HOURLY)


def _hourly_sums(row: HourlyRow) -> list[int]:
    return list(_HOURLY_OF(row))  # integers: both adapters read them as int


def _measures(row: SubscriptionMonth | None) -> dict[str, int]:
    if row is None:
        return {}
    return {name: int(getattr(row, name)) for name in MONTHLY}


def _differences(key: str, counted: dict[str, int], expected: dict[str, int]) -> list[Drift]:
    return [Drift(key, measure, counted.get(measure, 0), expected.get(measure, 0))
            for measure in sorted(counted.keys() | expected.keys())
            if counted.get(measure, 0) != expected.get(measure, 0)]
