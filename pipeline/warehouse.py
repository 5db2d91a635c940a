"""DuckDB over the Parquet snapshots: the `usage` and `costs` views that reports, `query`
and finance share.

`costs` prices each event with the same resolution the report uses (pipeline.domain.costing):
the distinct pricing keys are resolved in Python, registered as a small table, and joined.
Money stays DECIMAL(38,12) in SQL: prices per token have at most 12 decimals, so no rounding.

Corrections (pipeline.domain.corrections) apply here as in the report: voided events are left
out by an anti-join on the `voided_events` view, built over small registered tables (the voided
ids, and the void filters as rows), so no user value is ever formatted into SQL; reassigns and
reprices change the resolved keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.adapters.arrow_fs import arrow_filesystem
from pipeline.domain.corrections import NO_CORRECTIONS, Corrections
from pipeline.domain.costing import Reference, UsageKey, UsageState
from pipeline.domain.pricing import MONEY, TOKENS_PER_UNIT
from pipeline.ports import ObjectStore
from pipeline.stages.snapshot import USAGE_PREFIX, published_files
from pipeline.usage_schema import USAGE_SCHEMA

PER_TOKEN = pa.decimal128(38, 12)
USAGE_WITH_DATE = USAGE_SCHEMA.append(pa.field("date", pa.date32()))
STATE_SQL = ("CASE WHEN prompt_tokens IS NOT NULL THEN 'measured' "
             "WHEN usage_source = 'stream' THEN 'pending' ELSE 'none' END")
KEY_COLUMNS = ("date", "subscription_id", "cost_center", "deployment", "model", "state")

RESOLUTION_SCHEMA = pa.schema([
    ("date", pa.date32()), ("subscription_id", pa.string()), ("cost_center_sent", pa.string()),
    ("deployment", pa.string()), ("model_sent", pa.string()), ("state", pa.string()),
    ("cost_center", pa.string()), ("model", pa.string()), ("deployment_type", pa.string()),
    ("currency", pa.string()), ("input_per_token", PER_TOKEN), ("cached_input_per_token", PER_TOKEN),
    ("output_per_token", PER_TOKEN), ("catalog_version", pa.string()), ("unpriced_reason", pa.string()),
    ("unpriced_detail", pa.string()), ("charge_class", pa.string()),
])
VOID_IDS_SCHEMA = pa.schema([("event_id", pa.string()), ("correction", pa.string())])
VOID_FILTERS_SCHEMA = pa.schema([
    ("correction", pa.string()), ("subscription_id", pa.string()), ("deployment", pa.string()),
    ("start_time", pa.timestamp("us", tz="UTC")), ("end_time", pa.timestamp("us", tz="UTC")),
])
# Events a correction voids, with the correction's id (an event matched by two voids is listed twice).
VOIDED_BY_ID = ("SELECT u.event_id, i.correction FROM usage u "
                "JOIN corrections_void_ids i ON u.event_id = i.event_id")
VOIDED_BY_FILTER = ("SELECT u.event_id, f.correction FROM usage u JOIN corrections_void_filters f "
                    "ON u.subscription_id = f.subscription_id AND u.timestamp >= f.start_time "
                    "AND u.timestamp < f.end_time AND (f.deployment IS NULL OR u.deployment = f.deployment)")
NO_VOIDS = "SELECT NULL::VARCHAR AS event_id, NULL::VARCHAR AS correction WHERE false"
NOT_VOIDED = "NOT EXISTS (SELECT 1 FROM voided_events v WHERE v.event_id = u.event_id)"

COSTS_VIEW = f"""
CREATE OR REPLACE VIEW costs AS
SELECT u.* EXCLUDE (cost_center, model),
       u.cost_center AS cost_center_sent,
       r.cost_center, r.model, r.deployment_type,
       strftime(u.date, '%Y-%m') AS month,
       CASE WHEN r.currency IS NOT NULL THEN
            (u.prompt_tokens - u.cached_tokens)::DECIMAL(18, 0) * r.input_per_token
          + u.cached_tokens::DECIMAL(18, 0) * r.cached_input_per_token
          + u.completion_tokens::DECIMAL(18, 0) * r.output_per_token END AS cost,
       r.currency, r.catalog_version, r.unpriced_reason, r.charge_class
FROM usage u JOIN pricing_keys r
  ON u.date = r.date AND u.subscription_id = r.subscription_id
 AND u.cost_center IS NOT DISTINCT FROM r.cost_center_sent AND u.deployment = r.deployment
 AND u.model IS NOT DISTINCT FROM r.model_sent AND {STATE_SQL.replace("prompt_tokens", "u.prompt_tokens")
                                                   .replace("usage_source", "u.usage_source")} = r.state
WHERE {NOT_VOIDED}
"""


@dataclass(frozen=True, slots=True)
class Warehouse:
    connection: duckdb.DuckDBPyConnection
    has_data: bool


def open_warehouse(store: ObjectStore, reference: Reference | None = None,
                   days: tuple[date, date] | None = None, corrections: Corrections | None = None) -> Warehouse:
    """A DuckDB connection with the `usage` and `voided_events` views (and `costs` when a
    reference is given, with the corrections applied), over the committed snapshot files of the
    days in [start, end) when `days` is given.

    Only files named by a committed manifest are read, handed over as an Arrow dataset: no
    path is ever read as a glob pattern, and orphans of a failed run are never seen."""
    connection = duckdb.connect()
    files = published_files(store, days)
    filesystem, base = arrow_filesystem(store)
    dataset = ds.dataset(
        [f"{base}/{file.key}" for file in files], schema=USAGE_WITH_DATE, format="parquet",
        filesystem=filesystem, partition_base_dir=f"{base}/{USAGE_PREFIX}",
        partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"),
    )
    connection.register("usage", dataset)
    register_corrections(connection, corrections or NO_CORRECTIONS)
    if reference is not None:
        keys = connection.execute(
            f"SELECT DISTINCT date, subscription_id, cost_center, deployment, model, {STATE_SQL} "
            "FROM usage").fetchall()
        connection.register("pricing_keys", resolution_table(reference, keys, corrections))
        connection.execute(COSTS_VIEW)
    return Warehouse(connection, bool(files))


def register_corrections(connection: duckdb.DuckDBPyConnection, corrections: Corrections) -> None:
    """(Re)define `voided_events` (event_id, correction) for these corrections."""
    ids = [{"event_id": event_id, "correction": correction} for event_id, correction in corrections.void_ids()]
    filters = [{"correction": c.id, "subscription_id": c.subscription_id, "deployment": c.deployment,
                "start_time": c.start, "end_time": c.end} for c in corrections.void_filters()]
    connection.register("corrections_void_ids", pa.Table.from_pylist(ids, schema=VOID_IDS_SCHEMA))
    connection.register("corrections_void_filters", pa.Table.from_pylist(filters, schema=VOID_FILTERS_SCHEMA))
    parts = [sql for sql, present in ((VOIDED_BY_ID, ids), (VOIDED_BY_FILTER, filters)) if present]
    connection.execute(f"CREATE OR REPLACE VIEW voided_events AS {' UNION ALL '.join(parts) or NO_VOIDS}")


def usage_key(row: tuple[object, ...]) -> UsageKey:
    day, subscription, cost_center, deployment, model, state = row
    return UsageKey(day, subscription, cost_center, deployment, model, UsageState(state))  # type: ignore[arg-type]


def resolution_table(reference: Reference, keys: Iterable[tuple[object, ...]],
                     corrections: Corrections | None = None) -> pa.Table:
    corrections = corrections or NO_CORRECTIONS
    rows = []
    for row in keys:
        key = usage_key(row)
        resolved = corrections.resolve(reference, key)
        price = resolved.price
        rows.append({
            "date": key.day, "subscription_id": key.subscription_id, "cost_center_sent": key.cost_center_sent,
            "deployment": key.deployment, "model_sent": key.model, "state": key.state.value,
            "cost_center": resolved.cost_center, "model": resolved.model,
            "deployment_type": resolved.deployment_type,
            "currency": price.currency if price else None,
            "input_per_token": _per_token(price.input_per_1m) if price else None,
            "cached_input_per_token": _per_token(price.cached_input_per_1m) if price else None,
            "output_per_token": _per_token(price.output_per_1m) if price else None,
            "catalog_version": resolved.catalog_version or None,
            "unpriced_reason": resolved.unpriced.value if resolved.unpriced else None,
            "unpriced_detail": resolved.detail or None,
            "charge_class": resolved.charge_class or None,
        })
    return pa.Table.from_pylist(rows, schema=RESOLUTION_SCHEMA)


def _per_token(per_1m: Decimal) -> Decimal:
    return MONEY.divide(per_1m, TOKENS_PER_UNIT)


def month_bounds(month: str) -> tuple[date, date]:
    """`2026-10` -> (2026-10-01, 2026-11-01)."""
    start = date.fromisoformat(f"{month}-01")
    end = date(start.year + 1, 1, 1) if start.month == 12 else date(start.year, start.month + 1, 1)
    return start, end
