"""Build a report: price a month (or any range of days) of usage from the snapshots.

Pricing happens here, from the events and the catalogs, so history can always be re-priced.
Usage without a price stays in the report as rows with an empty cost (token totals reconcile
with the ledger and counters) and is also listed on its own with the reason.

Recorded corrections (pipeline.domain.corrections) apply here: voided events are left out of
the aggregation (an anti-join in DuckDB), reassigns and reprices change the resolution of the
groups they cover, and the lines they set are marked `charge_class = Correction`. A month written
before is restated, never silently replaced (pipeline.stages.report.restate).

Provisioned (PTU) deployments have no per-token price: their usage lines cost 0 pay-as-you-go,
and each day's capacity cost is allocated to the lines that used it (pipeline.domain.capacity),
in `ptu_cost`, next to the pay-as-you-go `cost`; `total_cost` is their sum. Capacity left idle
and charged to an owner cost center becomes a line of that owner with no usage.

A report covers a period (pipeline.domain.periods): a calendar month, or any range of whole UTC
days. Each row's `month` is the calendar month of its usage, so a range across months has a row
per month, and summing a quarter's rows by month gives each month's report.

Its files (pipeline.stages.report.render): `csv` (the report, its `-unpriced.csv` and the same
rows day by day in `-daily.csv`), `parquet`, `focus` (FOCUS 1.3 CSV and Parquet,
pipeline.stages.report.focus), `focus-1.2` (the FOCUS 1.2 files of earlier releases) and
`html` (a self-contained page with charts,
pipeline.stages.report.html), published by pipeline.stages.report.publish.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.domain.allocation import allocate_capacity
from pipeline.domain.corrections import NO_CORRECTIONS, Corrections, Kind
from pipeline.domain.costing import CostLine, Reference, Resolution, UsageKey, UsageState, names_day
from pipeline.domain.periods import Period, midnight
from pipeline.lake.areas import ReportStores
from pipeline.lake.pricing_keys import KEY_WIDTH, usage_key
from pipeline.lake.warehouse import USAGE_WINDOW, Limits, Warehouse, open_warehouse, register_corrections
from pipeline.stages.correct import load_corrections
from pipeline.stages.report.model import DayGroups, KeyUsage, Report, as_period
from pipeline.stages.report.rows import report_rows, unpriced_rows
from pipeline.stages.report.sql import (
    CACHED_UNKNOWN_SQL,
    DAYS_SQL,
    LLM_MISMATCH_SQL,
    ORIGINS,
    ORIGINS_SQL,
    PERIODS_SQL,
    REPORT_DAYS_SQL,
    UNMATCHED_SQL,
    VOIDED_SQL,
    groups_sql,
    rolled_groups_sql,
)


def period_report(stores: ReportStores, reference: Reference, period: Period,
                  usage_window: timedelta = USAGE_WINDOW, limits: Limits | None = None) -> Report:
    """The period's report from the committed snapshots and the LLM-log usage, with every
    recorded correction applied: what `chargeback report`, the demo and the daily Functions
    timer all publish. Rollups are derived: when one cannot be read, the report sums the events
    instead and says why in `rollups_unread`."""
    corrections = load_corrections(stores.corrections)
    try:
        return _report(stores, reference, period, usage_window, limits, corrections, rollups=True)
    except _RollupsUnread as unread:
        report = _report(stores, reference, period, usage_window, limits, corrections, rollups=False)
        report.rollups_unread = unread.reason
        return report


class _RollupsUnread(Exception):
    def __init__(self, error: Exception) -> None:
        lines = str(error).strip().splitlines()
        self.reason = lines[0] if lines else type(error).__name__
        super().__init__(self.reason)


def _report(stores: ReportStores, reference: Reference, period: Period, usage_window: timedelta,
            limits: Limits | None, corrections: Corrections, rollups: bool) -> Report:
    """period_report, reading rollups or not; _RollupsUnread when reading them failed."""
    # No reference: the report prices its own groups; the per-event `costs` view would only
    # cost time (docs/benchmarks.md). Nothing voided: the report reads no event a rollup sums.
    try:
        warehouse = open_warehouse(stores.snapshots, None, (period.start, period.end), llm_usage=stores.llm_usage,
                                   usage_window=usage_window, limits=limits, rollups=rollups,
                                   events=bool(corrections.of(Kind.VOID)))
    except _READ_ERRORS as error:  # Blob Storage's rollups are read here (a failure without them: raised again)
        if rollups:
            raise _RollupsUnread(error) from error
        raise
    try:
        return build_report(warehouse, reference, period, corrections=corrections)
    except _READ_ERRORS as error:
        if warehouse.rollups:
            raise _RollupsUnread(error) from error
        raise
    finally:
        warehouse.connection.close()


_READ_ERRORS = (duckdb.Error, pa.ArrowException)


def build_report(warehouse: Warehouse, reference: Reference, period: Period | str,
                 corrections: Corrections | None = None, today: date | None = None) -> Report:
    """Price the period's usage (a month `2026-10`, or a Period of days), with the recorded
    corrections applied (none when not given), and allocate its provisioned capacity (days up
    to `today`, default today UTC). The warehouse's `voided_events` view is redefined for
    these corrections."""
    started = time.perf_counter()
    period = as_period(period)
    start, end = period.start, period.end
    corrections = corrections or NO_CORRECTIONS
    if corrections.of(Kind.VOID) and not warehouse.events:
        raise ValueError("this report reads the events, but the warehouse was opened for its rollups alone "
                         "(open_warehouse(..., events=False) and corrections that void)")
    register_corrections(warehouse.connection, corrections)
    connection = warehouse.connection
    rolled = warehouse.rollups and not warehouse.llm_usage and not corrections.of(Kind.VOID)  # a void: by event
    if rolled:
        connection.execute(rolled_groups_sql(start, end))
    else:
        connection.execute(groups_sql(warehouse.llm_usage), [start, end])
    states: dict[str, int] = defaultdict(int)
    origins: dict[str, int] = defaultdict(int)
    for state, origin, requests in connection.execute(ORIGINS_SQL).fetchall():
        states[state] += requests
        if not warehouse.llm_usage and state != "measured":
            origin = "none"
        if origin is not None:  # a NULL `usage_origin` is counted under no origin
            origins[origin if origin in ORIGINS else "other"] += requests
    cached_unknown: list[KeyUsage] = []
    mismatched = 0
    if warehouse.llm_usage:
        cached_unknown = [KeyUsage(key.day, key.subscription_id, key.deployment, key.state.value,
                                   corrections.resolve(reference, key), requests, prompt, 0, 0)
                          for *columns, requests, prompt in connection.execute(CACHED_UNKNOWN_SQL).fetchall()
                          for key in (usage_key(tuple(columns)),)]
        [(mismatched,)] = connection.execute(LLM_MISMATCH_SQL).fetchall()
    boundaries = sorted(day for day in corrections.boundaries(reference) if start < day < end)
    connection.execute(REPORT_DAYS_SQL, [boundaries])
    connection.execute(f"DROP {'VIEW' if rolled else 'TABLE'} report_groups")
    usage = _resolved(connection.execute(PERIODS_SQL).fetchall(), reference, corrections)
    days = connection.sql(DAYS_SQL).to_arrow_table()  # made into Python objects only when rendered
    connection.execute("DROP TABLE report_days")
    unmatched = 0  # LLM-log records without their event: none when no LLM usage is joined
    if warehouse.llm_usage:
        [(unmatched,)] = connection.execute(UNMATCHED_SQL, [midnight(day) for day in (start, end)]).fetchall()
    explanations: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in usage:
        resolved = item.resolution
        if resolved.corrections:
            _explain(explanations, resolved, corrections.reassigned_to(_key(item)))
    voided: dict[str, int] = defaultdict(int)
    # The voided events' keys: a scan and join of their own, so only when something is voided.
    for row in connection.execute(VOIDED_SQL, [start, end]).fetchall() if corrections.of(Kind.VOID) else ():
        key, correction_id, requests = usage_key(row[:KEY_WIDTH]), str(row[KEY_WIDTH]), int(row[KEY_WIDTH + 1])
        voided[correction_id] += requests
        explanations[_pair(corrections.resolve(reference, key))].add(correction_id)
    make_lines = functools.cache(functools.partial(_cost_lines, days, usage, reference, corrections))
    # PTU allocation needs the days' lines; without capacity they are made only if rendered.
    deployment_days = allocate_capacity(make_lines() if reference.capacity else (), reference, start, end,
                                        today or datetime.now(UTC).date())
    for deployment_day in deployment_days:
        for allocation in deployment_day.allocations:
            if allocation.corrections:
                explanations[(allocation.consumer.cost_center, allocation.currency)].update(allocation.corrections)
    applied = set(voided) | {c for item in usage for c in item.resolution.corrections}
    report = Report(period, reference.catalog.version, report_rows(usage, deployment_days, unknown=cached_unknown),
                    unpriced_rows(usage),
                    deployment_days=deployment_days, capacity_version=reference.capacity.version,
                    corrections=corrections.by_id(applied), voided=dict(voided), explanations=dict(explanations),
                    states=dict(sorted(states.items())), origins=dict(sorted(origins.items())),
                    llm_unmatched=int(unmatched), llm_mismatched=int(mismatched), cached_unknown=cached_unknown,
                    make_lines=make_lines, day_groups=DayGroups(days, usage, warehouse.database))
    report.seconds = time.perf_counter() - started
    return report


def _cost_lines(days: pa.Table, usage: list[KeyUsage], reference: Reference,
                corrections: Corrections) -> list[CostLine]:
    """The day-level cost lines of the period (DAYS_SQL rows), each with its period's resolution
    (`usage`, by period number), or its own day's when that names the day (no price, no capacity)."""
    lines = []
    for row in zip(*(column.to_pylist() for column in days.columns), strict=True):
        key, resolution = usage_key(row[:KEY_WIDTH]), usage[row[-1]].resolution
        if names_day(resolution):
            resolution = corrections.resolve(reference, key)
        lines.append(CostLine(key, resolution, *row[KEY_WIDTH:-1]))
    return lines


def _resolved(periods: list[tuple[Any, ...]], reference: Reference, corrections: Corrections) -> list[KeyUsage]:
    """The usage of each key over a month's days between two reference boundaries (PERIODS_SQL
    rows, in their order), resolved on its first day: one resolution per key and period
    instead of one per day, and the detail its first day-level line would give."""
    return [KeyUsage(key.day, key.subscription_id, key.deployment, key.state.value, corrections.resolve(reference, key),
                     requests, prompt, cached, completion, audio_prompt, audio_completion)
            for row in periods
            for key in (usage_key(row[:KEY_WIDTH]),)
            for requests, prompt, cached, completion, _, audio_prompt, audio_completion in (row[KEY_WIDTH:],)]


def _key(item: KeyUsage) -> UsageKey:
    """A key with the usage's day, subscription and deployment (what reassigns look at)."""
    return UsageKey(item.day, item.subscription_id, None, item.deployment, None, UsageState(item.state))


def _pair(resolution: Resolution) -> tuple[str, str]:
    return resolution.cost_center, resolution.currency


def _explain(explanations: dict[tuple[str, str], set[str]], resolution: Resolution,
             reassigned_to: Iterable[str]) -> None:
    """A corrected line's corrections explain its cost center, the one it would have without
    them, and those that earlier reassigns it overrides gave it."""
    if not resolution.corrections:
        return
    pairs = {_pair(resolution), *((cost_center, resolution.currency) for cost_center in reassigned_to)}
    if resolution.uncorrected is not None:
        pairs.add(_pair(resolution.uncorrected))
    for pair in pairs:
        explanations[pair].update(resolution.corrections)
