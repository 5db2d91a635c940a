"""Reconcile: recount a month's live counters from the ledger, report the drift per key, and
(with apply) rebuild them. The answer to a Redis flush or failover.

The expected counters are the ledger's events of the month summed as the counters sum them
(pipeline.domain.counters.Tally), read in chunks, priced and summed in Arrow
(pipeline.lake.live_columns, pipeline.lake.event_columns), and compared one subscription at a
time: memory grows with the keys, not the events. Rebuilding clears the month's sums, forgets
the events' marks and adds the events again, chunk by chunk; alerts already raised stay raised.
Spend is re-priced with the catalog in force now. Run it while ingest for that month is quiet
(or run it again: it converges, and is idempotent).
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
from pipeline.lake.event_columns import (
    ColumnarCounters,
    EventColumns,
    Sums,
    center_rows,
    hour_rows,
    merged,
    month_rows,
    sums_of,
)
from pipeline.lake.live_columns import live_charges
from pipeline.lake.usage import events_from_table
from pipeline.ports import Counters, Ledger

CHUNK_ROWS = 50_000
MERGE_ROWS = 200_000  # hour sums held from several chunks before they are summed as one
_encode = msgspec.json.Encoder().encode


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
    expected = expected_month(ledger, pricer, month)
    result.events = expected.events
    result.drift = compare(counters, expected, month)
    if apply and result.drift:
        counters.clear_month(month)
        for table in month_tables(ledger, month):
            rebuild(counters, pricer, table)
        result.applied = True
        result.drift_after = compare(counters, expected, month)
    result.seconds = time.perf_counter() - started
    return result


@dataclass(slots=True)
class ExpectedMonth:
    """What the counters should hold for a month, from its ledger events: sums made in Arrow,
    the hours sorted by subscription and read back one subscription at a time (a large tenant's
    month has hundreds of thousands of hour sums), and the sums of the rare chunk whose costs
    overflow 64 bits, priced and tallied one event at a time."""

    events: int = 0
    sums: Sums | None = None
    runs: dict[str, tuple[int, int]] = field(default_factory=dict)  # subscription: (first hour row, rows)
    apart: Tally = field(default_factory=Tally)
    apart_hours: dict[str, dict[Key, list[int]]] = field(default_factory=dict)  # `apart`'s hours, by subscription

    def monthly(self) -> dict[str, list[int]]:
        """subscription: its MONTHLY sums."""
        months: dict[str, list[int]] = {}
        rows = month_rows(self.sums.months) if self.sums is not None else []
        for subscription, _, *sums in [*rows, *((*key, *sums) for key, sums in self.apart.monthly.items())]:
            into = months.setdefault(subscription, [0] * len(MONTHLY))
            for at, value in enumerate(sums):
                into[at] += value
        return months

    def centers(self) -> dict[str, int]:
        """cost center: its spend in micro-units."""
        spend: dict[str, int] = defaultdict(int)
        rows = center_rows(self.sums.centers) if self.sums is not None else []
        for center, _, _, micros in [*rows, *((*key, *sums) for key, sums in self.apart.cost_centers.items())]:
            spend[center] += micros
        return dict(spend)

    def hours(self, subscription: str) -> dict[Key, list[int]]:
        """(subscription, deployment, hour): the HOURLY sums, of one subscription."""
        hours: dict[Key, list[int]] = {}
        if self.sums is not None and subscription in self.runs:
            for row in hour_rows(self.sums.hours.slice(*self.runs[subscription])):
                hours[row[:3]] = list(row[3:])
        for key, sums in self.apart_hours.get(subscription, {}).items():
            into = hours.setdefault(key, [0] * len(HOURLY))
            for at, value in enumerate(sums):
                into[at] += value
        return hours


def expected_month(ledger: Ledger, pricer: LivePricer, month: str) -> ExpectedMonth:
    """The month's ledger events summed as the counters sum them: priced in Arrow
    (pipeline.lake.live_columns) and summed by Arrow group-by, the same sums as `Tally.add` over
    the events and their `pricer.charges`, which price the chunk whose costs overflow 64 bits."""
    expected, parts, held = ExpectedMonth(), [], 0
    for table in month_tables(ledger, month):
        expected.events += table.num_rows
        charges = live_charges(table, pricer)
        if charges is None:
            batch = events_from_table(table)
            expected.apart.add(zip(batch, pricer.charges(batch), strict=True))
            continue
        parts.append(sums_of(table, charges))
        held += parts[-1].hours.num_rows
        if held > MERGE_ROWS:  # the sums of many chunks as one, so that memory follows the keys
            parts, held = [merged(parts)], 0
    for key, hour in expected.apart.hourly.items():
        expected.apart_hours.setdefault(key[0], {})[key] = hour
    if parts:
        sums = merged(parts)
        hours = sums.hours.sort_by("subscription_id")
        expected.sums = Sums(hours, sums.months, sums.centers)
        runs = pc.run_end_encode(hours.column("subscription_id").combine_chunks())
        ends = runs.run_ends.to_pylist()
        expected.runs = {subscription: (start, end - start) for subscription, start, end
                         in zip(runs.values.to_pylist(), [0, *ends[:-1]], ends, strict=True)}
    return expected


def rebuild(counters: Counters, pricer: LivePricer, table: pa.Table) -> None:
    """Forget these ledger rows' events in the counters and count them again: as Arrow columns
    where the counters take them (the embedded ones), else as events."""
    ids = table.column("event_id").to_pylist()
    counters.forget(ids)
    if isinstance(counters, ColumnarCounters):
        charges = live_charges(table, pricer)
        if charges is not None:
            events = table.combine_chunks().to_batches()[0]
            counters.add_columns(EventColumns(events, charges, _encode(sorted(ids)), len(ids)))
            return
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


def compare(counters: Counters, expected: ExpectedMonth, month: str) -> list[Drift]:
    """Every counter of the month that differs from the expected sums."""
    drift: list[Drift] = []
    counted_months = {row.subscription_id: row for row in counters.month_to_date(month)}
    expected_months = {sub: SubscriptionMonth(sub, month, *sums) for sub, sums in expected.monthly().items()}
    for subscription in sorted(counted_months.keys() | expected_months.keys()):
        drift += _differences(f"subscription {subscription}", _measures(counted_months.get(subscription)),
                              _measures(expected_months.get(subscription)))
        # An hour's sums as a list in HOURLY order on both sides, so that the hours that agree
        # (all of them, mostly) cost one comparison each.
        counted_hours: dict[Key, list[int]] = {(subscription, row.deployment, row.hour): _hourly_sums(row)
                                               for row in counters.hourly(subscription, month)}
        expected_hours = expected.hours(subscription)
        differing = [key for key in counted_hours.keys() | expected_hours.keys()
                     if counted_hours.get(key, _NO_HOURS) != expected_hours.get(key, _NO_HOURS)]
        for hour_key in sorted(differing):
            drift += _differences(f"hourly {' '.join(hour_key)}",
                                  dict(zip(HOURLY, counted_hours.get(hour_key, _NO_HOURS), strict=True)),
                                  dict(zip(HOURLY, expected_hours.get(hour_key, _NO_HOURS), strict=True)))
    counted_centers = counters.cost_center_spend(month)
    expected_centers = expected.centers()
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
