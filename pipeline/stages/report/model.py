"""The report of a period (a month, or a range of days): its rows, its unpriced usage, what
corrections and provisioned capacity did to it, and the columns of its files. Built by
pipeline.stages.report.build, rendered by .render, .focus and .html, published by .publish."""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa

from pipeline.domain.capacity import DeploymentDay
from pipeline.domain.corrections import Correction
from pipeline.domain.costing import CostLine, Resolution
from pipeline.domain.errors import UserError
from pipeline.domain.periods import Period, PeriodError
from pipeline.domain.pricing import MONEY, money_sum
from pipeline.domain.true_up import TrueUp

if TYPE_CHECKING:
    import duckdb

REPORT_COLUMNS = ("month", "cost_center", "subscription_id", "model", "deployment_type", "requests",
                  "prompt_tokens", "cached_tokens", "completion_tokens", "cost", "currency",
                  "catalog_version", "charge_class", "ptu_cost", "total_cost",
                  # streamed requests priced from LLM logs, which have no cached-token count: how
                  # many, and the most they may be over-charged (their prompt at input - cached price)
                  "cached_unknown_requests", "cached_unknown_max_overcharge",
                  # the tier the row is billed at (standard, flex, priority; blank for PTU capacity),
                  # whether it is spilled-over usage of a provisioned deployment (billed pay-as-you-go
                  # at its spillover deployment's prices), and the audio tokens of prompt/completion
                  # (extend at the end only)
                  "service_tier", "spillover", "audio_prompt_tokens", "audio_completion_tokens",
                  # the billed cost the metered usage does not explain, allocated to this line by
                  # `report --true-up` (lines of charge class True-up only)
                  "true_up_cost")
# exact decimals in the CSV
AMOUNT_COLUMNS = ("cost", "ptu_cost", "total_cost", "cached_unknown_max_overcharge", "true_up_cost")
UNPRICED_COLUMNS = ("month", "reason", "cost_center", "subscription_id", "deployment", "model", "requests",
                    "prompt_tokens", "cached_tokens", "completion_tokens", "detail", "deployment_type",
                    "service_tier", "spillover", "audio_prompt_tokens", "audio_completion_tokens")
BOOLEAN_COLUMNS = ("spillover",)  # `true`/`false` in the CSV files
DAILY_COLUMNS = ("date", *(c for c in REPORT_COLUMNS if c != "month"))  # `-daily.csv`: the rows by UTC day
FORMATS = ("csv", "parquet", "focus", "focus-1.2", "html")  # every format render_report knows
DEFAULT_FORMATS = ("csv", "parquet")

COST = pa.decimal128(38, 12)
REPORT_SCHEMA = pa.schema([
    ("month", pa.string()), ("cost_center", pa.string()), ("subscription_id", pa.string()),
    ("model", pa.string()), ("deployment_type", pa.string()), ("requests", pa.int64()),
    ("prompt_tokens", pa.int64()), ("cached_tokens", pa.int64()), ("completion_tokens", pa.int64()),
    ("cost", COST), ("currency", pa.string()), ("catalog_version", pa.string()), ("charge_class", pa.string()),
    ("ptu_cost", COST), ("total_cost", COST), ("cached_unknown_requests", pa.int64()),
    ("cached_unknown_max_overcharge", COST), ("service_tier", pa.string()), ("spillover", pa.bool_()),
    ("audio_prompt_tokens", pa.int64()), ("audio_completion_tokens", pa.int64()), ("true_up_cost", COST),
])


class ReportError(UserError):
    """A report that cannot be made as asked (a period, a format)."""


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
    service_tier: str = ""  # the billing tier ("" for provisioned usage and capacity)
    spillover: bool = False
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    audio_prompt_tokens: int = 0
    audio_completion_tokens: int = 0
    cost: Decimal | None = None  # pay-as-you-go (per-token) cost; 0 for provisioned usage
    ptu_cost: Decimal | None = None  # provisioned capacity allocated to this line
    cached_unknown_requests: int = 0  # of `requests`: priced from LLM logs without a cached-token count
    cached_unknown_max_overcharge: Decimal | None = None  # their prompt tokens at input minus cached price
    true_up_cost: Decimal | None = None  # a True-up line's share of the unexplained billed cost

    @property
    def total_cost(self) -> Decimal | None:
        amounts = [c for c in (self.cost, self.ptu_cost, self.true_up_cost) if c is not None]
        return money_sum(amounts) if amounts else None

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
    service_tier: str = ""
    spillover: bool = False
    audio_prompt_tokens: int = 0
    audio_completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class TierTotal:
    requests: int = 0
    audio_tokens: int = 0
    cost: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class ReconciledDeployment:
    """One deployment's month of a reconciliation with Azure Monitor (gap = Azure - metered)."""

    deployment: str
    metered_requests: int
    azure_requests: int
    prompt_tokens_gap: int
    completion_tokens_gap: int
    worst_pct: Decimal  # the largest gap of its days, in percent of Azure's count
    gap_days: int  # days over the tolerance (or seen on one side only)
    gap_cost: Decimal | None
    currency: str
    account: str = ""  # the Azure OpenAI account's resource id ("" when the map names none)


@dataclass(slots=True)
class Report:
    period: Period
    catalog_version: str
    rows: list[ReportRow]
    unpriced: list[UnpricedRow]
    seconds: float = 0.0
    corrections: list[Correction] = field(default_factory=list)  # those that changed this month
    voided: dict[str, int] = field(default_factory=dict)  # correction id -> requests it voided
    explanations: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (cost center, currency) -> ids
    states: dict[str, int] = field(default_factory=dict)  # usage_state -> requests (measured, pending, ...)
    origins: dict[str, int] = field(default_factory=dict)  # usage_origin -> requests (response, llm-log, ...)
    llm_unmatched: int = 0  # LLM-log usage records of the month whose request event never arrived
    # Requests whose LLM-log record names another deployment or model (the event's attribution is used).
    llm_mismatched: int = 0
    # The usage priced from LLM-log records without a cached-token count, per day and key (its
    # cached tokens count as uncached): `report_rows` marks the rows it is part of.
    cached_unknown: list[KeyUsage] = field(default_factory=list)
    deployment_days: list[DeploymentDay] = field(default_factory=list)  # PTU capacity, day by day
    capacity_version: str = ""  # the provisioned-capacity file's content hash ("" without one)
    true_ups: list[TrueUp] = field(default_factory=list)  # `report --true-up`: the allocated gaps
    # The period's reconciliation with Azure Monitor (reconciliation-<label>.csv, when one was
    # published next to the report), per deployment: the HTML report shows it.
    reconciliation: list[ReconciledDeployment] = field(default_factory=list)
    # The day-level cost lines the rows were built from, made on first use (FOCUS, the HTML chart,
    # PTU allocation; the daily CSV of a report without day groups) and kept by the cached
    # callable: the monthly and daily rows do not need an object per day and group.
    make_lines: Callable[[], list[CostLine]] | None = field(default=None, repr=False, compare=False)
    # The usage of each key and day (DuckDB's day table) and the periods' resolutions: what the
    # daily rows are summed from, cheaper than the lines, which it equals in sum (None: from the
    # lines).
    day_groups: DayGroups | None = field(default=None, repr=False, compare=False)
    # Why the rollups could not be read, when the report summed the events instead (a rollup file
    # damaged: `chargeback snapshot --rollups` writes it again).
    rollups_unread: str | None = None

    @property
    def rollups_warning(self) -> str | None:
        """What the report's reader is told when its rollups could not be read, with the fix
        (None when they were read, or there were none)."""
        if self.rollups_unread is None:
            return None
        return (f"a rollup could not be read ({self.rollups_unread}), so this report summed the events (the same "
                "numbers, slower): run `chargeback snapshot --rollups` to write it again")

    @property
    def lines(self) -> list[CostLine]:
        """The cost lines, one per day and resolution key."""
        return self.make_lines() if self.make_lines is not None else []

    def day_usage(self) -> list[KeyUsage]:
        """The usage of each key and day: what the `-daily.csv` rows are summed from."""
        if self.day_groups is not None:
            return self.day_groups.day_usage()
        return list(_line_usage(self.lines))

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
    def max_overcharge(self) -> dict[str, Decimal]:
        """Per currency, the most the usage of unknown cached share may be over-charged."""
        return _by(self.rows, lambda row: row.currency, lambda row: row.cached_unknown_max_overcharge)

    @property
    def cached_unknown_requests(self) -> int:
        return sum(row.cached_unknown_requests for row in self.rows)

    @property
    def true_up_totals(self) -> dict[str, Decimal]:
        """The allocated true-up per currency."""
        return _by(self.rows, lambda row: row.currency, lambda row: row.true_up_cost)

    def tier_totals(self) -> dict[tuple[str, bool, str], TierTotal]:
        """Pay-as-you-go usage per (service tier, spilled over, currency): its requests, audio
        tokens and cost (PTU usage and capacity have no tier; unpriced usage no cost)."""
        totals: dict[tuple[str, bool, str], TierTotal] = {}
        for row in self.rows:
            if row.cost is None or not row.service_tier:
                continue
            key = (row.service_tier, row.spillover, row.currency)
            total = totals.get(key) or TierTotal()
            totals[key] = TierTotal(total.requests + row.requests,
                                    total.audio_tokens + row.audio_prompt_tokens + row.audio_completion_tokens,
                                    MONEY.add(total.cost, row.cost))
        return dict(sorted(totals.items()))

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


def check_formats(formats: Iterable[str]) -> list[str]:
    """The formats, each one of FORMATS (a ReportError names any other)."""
    wanted = list(formats)
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ReportError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return wanted


def formats_of(text: str) -> list[str]:
    """`csv, html` -> ['csv', 'html'], checked; an empty list is a ReportError too."""
    formats = check_formats(f.strip() for f in text.split(",") if f.strip())
    if not formats:
        raise ReportError(f"no format given; choose from {', '.join(FORMATS)}")
    return formats


def as_period(period: Period | str) -> Period:
    """A Period, or a month (`2026-10`) or range label (`2026-10-05_2026-10-20`)."""
    if isinstance(period, Period):
        return period
    try:
        return Period.parse(period)
    except PeriodError as error:
        raise ReportError(str(error)) from None


class KeyUsage(NamedTuple):
    """The usage of one resolution key, summed over its days (`day` is the first of them)."""

    day: date
    subscription_id: str
    deployment: str
    state: str
    resolution: Resolution
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    audio_prompt_tokens: int = 0
    audio_completion_tokens: int = 0


class DayGroups(NamedTuple):
    """The period's usage per day and key (the report's DAYS_SQL rows, with the number of each
    key's period) and the usage of each key and period with its resolution (PERIODS_SQL, in
    period order): what `-daily.csv` is summed from (pipeline.stages.report.daily)."""

    days: pa.Table
    usage: list[KeyUsage]
    # The warehouse's database (pipeline.lake.warehouse.Warehouse.database), of which the daily
    # rows' query takes a cursor; None: it connects to DuckDB itself.
    database: duckdb.DuckDBPyConnection | None = None

    def day_usage(self) -> list[KeyUsage]:
        """The usage of each key and day with its period's resolution, as Python objects."""
        resolutions = [item.resolution for item in self.usage]
        columns = [self.days.column(name).to_pylist() for name in _DAY_USAGE]
        return [KeyUsage(day, subscription_id, deployment, state, resolutions[period], *tokens)
                for day, subscription_id, deployment, state, period, *tokens in zip(*columns, strict=True)]


_DAY_USAGE = ("date", "subscription_id", "deployment", "usage_state", "period", "requests", "prompt_tokens",
              "cached_tokens", "completion_tokens", "audio_prompt_tokens", "audio_completion_tokens")


_CELLS = operator.attrgetter(*REPORT_COLUMNS)
_AMOUNTS = tuple(REPORT_COLUMNS.index(column) for column in AMOUNT_COLUMNS)
_BOOLEANS = tuple(REPORT_COLUMNS.index(column) for column in BOOLEAN_COLUMNS)


def csv_cells(row: ReportRow) -> list[object]:
    """The row's CSV cells in REPORT_COLUMNS order (the first is its bucket of days: the month,
    or the day of a daily row)."""
    cells: list[object] = list(_CELLS(row))
    for at in _AMOUNTS:
        amount = cells[at]
        cells[at] = "" if amount is None else exact_text(amount)  # type: ignore[arg-type]
    for at in _BOOLEANS:
        cells[at] = "true" if cells[at] else "false"
    return cells


def exact_text(amount: Decimal | None) -> str:
    """The exact amount, without exponent or trailing zeros; '' for no amount."""
    return "" if amount is None else format(MONEY.normalize(amount), "f")


def _line_usage(lines: Iterable[CostLine]) -> Iterator[KeyUsage]:
    """Each day-level cost line as the usage of its key (what `report_rows` sums by day)."""
    for line in lines:
        key = line.key
        yield KeyUsage(key.day, key.subscription_id, key.deployment, key.state.value, line.resolution,
                       line.requests, line.prompt_tokens, line.cached_tokens, line.completion_tokens,
                       line.audio_prompt_tokens, line.audio_completion_tokens)
