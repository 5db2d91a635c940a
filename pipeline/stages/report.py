"""Report: price a month of usage from the snapshots and write chargeback-YYYY-MM.csv/.parquet.

Pricing happens here, from the events and the catalogs, so history can always be re-priced.
Usage without a price stays in the report as rows with an empty cost (token totals reconcile
with the ledger and counters) and is also listed on its own with the reason.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.domain.costing import CostLine, Reference
from pipeline.domain.pricing import MONEY, money_sum
from pipeline.warehouse import Warehouse, month_bounds, usage_key

REPORT_COLUMNS = ("month", "cost_center", "subscription_id", "model", "deployment_type", "requests",
                  "prompt_tokens", "cached_tokens", "completion_tokens", "cost", "currency",
                  "catalog_version")
UNPRICED_COLUMNS = ("month", "reason", "cost_center", "subscription_id", "deployment", "model", "requests",
                    "prompt_tokens", "cached_tokens", "completion_tokens", "detail")
FORMATS = ("csv", "parquet")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

COST = pa.decimal128(38, 12)
REPORT_SCHEMA = pa.schema([
    ("month", pa.string()), ("cost_center", pa.string()), ("subscription_id", pa.string()),
    ("model", pa.string()), ("deployment_type", pa.string()), ("requests", pa.int64()),
    ("prompt_tokens", pa.int64()), ("cached_tokens", pa.int64()), ("completion_tokens", pa.int64()),
    ("cost", COST), ("currency", pa.string()), ("catalog_version", pa.string()),
])


class ReportError(ValueError):
    pass


@dataclass(slots=True)
class ReportRow:
    month: str
    cost_center: str
    subscription_id: str
    model: str
    deployment_type: str
    currency: str
    catalog_version: str
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None

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


@dataclass(slots=True)
class Report:
    month: str
    catalog_version: str
    rows: list[ReportRow]
    unpriced: list[UnpricedRow]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def totals(self) -> dict[str, Decimal]:
        """Cost per currency."""
        by_currency: dict[str, list[Decimal]] = defaultdict(list)
        for row in self.rows:
            if row.cost is not None:
                by_currency[row.currency].append(row.cost)
        return {currency: money_sum(costs) for currency, costs in sorted(by_currency.items())}

    @property
    def requests(self) -> int:
        return sum(row.requests for row in self.rows)

    @property
    def unpriced_requests(self) -> int:
        return sum(row.requests for row in self.unpriced)


def check_month(month: str) -> str:
    if not _MONTH.fullmatch(month):
        raise ReportError(f"month {month!r} is not of the form YYYY-MM")
    return month


def build_report(warehouse: Warehouse, reference: Reference, month: str) -> Report:
    started = time.perf_counter()
    start, end = month_bounds(check_month(month))
    groups = warehouse.connection.execute(
        "SELECT date, subscription_id, cost_center, deployment, model, "
        "CASE WHEN prompt_tokens IS NOT NULL THEN 'measured' WHEN usage_source = 'stream' THEN 'pending' "
        "ELSE 'none' END AS state, count(*), coalesce(sum(prompt_tokens), 0), "
        "coalesce(sum(cached_tokens), 0), coalesce(sum(completion_tokens), 0), "
        "coalesce(sum(reasoning_tokens), 0) "
        "FROM usage WHERE date >= ? AND date < ? GROUP BY ALL ORDER BY ALL", [start, end]).fetchall()
    lines = [
        CostLine(key, reference.resolve(key), *(int(n) for n in row[6:]))
        for row in groups
        for key in (usage_key(row[:6]),)
    ]
    report = Report(month, reference.catalog.version, _rows(month, lines, reference.catalog.version),
                    _unpriced(month, lines))
    report.seconds = time.perf_counter() - started
    return report


def _rows(month: str, lines: Iterable[CostLine], version: str) -> list[ReportRow]:
    rows: dict[tuple[str, str, str, str, str], ReportRow] = {}
    costs: dict[tuple[str, str, str, str, str], list[Decimal]] = defaultdict(list)
    for line in lines:
        resolved = line.resolution
        currency = resolved.price.currency if resolved.price else ""
        key = (resolved.cost_center, line.key.subscription_id, resolved.model or "",
               resolved.deployment_type or "", currency)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ReportRow(month, *key[:4], currency, version if currency else "")
        row.requests += line.requests
        row.prompt_tokens += line.prompt_tokens
        row.cached_tokens += line.cached_tokens
        row.completion_tokens += line.completion_tokens
        if line.cost is not None:
            costs[key].append(line.cost)
    for key, amounts in costs.items():
        rows[key].cost = money_sum(amounts)
    return [rows[key] for key in sorted(rows)]


def _unpriced(month: str, lines: Iterable[CostLine]) -> list[UnpricedRow]:
    rows: dict[tuple[str, ...], UnpricedRow] = {}
    for line in lines:
        resolved = line.resolution
        if resolved.unpriced is None:
            continue
        key = (resolved.unpriced.value, resolved.cost_center, line.key.subscription_id, line.key.deployment,
               resolved.model or "")
        row = rows.get(key)
        if row is None:
            row = rows[key] = UnpricedRow(month, *key, detail=resolved.detail)
        row.requests += line.requests
        row.prompt_tokens += line.prompt_tokens
        row.cached_tokens += line.cached_tokens
        row.completion_tokens += line.completion_tokens
    return [rows[key] for key in sorted(rows)]


def exact_text(amount: Decimal | None) -> str:
    """The exact amount, without exponent or trailing zeros; '' for no amount."""
    return "" if amount is None else format(MONEY.normalize(amount), "f")


def render_report(report: Report, formats: Iterable[str] = FORMATS) -> dict[str, bytes]:
    """The report's files as {file name: bytes}: `chargeback-YYYY-MM.csv`, its `-unpriced.csv`
    companion, and `chargeback-YYYY-MM.parquet`, for the formats asked."""
    wanted = list(formats)
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ReportError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    stem = f"chargeback-{report.month}"
    files: dict[str, bytes] = {}
    if "csv" in wanted:
        files[f"{stem}.csv"] = _csv(REPORT_COLUMNS, (
            {**row.values(), "cost": exact_text(row.cost)} for row in report.rows))
        files[f"{stem}-unpriced.csv"] = _csv(
            UNPRICED_COLUMNS, ({c: getattr(row, c) for c in UNPRICED_COLUMNS} for row in report.unpriced))
    if "parquet" in wanted:
        table = pa.Table.from_pylist([row.values() for row in report.rows], schema=REPORT_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        files[f"{stem}.parquet"] = sink.getvalue().to_pybytes()
    return files


def write_report(report: Report, out_dir: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write the report files into a folder; each is written to a temporary name and renamed
    into place."""
    files = render_report(report, formats)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.files = [_publish(out_dir / name, data) for name, data in files.items()]
    return report.files


def _csv(columns: tuple[str, ...], rows: Iterable[dict[str, object]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def _publish(path: Path, data: bytes) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return path
