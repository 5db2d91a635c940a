"""Report: price a month (or any range of days) of usage from the snapshots and write
chargeback-YYYY-MM.csv/.parquet (chargeback-YYYY-MM-DD_YYYY-MM-DD.* for a range).

Pricing happens here, from the events and the catalogs, so history can always be re-priced.
Usage without a price stays in the report as rows with an empty cost (token totals reconcile
with the ledger and counters) and is also listed on its own with the reason.

Recorded corrections (pipeline.domain.corrections) apply here: voided events are left out of
the aggregation (an anti-join in DuckDB), reassigns and reprices change the resolution of the
groups they cover, and the lines they set are marked `charge_class = Correction`. A month written
before is restated, never silently replaced (pipeline.stages.restate).

Provisioned (PTU) deployments have no per-token price: their usage lines cost 0 pay-as-you-go,
and each day's capacity cost is allocated to the lines that used it (pipeline.domain.capacity),
in `ptu_cost`, next to the pay-as-you-go `cost`; `total_cost` is their sum. Capacity left idle
and charged to an owner cost center becomes a line of that owner with no usage.

A report covers a period (pipeline.domain.periods): a calendar month, or any range of whole UTC
days. Each row's `month` is the calendar month of its usage, so a range across months has a row
per month, and summing a quarter's rows by month gives each month's report.

Formats: `csv` (the report, its `-unpriced.csv` and the same rows day by day in `-daily.csv`),
`parquet`, `focus` (FOCUS 1.2 CSV and Parquet, pipeline.stages.focus) and `html` (a
self-contained page with charts, pipeline.stages.html_report).
"""

from __future__ import annotations

import csv
import functools
import io
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.adapters.local_store import LocalObjectStore
from pipeline.domain.capacity import Consumer, DeploymentDay, Usage, allocate_day
from pipeline.domain.corrections import NO_CORRECTIONS, Correction, Corrections
from pipeline.domain.costing import CostLine, Reference, Resolution, UsageKey
from pipeline.domain.periods import Period, PeriodError, month_of, parse_day
from pipeline.domain.pricing import MONEY, Price, money_sum
from pipeline.ports import ObjectStore
from pipeline.stages import restate
from pipeline.stages.restate import Restatement
from pipeline.warehouse import NOT_VOIDED, Warehouse, register_corrections, usage_key

REPORT_COLUMNS = ("month", "cost_center", "subscription_id", "model", "deployment_type", "requests",
                  "prompt_tokens", "cached_tokens", "completion_tokens", "cost", "currency",
                  "catalog_version", "charge_class", "ptu_cost", "total_cost")  # extend at the end only
UNPRICED_COLUMNS = ("month", "reason", "cost_center", "subscription_id", "deployment", "model", "requests",
                    "prompt_tokens", "cached_tokens", "completion_tokens", "detail", "deployment_type")
DAILY_COLUMNS = ("date", *(c for c in REPORT_COLUMNS if c != "month"))  # `-daily.csv`: the rows by UTC day
FORMATS = ("csv", "parquet", "focus", "html")  # every format render_report knows
DEFAULT_FORMATS = ("csv", "parquet")

COST = pa.decimal128(38, 12)
REPORT_SCHEMA = pa.schema([
    ("month", pa.string()), ("cost_center", pa.string()), ("subscription_id", pa.string()),
    ("model", pa.string()), ("deployment_type", pa.string()), ("requests", pa.int64()),
    ("prompt_tokens", pa.int64()), ("cached_tokens", pa.int64()), ("completion_tokens", pa.int64()),
    ("cost", COST), ("currency", pa.string()), ("catalog_version", pa.string()), ("charge_class", pa.string()),
    ("ptu_cost", COST), ("total_cost", COST),
])
_KEY = "u.date, u.subscription_id, u.cost_center, u.deployment, u.model, u.usage_state"
_SUMS = ("count(*) AS requests, coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
         "coalesce(sum(cached_tokens), 0) AS cached_tokens, coalesce(sum(completion_tokens), 0) AS completion_tokens, "
         "coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens")
# Where the numbers came from (`usage.usage_origin`) is grouped by and summed afterwards: a
# FILTER per origin costs the SQL more. Without LLM usage joined, the origin is the event's
# usageSource when it carried usage (else `none`), so the plain column is grouped by (the
# view's CASE for `usage_origin`, per event, costs the SQL a third more).
ORIGINS = ("response", "stream", "estimated", "llm-log", "none")


def groups_sql(origin_column: str) -> str:
    """The period's usage per day, key and origin, kept in the `report_groups` table."""
    return (f"CREATE OR REPLACE TEMP TABLE report_groups AS SELECT {_KEY}, {_SUMS}, {origin_column} AS origin "
            f"FROM usage u WHERE u.date >= ? AND u.date < ? AND {NOT_VOIDED} GROUP BY ALL")


_GROUP_KEY = "subscription_id, cost_center, deployment, model, usage_state"
_TOTALS = ("sum(requests)::BIGINT, sum(prompt_tokens)::BIGINT, sum(cached_tokens)::BIGINT, "
           "sum(completion_tokens)::BIGINT, sum(reasoning_tokens)::BIGINT")
# Per key, month and period between two reference boundaries (the boundaries of the period's
# days, a parameter), from its first day: a key resolves alike on all the days of a period.
PERIODS_SQL = (f"SELECT min(date), {_GROUP_KEY}, {_TOTALS} FROM report_groups "
               f"GROUP BY date_trunc('month', date), len(list_filter(?::DATE[], lambda b: b <= date)), {_GROUP_KEY} "
               "ORDER BY ALL")
DAYS_SQL = f"SELECT date, {_GROUP_KEY}, {_TOTALS} FROM report_groups GROUP BY ALL ORDER BY ALL"
ORIGINS_SQL = "SELECT usage_state, origin, sum(requests)::BIGINT FROM report_groups GROUP BY ALL ORDER BY ALL"


VOIDED_SQL = (f"SELECT {_KEY}, v.correction, count(*) FROM usage u JOIN voided_events v ON v.event_id = u.event_id "
              "WHERE u.date >= ? AND u.date < ? GROUP BY ALL ORDER BY ALL")
# LLM-log usage of the month whose request event never arrived: no caller to charge, so only counted.
UNMATCHED_SQL = "SELECT count(*) FROM llm_usage_unmatched WHERE time >= ? AND time < ?"


class ReportError(ValueError):
    pass


@dataclass(slots=True)
class ReportRow:
    month: str  # the calendar month of the usage (the day, in `-daily.csv` rows)
    cost_center: str
    subscription_id: str
    model: str
    deployment_type: str
    currency: str
    catalog_version: str
    charge_class: str = ""
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None  # pay-as-you-go (per-token) cost; 0 for provisioned usage
    ptu_cost: Decimal | None = None  # provisioned capacity allocated to this line

    @property
    def total_cost(self) -> Decimal | None:
        if self.cost is None and self.ptu_cost is None:
            return None
        return money_sum(c for c in (self.cost, self.ptu_cost) if c is not None)

    def values(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in REPORT_COLUMNS}


@dataclass(slots=True)
class UnpricedRow:
    month: str
    reason: str
    cost_center: str
    subscription_id: str
    deployment: str
    model: str
    detail: str
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    usage_state: str = ""  # not a CSV column: tells `no-usage` of errors from streams whose usage never came
    deployment_type: str = ""


@dataclass(slots=True)
class Report:
    period: Period
    catalog_version: str
    rows: list[ReportRow]
    unpriced: list[UnpricedRow]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    corrections: list[Correction] = field(default_factory=list)  # those that changed this month
    voided: dict[str, int] = field(default_factory=dict)  # correction id -> requests it voided
    explanations: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (cost center, currency) -> ids
    restatement: Restatement | None = None  # set when writing replaced an earlier, different version
    states: dict[str, int] = field(default_factory=dict)  # usage_state -> requests (measured, pending, ...)
    origins: dict[str, int] = field(default_factory=dict)  # usage_origin -> requests (response, llm-log, ...)
    llm_unmatched: int = 0  # LLM-log usage records of the month whose request event never arrived
    deployment_days: list[DeploymentDay] = field(default_factory=list)  # PTU capacity, day by day
    capacity_version: str = ""  # the provisioned-capacity file's content hash ("" without one)
    # The day-level cost lines the rows were built from, made on first use (the daily CSV, FOCUS,
    # the HTML chart) and kept by the cached callable: the monthly rows do not need an object per
    # day and group.
    make_lines: Callable[[], list[CostLine]] | None = field(default=None, repr=False, compare=False)

    @property
    def lines(self) -> list[CostLine]:
        """The cost lines, one per day and resolution key."""
        return self.make_lines() if self.make_lines is not None else []

    @property
    def label(self) -> str:
        """`2026-10` for a month, `2026-10-05_2026-10-20` for a range: the files' names."""
        return self.period.label

    @property
    def totals(self) -> dict[str, Decimal]:
        """Total cost (pay-as-you-go + allocated PTU capacity) per currency."""
        return _by(self.rows, lambda row: row.currency, lambda row: row.total_cost)

    @property
    def payg_totals(self) -> dict[str, Decimal]:
        """Pay-as-you-go (per-token) cost per currency."""
        return _by(self.rows, lambda row: row.currency, lambda row: row.cost)

    @property
    def ptu_totals(self) -> dict[str, Decimal]:
        """Allocated provisioned capacity per currency."""
        return _by(self.rows, lambda row: row.currency, lambda row: row.ptu_cost)

    @property
    def cost_center_totals(self) -> dict[tuple[str, str], Decimal]:
        """Total cost per (cost center, currency)."""
        return _by(self.rows, lambda row: (row.cost_center, row.currency), lambda row: row.total_cost)

    def daily(self) -> dict[date, dict[str, tuple[Decimal, Decimal]]]:
        """(pay-as-you-go, PTU capacity) cost per day and currency."""
        payg: dict[tuple[date, str], list[Decimal]] = defaultdict(list)
        ptu: dict[tuple[date, str], list[Decimal]] = defaultdict(list)
        for line in self.lines:
            cost = line.cost
            if cost is not None and not line.resolution.provisioned:
                payg[(line.key.day, line.resolution.currency)].append(cost)
        for deployment_day in self.deployment_days:
            ptu[(deployment_day.day, deployment_day.currency)].append(deployment_day.cost)
        out: dict[date, dict[str, tuple[Decimal, Decimal]]] = defaultdict(dict)
        for day, currency in sorted(set(payg) | set(ptu)):
            out[day][currency] = (money_sum(payg.get((day, currency), ())), money_sum(ptu.get((day, currency), ())))
        return dict(out)

    @property
    def requests(self) -> int:
        return sum(row.requests for row in self.rows)

    @property
    def unpriced_requests(self) -> int:
        return sum(row.requests for row in self.unpriced)


def _by(rows: Iterable[ReportRow], key: Callable[[ReportRow], Any],
        amount: Callable[[ReportRow], Decimal | None]) -> dict[Any, Decimal]:
    sums: dict[Any, list[Decimal]] = defaultdict(list)
    for row in rows:
        value = amount(row)
        if value is not None:
            sums[key(row)].append(value)
    return {k: money_sum(v) for k, v in sorted(sums.items())}


def check_month(month: str) -> str:
    try:
        Period.month(month)
    except PeriodError as error:
        raise ReportError(str(error)) from None
    return month


def choose_period(month: str | None, first: str | None, last: str | None) -> Period:
    """The period a command names: `--month YYYY-MM`, or `--from YYYY-MM-DD --to YYYY-MM-DD`
    (both days included)."""
    try:
        if month is not None:
            if first is not None or last is not None:
                raise ReportError("give either --month or --from/--to, not both")
            return Period.month(month)
        if first is None or last is None:
            raise ReportError("give --month YYYY-MM, or a range of days with --from YYYY-MM-DD --to YYYY-MM-DD")
        return Period.days(parse_day(first, "--from"), parse_day(last, "--to"))
    except PeriodError as error:
        raise ReportError(str(error)) from None


def as_period(period: Period | str) -> Period:
    """A Period, or a month (`2026-10`) or range label (`2026-10-05_2026-10-20`)."""
    if isinstance(period, Period):
        return period
    try:
        return Period.parse(period)
    except PeriodError as error:
        raise ReportError(str(error)) from None


def allocate_capacity(lines: Iterable[CostLine], reference: Reference, start: date, end: date,
                      today: date | None = None) -> list[DeploymentDay]:
    """Each provisioned deployment-day of [start, end) allocated to the lines that used it.
    Days after `today` (UTC) count only when they already have usage: a report of the current
    month charges the capacity used so far, not the rest of the month."""
    plan = reference.capacity
    if not plan:
        return []
    last = (today or datetime.now(UTC).date()) + timedelta(days=1)
    usage: dict[tuple[date, str], dict[Consumer, Usage]] = defaultdict(dict)
    corrected: dict[tuple[date, str], dict[Consumer, tuple[str, ...]]] = defaultdict(dict)
    models: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in lines:
        resolved = line.resolution
        if not resolved.provisioned:
            continue
        at = (line.key.day, line.key.deployment)
        consumer = Consumer(resolved.cost_center, line.key.subscription_id, resolved.model or "",
                            resolved.deployment_type or "", resolved.charge_class)
        weighted = plan.weights.for_model(resolved.model).weighted(line.prompt_tokens, line.cached_tokens,
                                                                   line.completion_tokens)
        usage[at].setdefault(consumer, Usage()).add(line.requests, line.prompt_tokens, line.cached_tokens,
                                                    line.completion_tokens, weighted)
        if resolved.corrections:
            corrected[at][consumer] = tuple(sorted({*corrected[at].get(consumer, ()), *resolved.corrections}))
        models[line.key.deployment][resolved.model or ""] += line.requests
    days = []
    for day, deployment, rows in plan.days(start, end):
        if day >= last and (day, deployment) not in usage:
            continue
        mapped = reference.deployments.get(deployment)
        seen = models.get(deployment, {})
        model = mapped.model if mapped is not None and mapped.model else (
            max(seen.items(), key=lambda item: (item[1], item[0]))[0] if seen else None)
        deployment_type = mapped.deployment_type if mapped is not None else "provisioned"
        days.append(allocate_day(day, deployment, rows, usage.get((day, deployment), {}), plan, model,
                                 deployment_type, corrected.get((day, deployment))))
    return days


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
    register_corrections(warehouse.connection, corrections)
    connection = warehouse.connection
    connection.execute(groups_sql("u.usage_origin" if warehouse.llm_usage else "u.usage_source"), [start, end])
    states: dict[str, int] = defaultdict(int)
    origins: dict[str, int] = defaultdict(int)
    for state, origin, requests in connection.execute(ORIGINS_SQL).fetchall():
        states[state] += requests
        if not warehouse.llm_usage and state != "measured":
            origin = "none"
        if origin is not None:  # a NULL `usage_origin` is counted under no origin
            origins[origin if origin in ORIGINS else "other"] += requests
    days = connection.sql(DAYS_SQL).to_arrow_table()  # made into Python objects only for the lines
    boundaries = sorted(day for day in corrections.boundaries(reference) if start < day < end)
    usage = _resolved(connection.execute(PERIODS_SQL, [boundaries]).fetchall(), reference, corrections)
    connection.execute("DROP TABLE report_groups")
    bounds = [datetime(day.year, day.month, day.day, tzinfo=UTC) for day in (start, end)]
    [(unmatched,)] = connection.execute(UNMATCHED_SQL, bounds).fetchall()
    explanations: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in usage:
        resolved = item[4]
        if resolved.corrections:
            _explain(explanations, resolved, corrections.reassigned_to(_key(item)))
    voided: dict[str, int] = defaultdict(int)
    for row in connection.execute(VOIDED_SQL, [start, end]).fetchall():
        key, correction_id, requests = usage_key(row[:6]), str(row[6]), int(row[7])
        voided[correction_id] += requests
        explanations[_pair(corrections.resolve(reference, key))].add(correction_id)
    make_lines = functools.cache(functools.partial(_cost_lines, days, reference, corrections))
    # PTU allocation needs the days' lines; without capacity they are made only if rendered.
    deployment_days = allocate_capacity(make_lines() if reference.capacity else (), reference, start, end, today)
    for deployment_day in deployment_days:
        for allocation in deployment_day.allocations:
            if allocation.corrections:
                explanations[(allocation.consumer.cost_center, allocation.currency)].update(allocation.corrections)
    applied = set(voided) | {c for item in usage for c in item[4].corrections}
    report = Report(period, reference.catalog.version, _rows(usage, deployment_days), _unpriced(usage),
                    deployment_days=deployment_days, capacity_version=reference.capacity.version,
                    corrections=corrections.by_id(applied), voided=dict(voided), explanations=dict(explanations),
                    states=dict(sorted(states.items())), origins=dict(sorted(origins.items())),
                    llm_unmatched=int(unmatched), make_lines=make_lines)
    report.seconds = time.perf_counter() - started
    return report


# Usage of one resolution key, summed: (day, subscription, deployment, usage state, its
# resolution, requests, prompt, cached and completion tokens). `day` is its first day.
KeyUsage = tuple[date, str, str, str, Resolution, int, int, int, int]


def _cost_lines(days: pa.Table, reference: Reference, corrections: Corrections) -> list[CostLine]:
    """The day-level cost lines of the period (DAYS_SQL rows)."""
    return [CostLine(key, corrections.resolve(reference, key), *row[6:11])
            for row in zip(*(column.to_pylist() for column in days.columns), strict=True)
            for key in (usage_key(row[:6]),)]


def _resolved(periods: list[tuple[Any, ...]], reference: Reference, corrections: Corrections) -> list[KeyUsage]:
    """The usage of each key over a month's days between two reference boundaries (PERIODS_SQL
    rows, in their order), resolved on its first day: one resolution per key and period
    instead of one per day, and the detail its first day-level line would give."""
    return [(day, subscription_id, deployment, state,
             corrections.resolve(reference, usage_key((day, subscription_id, cost_center, deployment, model, state))),
             requests, prompt, cached, completion)
            for day, subscription_id, cost_center, deployment, model, state, requests, prompt, cached, completion, _
            in periods]


def _key(item: KeyUsage) -> UsageKey:
    """A key with the usage's day, subscription and deployment (what reassigns look at)."""
    day, subscription_id, deployment, state = item[:4]
    return usage_key((day, subscription_id, None, deployment, None, state))


def _usage(lines: Iterable[CostLine]) -> Iterator[KeyUsage]:
    for line in lines:
        key = line.key
        yield (key.day, key.subscription_id, key.deployment, key.state.value, line.resolution, line.requests,
               line.prompt_tokens, line.cached_tokens, line.completion_tokens)


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


def _rows(usage: Iterable[KeyUsage], deployment_days: Iterable[DeploymentDay] = (),
          bucket: Callable[[date], str] = month_of) -> list[ReportRow]:
    """Report rows per bucket of days (the calendar month; the day for `-daily.csv`) x cost
    center x subscription x model x deployment type x currency x catalog x charge class.

    Pricing is linear and exact, so a row's cost is priced once per price from its summed
    tokens, to the same amount as the sum of its lines' costs."""
    bucket = functools.cache(bucket)  # named once per day, not once per line
    rows: dict[tuple[str, ...], ReportRow] = {}
    priced: dict[tuple[str, ...], dict[int, tuple[Price, list[int]]]] = defaultdict(dict)
    provisioned: set[tuple[str, ...]] = set()  # rows with provisioned usage: 0 pay-as-you-go
    allocated: dict[tuple[str, ...], list[Decimal]] = defaultdict(list)
    for day, subscription_id, _, _, resolved, requests, prompt, cached, completion in usage:
        currency = resolved.currency
        key = (bucket(day), resolved.cost_center, subscription_id, resolved.model or "",
               resolved.deployment_type or "", currency, resolved.catalog_version if currency else "",
               resolved.charge_class)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ReportRow(*key)
        row.requests += requests
        row.prompt_tokens += prompt
        row.cached_tokens += cached
        row.completion_tokens += completion
        price = resolved.price
        if price is not None:
            prices = priced[key]
            kept = prices.get(id(price))
            if kept is None:
                prices[id(price)] = (price, [prompt, cached, completion])
            else:
                tokens = kept[1]
                tokens[0] += prompt
                tokens[1] += cached
                tokens[2] += completion
        elif resolved.provisioned:
            provisioned.add(key)
    for deployment_day in deployment_days:
        for allocation in deployment_day.allocations:
            consumer = allocation.consumer
            key = (bucket(deployment_day.day), consumer.cost_center, consumer.subscription_id, consumer.model,
                   consumer.deployment_type, allocation.currency, "", consumer.charge_class)
            if key not in rows:  # idle capacity charged to its owner: a line with no usage
                rows[key] = ReportRow(*key)
            allocated[key].append(allocation.amount)
    for pair in provisioned:
        rows[pair].cost = Decimal(0)
    for pair, prices in priced.items():
        costs = [price.cost(*tokens) for price, tokens in prices.values()]
        rows[pair].cost = money_sum(costs if pair not in provisioned else [Decimal(0), *costs])
    for pair, amounts in allocated.items():
        rows[pair].ptu_cost = money_sum(amounts)
    return [rows[key] for key in sorted(rows)]


def _unpriced(usage: Iterable[KeyUsage]) -> list[UnpricedRow]:
    rows: dict[tuple[str, ...], UnpricedRow] = {}
    for day, subscription_id, deployment, state, resolved, requests, prompt, cached, completion in usage:
        if resolved.unpriced is None:
            continue
        key = (month_of(day), resolved.unpriced.value, resolved.cost_center, subscription_id,
               deployment, resolved.model or "", state)
        row = rows.get(key)
        if row is None:
            row = rows[key] = UnpricedRow(*key[:6], detail=resolved.detail, usage_state=key[6],
                                          deployment_type=resolved.deployment_type or "")
        row.requests += requests
        row.prompt_tokens += prompt
        row.cached_tokens += cached
        row.completion_tokens += completion
    return [rows[key] for key in sorted(rows)]


def exact_text(amount: Decimal | None) -> str:
    """The exact amount, without exponent or trailing zeros; '' for no amount."""
    return "" if amount is None else format(MONEY.normalize(amount), "f")


def render_report(report: Report, formats: Iterable[str] = DEFAULT_FORMATS) -> dict[str, bytes]:
    """The report's files as {file name: bytes}: `chargeback-<label>.csv` with its `-unpriced.csv`
    and `-daily.csv` companions, and `chargeback-<label>.parquet`, for the formats asked; `focus`
    adds the FOCUS 1.2 CSV and Parquet (a month's Parquet in the FinOps hubs layout), `html` the
    HTML report. The label is the month (`2026-10`) or the range (`2026-10-05_2026-10-20`)."""
    wanted = list(formats)
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ReportError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    stem = restate.stem(report.label)
    files: dict[str, bytes] = {}
    if "csv" in wanted:
        files[f"{stem}.csv"] = _csv(REPORT_COLUMNS, (_csv_values(row) for row in report.rows))
        files[f"{stem}-unpriced.csv"] = _csv(
            UNPRICED_COLUMNS, ({c: getattr(row, c) for c in UNPRICED_COLUMNS} for row in report.unpriced))
        daily = _rows(_usage(report.lines), report.deployment_days, bucket=date.isoformat)
        files[f"{stem}-daily.csv"] = _csv(DAILY_COLUMNS, (_csv_values(row, first="date") for row in daily))
    if "parquet" in wanted:
        table = pa.Table.from_pylist([row.values() for row in report.rows], schema=REPORT_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        files[f"{stem}.parquet"] = sink.getvalue().to_pybytes()
    if "focus" in wanted:
        from pipeline.stages.focus import render_focus

        files.update(render_focus(report))
    if "html" in wanted:
        from pipeline.stages.html_report import render_html

        files[f"{stem}.html"] = render_html(report)
    return files


def _csv_values(row: ReportRow, first: str = "month") -> dict[str, object]:
    """The row's CSV cells, its bucket of days (`month`, or `date` for daily rows) named `first`."""
    values = {**row.values(), **{c: exact_text(getattr(row, c)) for c in ("cost", "ptu_cost", "total_cost")}}
    values[first] = values.pop("month")
    return values


def is_closed(period: Period | str, today: date | None = None) -> bool:
    """A month is closed once the next one has begun, a range once its last day is over (UTC)."""
    return as_period(period).is_closed(today or datetime.now(UTC).date())


def store_report(report: Report, store: ObjectStore, formats: Iterable[str] = DEFAULT_FORMATS,
                 today: date | None = None) -> list[str]:
    """Write the report's files into a store (each object replaced atomically); returns their
    keys. The formats already there are rewritten too, so that no stale file stays next to the
    new ones. When a CLOSED period (a month, or a range of days) was written before with other
    content, the previous files are kept in history and a restatement is written first
    (`report.restatement`); the current month's report is provisional and is replaced in place."""
    wanted = list(formats)
    render_report(report, wanted)  # an unknown format fails before the store is read
    current = restate.current_files(store, report.label)
    files = render_report(report, set(wanted) | restate.present_formats(current, report.label))
    report.restatement = None
    if is_closed(report.period, today) and restate.changed(current, files):
        report.restatement = restate.restate(store, report.label, current, report.cost_center_totals,
                                             report.explanations)
    for key, data in files.items():
        store.put(key, data, overwrite=True)
    return list(files)


def write_report(report: Report, out_dir: Path, formats: Iterable[str] = DEFAULT_FORMATS) -> list[Path]:
    """Write the report files into a folder (through the local object store: each file is
    written to a temporary name and renamed into place); see `store_report`."""
    keys = store_report(report, LocalObjectStore(out_dir), formats)
    report.files = [out_dir / key for key in keys]
    if report.restatement is not None:
        report.restatement.location = str(out_dir / report.restatement.key)
    return report.files


def _csv(columns: tuple[str, ...], rows: Iterable[dict[str, object]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")

