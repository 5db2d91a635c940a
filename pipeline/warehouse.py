"""DuckDB over the Parquet snapshots: the `usage` and `costs` views that reports, `query`
and finance share.

`costs` prices each event with the same resolution the report uses (pipeline.domain.costing):
the distinct pricing keys are resolved in Python, registered as a small table, and joined.
Money stays DECIMAL(38,12) in SQL: prices per token have at most 12 decimals, so no rounding.

Corrections (pipeline.domain.corrections) apply here as in the report: voided events are left
out by an anti-join on the `voided_events` view, built over small registered tables (the voided
ids, and the void filters as rows), so no user value is ever formatted into SQL; reassigns and
reprices change the resolved keys.

Streamed events arrive without usage (the policy never reads a stream); their token counts come
from APIM's LLM logs (pipeline.domain.llm_logs), joined here at read time by `eventId` =
`CorrelationId`. `usage` says where each event's numbers came from (`usage_origin`: response,
stream, estimated, llm-log, none) and whether it can be priced (`usage_state`): a streamed event
without usage is `pending` while younger than the usage window (24 hours by default), then
`expired`, which is unpriced `no-usage`, never zero. `llm_usage` is the deduplicated LLM usage,
`llm_usage_unmatched` its records whose request event never arrived (not priced: no caller).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.adapters.arrow_fs import arrow_filesystem
from pipeline.adapters.local_store import LocalObjectStore
from pipeline.domain.corrections import NO_CORRECTIONS, Corrections
from pipeline.domain.costing import Reference, UsageKey, UsageState
from pipeline.domain.periods import Period
from pipeline.domain.pricing import MONEY, TOKENS_PER_UNIT
from pipeline.ports import ObjectStore
from pipeline.stages.llm_usage import LLM_USAGE_SCHEMA, llm_usage_keys
from pipeline.stages.snapshot import USAGE_PREFIX, PublishedFile, published_files
from pipeline.usage_schema import USAGE_SCHEMA

PER_TOKEN = pa.decimal128(38, 12)
USAGE_WITH_DATE = USAGE_SCHEMA.append(pa.field("date", pa.date32()))
USAGE_WINDOW = timedelta(hours=24)  # how long a streamed event waits for its LLM-log usage
PAY_AS_YOU_GO, PROVISIONED = "pay-as-you-go", "provisioned"  # `costs.pricing`
KEY_COLUMNS = ("date", "subscription_id", "cost_center", "deployment", "model", "state")

RESOLUTION_SCHEMA = pa.schema([
    ("date", pa.date32()), ("subscription_id", pa.string()), ("cost_center_sent", pa.string()),
    ("deployment", pa.string()), ("model_sent", pa.string()), ("state", pa.string()),
    ("cost_center", pa.string()), ("model", pa.string()), ("deployment_type", pa.string()),
    ("currency", pa.string()), ("input_per_token", PER_TOKEN), ("cached_input_per_token", PER_TOKEN),
    ("output_per_token", PER_TOKEN), ("catalog_version", pa.string()), ("unpriced_reason", pa.string()),
    ("unpriced_detail", pa.string()), ("charge_class", pa.string()), ("pricing", pa.string()),
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
# `is_voided` is a macro that register_corrections redefines: `false` when nothing is voided, so
# that DuckDB drops the filter and never reads the event ids; else an anti-join on `voided_events`.
NOT_VOIDED = "NOT is_voided(u.event_id)"
IS_VOIDED = "EXISTS (SELECT 1 FROM voided_events v WHERE v.event_id = voided_event_id)"

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
       r.currency, r.catalog_version, r.unpriced_reason, r.charge_class, r.pricing
FROM usage u JOIN pricing_keys r
  ON u.date = r.date AND u.subscription_id = r.subscription_id
 AND u.cost_center IS NOT DISTINCT FROM r.cost_center_sent AND u.deployment = r.deployment
 AND u.model IS NOT DISTINCT FROM r.model_sent AND u.usage_state = r.state
WHERE {NOT_VOIDED}
"""

# One usage record per join id: the one with the most tokens (a request's counts are logged once;
# other entries of the same request, such as message chunks, carry none or the same), then a
# fixed order, so that every reader picks the same record.
LLM_USAGE_VIEW = """
CREATE OR REPLACE VIEW llm_usage AS
SELECT * FROM llm_usage_records
QUALIFY row_number() OVER (PARTITION BY join_id ORDER BY total_tokens DESC, prompt_tokens DESC,
        cached_tokens DESC NULLS LAST, sequence_number NULLS LAST, time, request_id NULLS LAST,
        deployment NULLS LAST, model NULLS LAST, region NULLS LAST, operation NULLS LAST) = 1
"""
LLM_UNMATCHED_VIEW = """
CREATE OR REPLACE VIEW llm_usage_unmatched AS
SELECT l.* FROM llm_usage l WHERE NOT EXISTS (SELECT 1 FROM usage_events e WHERE e.event_id = l.join_id)
"""
# Usage from the LLM log fills only streamed events that came without it. Cached tokens the log
# does not report count as uncached (the higher price).
USAGE_VIEW = """
CREATE OR REPLACE VIEW usage AS
SELECT e.* REPLACE (
         coalesce(e.prompt_tokens, l.prompt_tokens) AS prompt_tokens,
         coalesce(e.completion_tokens, l.completion_tokens) AS completion_tokens,
         coalesce(e.total_tokens, l.total_tokens) AS total_tokens,
         coalesce(e.cached_tokens, CASE WHEN l.join_id IS NOT NULL THEN coalesce(l.cached_tokens, 0) END)
           AS cached_tokens),
       CASE WHEN e.prompt_tokens IS NOT NULL THEN e.usage_source
            WHEN l.join_id IS NOT NULL THEN 'llm-log' ELSE 'none' END AS usage_origin,
       CASE WHEN e.prompt_tokens IS NOT NULL OR l.join_id IS NOT NULL THEN 'measured'
            WHEN e.usage_source = 'stream' AND e.timestamp > {cutoff} THEN 'pending'
            WHEN e.usage_source = 'stream' THEN 'expired' ELSE 'none' END AS usage_state
FROM usage_events e
LEFT JOIN llm_usage l ON e.usage_source = 'stream' AND e.prompt_tokens IS NULL AND l.join_id = e.event_id
"""
# The same view when there is no LLM usage to join (no file read): what the join would give.
# `{events}` and `{pending}`: a local store's files of days whose every event is older than the
# usage window get their own scan with `false` for the window test, so that the report, which
# never selects `timestamp`, does not read that column for them (a third of its scan).
USAGE_WITHOUT_LLM_USAGE = """
SELECT e.*,
       CASE WHEN e.prompt_tokens IS NOT NULL THEN e.usage_source ELSE 'none' END AS usage_origin,
       CASE WHEN e.prompt_tokens IS NOT NULL THEN 'measured'
            WHEN e.usage_source = 'stream' AND {pending} THEN 'pending'
            WHEN e.usage_source = 'stream' THEN 'expired' ELSE 'none' END AS usage_state
FROM {events} e
"""
SETTLED_EVENTS, RECENT_EVENTS = "usage_events_settled", "usage_events_recent"
LLM_UNMATCHED_VIEW_EMPTY = "CREATE OR REPLACE VIEW llm_usage_unmatched AS SELECT l.* FROM llm_usage l WHERE false"
# DuckDB reads a path with `*`, `?` or `[` as a glob pattern; inside brackets they are literal.
_GLOB_CHARACTER = re.compile(r"[\[*?]")
_MAYBE_PATTERN = re.compile(r"[\[*?{}\\]")
# The snapshot's day, from its committed key `usage/date=YYYY-MM-DD/part-....parquet`.
_FILE_COLUMN = "filename"  # DuckDB's name for the column of each row's file (not a usage column)
_DATE_OF_FILE = rf"CAST(regexp_extract({_FILE_COLUMN}, '/date=(\d{{4}}-\d{{2}}-\d{{2}})/[^/]*$', 1) AS DATE)"


@dataclass(frozen=True, slots=True)
class Warehouse:
    connection: duckdb.DuckDBPyConnection
    has_data: bool
    llm_usage: bool = False  # whether `usage` joins LLM usage (else `usage_origin` is the usageSource or `none`)


def open_warehouse(store: ObjectStore, reference: Reference | None = None,
                   days: tuple[date, date] | None = None, corrections: Corrections | None = None, *,
                   llm_usage: ObjectStore | None = None, now: datetime | None = None,
                   usage_window: timedelta = USAGE_WINDOW) -> Warehouse:
    """A DuckDB connection with the `usage`, `llm_usage`, `llm_usage_unmatched` and
    `voided_events` views (and `costs` when a reference is given, with the corrections applied),
    over the committed snapshot files of the days in [start, end) when `days` is given, and the
    LLM usage files of the `llm_usage` store (none: no streamed event gets usage). A streamed
    event without usage is `pending` until `usage_window` after its timestamp, as of `now`.

    Only files named by a committed manifest (or listed in the LLM usage area) are read, handed
    over as Arrow datasets: no path is ever read as a glob pattern, and orphans of a failed run
    are never seen."""
    connection = duckdb.connect()
    files = published_files(store, days)
    cutoff = (now or datetime.now(UTC)) - usage_window
    # A constant, not a joined one-row table: it is a datetime (never text), in UTC.
    cutoff = cutoff.astimezone(UTC) if cutoff.tzinfo is not None else cutoff.replace(tzinfo=UTC)
    parts = isinstance(store, LocalObjectStore) and files and _read_local_files(
        connection, store.root, files, cutoff.date())
    if not parts:
        import pyarrow.dataset as ds  # here: importing it costs a report about a second (it loads pandas)

        filesystem, base = arrow_filesystem(store)
        dataset = ds.dataset(
            [f"{base}/{file.key}" for file in files], schema=USAGE_WITH_DATE, format="parquet",
            filesystem=filesystem, partition_base_dir=f"{base}/{USAGE_PREFIX}",
            partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"),
        )
        connection.register("usage_events", dataset)
    llm_keys = llm_usage_keys(llm_usage, days) if llm_usage is not None else []
    if llm_usage is not None and llm_keys:
        connection.register("llm_usage_records", _llm_usage_dataset(llm_usage, llm_keys))
    else:
        connection.execute(f"CREATE OR REPLACE TABLE llm_usage_records ({_columns_sql(LLM_USAGE_SCHEMA)})")
    moment = f"TIMESTAMPTZ '{cutoff.isoformat()}'"
    pending = f"e.timestamp > {moment}"
    if llm_keys:
        views = (LLM_USAGE_VIEW, LLM_UNMATCHED_VIEW, USAGE_VIEW.replace("{cutoff}", moment))
    else:
        scans = [(name, "false" if name == SETTLED_EVENTS else pending) for name in parts or ()] or [
            ("usage_events", pending)]
        usage = " UNION ALL ".join(USAGE_WITHOUT_LLM_USAGE.format(events=events, pending=test)
                                   for events, test in scans)
        views = (LLM_USAGE_VIEW, LLM_UNMATCHED_VIEW_EMPTY, f"CREATE OR REPLACE VIEW usage AS {usage}")
    for view in views:
        connection.execute(view)
    register_corrections(connection, corrections or NO_CORRECTIONS)
    if reference is not None:
        keys = connection.execute(
            "SELECT DISTINCT date, subscription_id, cost_center, deployment, model, usage_state FROM usage").fetchall()
        connection.register("pricing_keys", resolution_table(reference, keys, corrections))
        connection.execute(COSTS_VIEW)
    return Warehouse(connection, bool(files), bool(llm_keys))


def _read_local_files(connection: duckdb.DuckDBPyConnection, root: Path, files: list[PublishedFile],
                      settled_before: date) -> list[str]:
    """Define `usage_events` as DuckDB's own scans of the committed files of a local store (they
    stream row groups: memory does not grow with the files): `usage_events_settled` over the
    files of days before `settled_before`, `usage_events_recent` over the others, and their
    union; returns the names of the scans defined. [], and nothing defined, when a path
    cannot be handed to DuckDB as exactly itself.

    DuckDB expands glob patterns in the paths it reads, so `*`, `?` and `[` are bracketed
    (`[*]` is a literal `*`); when the folder has any character a pattern may use, DuckDB's own
    `glob` must expand each path to that one file, or the caller reads them through Arrow. The
    `date` comes from the key (`usage/date=YYYY-MM-DD/...`), never from Hive partitions of the
    whole path, which would also parse `name=value` folders above the store."""
    paths = [str(root / file.key) for file in files]
    patterns = [_GLOB_CHARACTER.sub(r"[\g<0>]", path) for path in paths]
    if _MAYBE_PATTERN.search(str(root)) and any(
            connection.execute("SELECT file FROM glob(?)", [pattern]).fetchall() != [(path,)]
            for pattern, path in zip(patterns, paths, strict=True)):
        return []
    # A snapshot file holds the events of its UTC day (pipeline.stages.snapshot), so every
    # event of a file of a day before `settled_before` is older than that day.
    settled = [pattern for pattern, file in zip(patterns, files, strict=True) if file.date < settled_before]
    recent = [pattern for pattern, file in zip(patterns, files, strict=True) if file.date >= settled_before]
    names = []
    for name, chosen in ((SETTLED_EVENTS, settled), (RECENT_EVENTS, recent)):
        if chosen:
            scan = connection.read_parquet(chosen, filename=True, union_by_name=True)
            present = set(scan.columns)
            columns = [f'CAST("{f.name}" AS {_SQL_TYPES[f.type]}) AS "{f.name}"' if f.name in present
                       else f'CAST(NULL AS {_SQL_TYPES[f.type]}) AS "{f.name}"' for f in USAGE_SCHEMA]
            scan.project(", ".join([*columns, f"{_DATE_OF_FILE} AS date"])).create_view(name)
            names.append(name)
    union = " UNION ALL ".join(f"SELECT * FROM {name}" for name in names)
    connection.execute(f"CREATE OR REPLACE VIEW usage_events AS {union}")
    return names


_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.int16(): "SMALLINT",
              pa.int8(): "TINYINT", pa.bool_(): "BOOLEAN", pa.date32(): "DATE",
              pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
              pa.map_(pa.string(), pa.string()): "MAP(VARCHAR, VARCHAR)"}


def _columns_sql(schema: pa.Schema) -> str:
    """`"name" TYPE, ...`: the DuckDB types Arrow's would become (KeyError for one not listed)."""
    return ", ".join(f'"{f.name}" {_SQL_TYPES[f.type]}' for f in schema)


def _llm_usage_dataset(store: ObjectStore, keys: list[str]) -> pa.dataset.Dataset:
    import pyarrow.dataset as ds

    filesystem, base = arrow_filesystem(store)
    return ds.dataset([f"{base}/{key}" for key in keys], schema=LLM_USAGE_SCHEMA,
                      format="parquet", filesystem=filesystem)


def register_corrections(connection: duckdb.DuckDBPyConnection, corrections: Corrections) -> None:
    """(Re)define `voided_events` (event_id, correction) for these corrections."""
    ids = [{"event_id": event_id, "correction": correction} for event_id, correction in corrections.void_ids()]
    filters = [{"correction": c.id, "subscription_id": c.subscription_id, "deployment": c.deployment,
                "start_time": c.start, "end_time": c.end} for c in corrections.void_filters()]
    # Registered only when there are some: any Arrow table handed to DuckDB loads pandas (half a second).
    if ids:
        connection.register("corrections_void_ids", pa.Table.from_pylist(ids, schema=VOID_IDS_SCHEMA))
    if filters:
        connection.register("corrections_void_filters", pa.Table.from_pylist(filters, schema=VOID_FILTERS_SCHEMA))
    parts = [sql for sql, present in ((VOIDED_BY_ID, ids), (VOIDED_BY_FILTER, filters)) if present]
    connection.execute(f"CREATE OR REPLACE VIEW voided_events AS {' UNION ALL '.join(parts) or NO_VOIDS}")
    connection.execute(f"CREATE OR REPLACE MACRO is_voided(voided_event_id) AS {IS_VOIDED if parts else 'false'}")


_STATES = {state.value: state for state in UsageState}  # a dict lookup: calling the enum costs more


def usage_key(row: tuple[object, ...]) -> UsageKey:
    day, subscription, cost_center, deployment, model, state = row
    return UsageKey(day, subscription, cost_center, deployment, model, _STATES[state])  # type: ignore[arg-type, index]


def resolution_table(reference: Reference, keys: Iterable[tuple[object, ...]],
                     corrections: Corrections | None = None) -> pa.Table:
    corrections = corrections or NO_CORRECTIONS
    rows = []
    for row in keys:
        key = usage_key(row)
        resolved = corrections.resolve(reference, key)
        price = resolved.price
        zero = Decimal(0) if resolved.provisioned else None
        rows.append({
            "date": key.day, "subscription_id": key.subscription_id, "cost_center_sent": key.cost_center_sent,
            "deployment": key.deployment, "model_sent": key.model, "state": key.state.value,
            "cost_center": resolved.cost_center, "model": resolved.model,
            "deployment_type": resolved.deployment_type,
            "currency": resolved.currency or None,
            # provisioned (PTU) usage costs 0 per token: its capacity is in the `allocations` view
            "input_per_token": _per_token(price.input_per_1m) if price else zero,
            "cached_input_per_token": _per_token(price.cached_input_per_1m) if price else zero,
            "output_per_token": _per_token(price.output_per_1m) if price else zero,
            "catalog_version": resolved.catalog_version or None,
            "unpriced_reason": resolved.unpriced.value if resolved.unpriced else None,
            "unpriced_detail": resolved.detail or None,
            "charge_class": resolved.charge_class or None,
            "pricing": PROVISIONED if resolved.provisioned else PAY_AS_YOU_GO if price else None,
        })
    return pa.Table.from_pylist(rows, schema=RESOLUTION_SCHEMA)


def _per_token(per_1m: Decimal) -> Decimal:
    return MONEY.divide(per_1m, TOKENS_PER_UNIT)


def month_bounds(month: str) -> tuple[date, date]:
    """`2026-10` -> (2026-10-01, 2026-11-01)."""
    period = Period.month(month)
    return period.start, period.end
