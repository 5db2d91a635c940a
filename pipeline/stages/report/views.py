"""The `allocations` and `focus` views of `chargeback query`, next to `usage` and `costs`.

Both are built by the report itself, month by month (pipeline.stages.report.build, with
the same reference and corrections), and registered as tables: so `allocations` and `focus`
agree with the report files to the last digit, and, for any month,

    sum(costs.cost) + sum(allocations.amount) = report total = sum(focus.BilledCost)

`allocations`: one row per provisioned deployment x UTC day x consumer (cost center x APIM
subscription x model x deployment type x charge class), kind `usage`, plus the idle capacity
charged to its owner (kind `idle`); `amount` is exact, the rows of a deployment-day add up to its
`capacity_cost`. `focus`: the FOCUS 1.3 rows of `chargeback report --format focus` (there is no 1.2 view: the
1.2 rows are these without the columns 1.3 added, so select the 1.2 columns).

The months covered are those with usage, and those a capacity row covers up to today (UTC).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa

from pipeline.domain.capacity import DeploymentDay
from pipeline.domain.corrections import Corrections
from pipeline.domain.costing import Reference
from pipeline.lake.warehouse import Warehouse
from pipeline.stages.report.build import build_report
from pipeline.stages.report.focus import FOCUS_SCHEMA, FocusContext, focus_table

VIEWS = ("allocations", "focus")
AMOUNT = pa.decimal128(38, 12)
ALLOCATIONS_SCHEMA = pa.schema([
    ("date", pa.date32()), ("month", pa.string()), ("deployment", pa.string()), ("kind", pa.string()),
    ("cost_center", pa.string()), ("subscription_id", pa.string()), ("model", pa.string()),
    ("deployment_type", pa.string()), ("charge_class", pa.string()), ("requests", pa.int64()),
    ("prompt_tokens", pa.int64()), ("cached_tokens", pa.int64()), ("completion_tokens", pa.int64()),
    ("weighted_tokens", pa.decimal128(38, 6)), ("amount", AMOUNT), ("currency", pa.string()),
    ("ptu_hours", pa.int64()), ("price_per_ptu_hour", AMOUNT), ("capacity_cost", AMOUNT),
    ("utilization", pa.float64()), ("idle_to", pa.string()), ("capacity_version", pa.string()),
    ("corrections", pa.string()),
])


def wanted_views(sql: str) -> list[str]:
    """The views of VIEWS that a statement names (they cost a report per month to build)."""
    return [name for name in VIEWS if re.search(rf"\b{name}\b", sql, re.IGNORECASE)]


def allocation_rows(days: Iterable[DeploymentDay], capacity_version: str = "") -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for day in days:
        utilization = day.utilization
        for allocation in day.allocations:
            consumer, usage = allocation.consumer, allocation.usage
            rows.append({
                "date": day.day, "month": f"{day.day:%Y-%m}", "deployment": day.deployment, "kind": allocation.kind,
                "cost_center": consumer.cost_center, "subscription_id": consumer.subscription_id or None,
                "model": consumer.model or None, "deployment_type": consumer.deployment_type or None,
                "charge_class": consumer.charge_class or None, "requests": usage.requests,
                "prompt_tokens": usage.prompt_tokens, "cached_tokens": usage.cached_tokens,
                "completion_tokens": usage.completion_tokens, "weighted_tokens": usage.weighted,
                "amount": allocation.amount, "currency": allocation.currency, "ptu_hours": day.ptu_hours,
                "price_per_ptu_hour": allocation.price_per_ptu_hour, "capacity_cost": day.cost,
                "utilization": float(utilization) if utilization is not None else None,
                "idle_to": day.idle_to, "capacity_version": capacity_version or None,
                "corrections": ";".join(allocation.corrections) or None,
            })
    return rows


def register_finance_views(warehouse: Warehouse, reference: Reference, corrections: Corrections | None = None,
                           views: Iterable[str] = VIEWS, today: date | None = None,
                           context: FocusContext | None = None) -> None:
    """Register `allocations` and/or `focus` on the warehouse's connection."""
    wanted = set(views)
    if not wanted:
        return
    today = today or datetime.now(UTC).date()
    allocations: list[dict[str, object]] = []
    focus: list[pa.Table] = []
    for month in _months(warehouse.connection, reference, today):
        report = build_report(warehouse, reference, month, corrections, today=today)
        allocations.extend(allocation_rows(report.deployment_days, report.capacity_version))
        if "focus" in wanted:
            focus.append(focus_table(report, context))
    if "allocations" in wanted:
        warehouse.connection.register("allocations", pa.Table.from_pylist(allocations, schema=ALLOCATIONS_SCHEMA))
    if "focus" in wanted:
        warehouse.connection.register("focus", pa.concat_tables(focus) if focus else FOCUS_SCHEMA.empty_table())


def _months(connection: duckdb.DuckDBPyConnection, reference: Reference, today: date) -> list[str]:
    months = {str(row[0]) for row in connection.execute(
        "SELECT DISTINCT strftime(date, '%Y-%m') FROM usage").fetchall() if row[0] is not None}
    for row in reference.capacity.rows:
        day = row.start.date().replace(day=1)
        last = min(row.end.date() if row.end else today, today)
        while day <= last:
            months.add(f"{day:%Y-%m}")
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return sorted(months)
