"""Reconcile: recount a month's live counters from the ledger, report the drift per key, and
(with apply) rebuild them. The answer to a Redis flush or failover.

The expected counters are computed by the same `add` logic, into an in-memory SQLite counter
store, from the ledger's events of the month (read in chunks: memory stays flat). Rebuilding
clears the month's sums, forgets the events' marks and adds the events again, chunk by chunk;
alerts already raised stay raised. Spend is re-priced with the catalog in force now. Run it
while ingest for that month is quiet (or run it again: it converges, and is idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.adapters.sqlite_counters import SqliteCounters
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import LivePricer, SubscriptionMonth
from pipeline.ports import Counters, Ledger
from pipeline.usage_schema import events_from_table
from pipeline.warehouse import month_bounds

CHUNK_ROWS = 50_000
MEMORY = Path(":memory:")


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
    expected = SqliteCounters(MEMORY)
    try:
        for events in month_events(ledger, month):
            expected.add(events, pricer.charges(events))
            result.events += len(events)
        result.drift = compare(counters, expected, month)
        if apply and result.drift:
            counters.clear_month(month)
            for events in month_events(ledger, month):
                counters.forget([event.event_id for event in events])
                counters.add(events, pricer.charges(events))
            result.applied = True
            result.drift_after = compare(counters, expected, month)
    finally:
        expected.close()
    result.seconds = time.perf_counter() - started
    return result


def month_events(ledger: Ledger, month: str) -> Iterator[list[UsageEvent]]:
    """The ledger's events whose UTC timestamp falls in the month, in chunks."""
    start, end = (datetime(day.year, day.month, day.day, tzinfo=UTC) for day in month_bounds(month))
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
            yield events_from_table(selected)


def compare(counters: Counters, expected: Counters, month: str) -> list[Drift]:
    drift: list[Drift] = []
    counted_months = {row.subscription_id: row for row in counters.month_to_date(month)}
    expected_months = {row.subscription_id: row for row in expected.month_to_date(month)}
    for subscription in sorted(counted_months.keys() | expected_months.keys()):
        drift += _differences(f"subscription {subscription}", _measures(counted_months.get(subscription)),
                              _measures(expected_months.get(subscription)))
        counted_hours = _hourly(counters, subscription, month)
        expected_hours = _hourly(expected, subscription, month)
        for hour_key in sorted(counted_hours.keys() | expected_hours.keys()):
            drift += _differences(f"hourly {' '.join(hour_key)}", counted_hours.get(hour_key, {}),
                                  expected_hours.get(hour_key, {}))
    counted_centers, expected_centers = counters.cost_center_spend(month), expected.cost_center_spend(month)
    for center in sorted(counted_centers.keys() | expected_centers.keys()):
        drift += _differences(f"cost-center {center}", {"spend_micros": counted_centers.get(center, 0)},
                              {"spend_micros": expected_centers.get(center, 0)})
    return drift


def _measures(row: SubscriptionMonth | None) -> dict[str, int]:
    if row is None:
        return {}
    return {name: int(getattr(row, name)) for name in (
        "requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
        "spend_micros", "unpriced_requests")}


def _hourly(counters: Counters, subscription: str, month: str) -> dict[tuple[str, str, str], dict[str, int]]:
    return {
        (subscription, str(row["deployment"]), str(row["hour"])): {
            name: int(value) for name, value in row.items()  # type: ignore[call-overload]
            if name not in ("subscription_id", "deployment", "hour")}
        for row in counters.hourly(subscription, month)
    }


def _differences(key: str, counted: dict[str, int], expected: dict[str, int]) -> list[Drift]:
    return [Drift(key, measure, counted.get(measure, 0), expected.get(measure, 0))
            for measure in sorted(counted.keys() | expected.keys())
            if counted.get(measure, 0) != expected.get(measure, 0)]
