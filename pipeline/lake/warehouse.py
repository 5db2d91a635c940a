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

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.domain.corrections import NO_CORRECTIONS, Corrections
from pipeline.domain.costing import Reference
from pipeline.lake import snapshot_scans
from pipeline.lake.llm_usage import LLM_USAGE_SCHEMA, llm_usage_keys
from pipeline.lake.manifests import published_files
from pipeline.lake.pricing_keys import register_pricing_keys
from pipeline.lake.snapshot_scans import USAGE_WITH_DATE, columns_sql, local_patterns, scan_columns
from pipeline.lake.views import (
    BILLING_COLUMNS,
    COSTS_VIEW,
    IS_VOIDED,
    LLM_UNMATCHED_VIEW,
    LLM_UNMATCHED_VIEW_EMPTY,
    LLM_USAGE_VIEW,
    NO_VOIDS,
    USAGE_VIEW,
    USAGE_WITHOUT_LLM_USAGE,
    VOIDED_BY_FILTER,
    VOIDED_BY_ID,
)
from pipeline.ports import ObjectStore, UserError

USAGE_WINDOW = timedelta(hours=24)  # how long a streamed event waits for its LLM-log usage

VOID_IDS_SCHEMA = pa.schema([("event_id", pa.string()), ("correction", pa.string())])
VOID_FILTERS_SCHEMA = pa.schema([
    ("correction", pa.string()), ("subscription_id", pa.string()), ("deployment", pa.string()),
    ("start_time", pa.timestamp("us", tz="UTC")), ("end_time", pa.timestamp("us", tz="UTC")),
])
_NO_EVENTS = "usage_events_none"  # an empty table: `usage_unrolled` when every file has a rollup


class QueryError(UserError):
    """DuckDB could not run a statement over the snapshots (the user's SQL, or a file it read)."""


@contextmanager
def query_errors() -> Iterator[None]:
    """DuckDB's errors as one-line QueryErrors."""
    try:
        yield
    except duckdb.Error as error:
        raise QueryError(f"query failed: {str(error).splitlines()[0]}") from None


@dataclass(frozen=True, slots=True)
class Limits:
    """Where DuckDB spills and how much memory it may take. DuckDB's defaults are a `.tmp` folder
    relative to the working directory (read-only in an Azure Functions package mount) and 80% of
    the RAM the machine reports (more than a Functions instance may use): so the temporary
    folder is always an absolute one under the system's, and the memory limit is a setting
    (CHARGEBACK_DUCKDB_MEMORY_LIMIT, e.g. `1GB`; None: DuckDB's default)."""

    temp_directory: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "chargeback-duckdb")
    memory_limit: str | None = None


@dataclass(frozen=True, slots=True)
class Warehouse:
    connection: duckdb.DuckDBPyConnection
    llm_usage: bool = False  # whether `usage` joins LLM usage (else `usage_origin` is the usageSource or `none`)
    # Whether `usage` is defined over every file (False: opened for the rollups alone, `events`).
    events: bool = True
    # Whether `usage_rollups` (the rollups of the settled files that have one: pipeline.lake.rollups)
    # and `usage_unrolled` (`usage` over every other file) are defined.
    rollups: bool = False
    # The in-memory database `connection` is a cursor of: a reader on another thread (or after the
    # connection is closed) takes a cursor of its own from it, without starting DuckDB again
    # (20 ms). Closed when the last reference to it goes.
    database: duckdb.DuckDBPyConnection | None = None
    files: int = 0  # the committed snapshot files of its days (0: no usage to read)


def open_warehouse(store: ObjectStore, reference: Reference | None = None,
                   days: tuple[date, date] | None = None, corrections: Corrections | None = None, *,
                   llm_usage: ObjectStore | None = None, now: datetime | None = None,
                   usage_window: timedelta = USAGE_WINDOW, limits: Limits | None = None,
                   rollups: bool = True, events: bool = True) -> Warehouse:
    """A DuckDB connection with the `usage`, `llm_usage`, `llm_usage_unmatched` and
    `voided_events` views (and `costs` when a reference is given, with the corrections applied),
    over the committed snapshot files of the days in [start, end) when `days` is given, and the
    LLM usage files of the `llm_usage` store (none: no streamed event gets usage). A streamed
    event without usage is `pending` until `usage_window` after its timestamp, as of `now`.

    Only files named by a committed manifest (or listed in the LLM usage area) are read, handed
    over as Arrow datasets: no path is ever read as a glob pattern, and orphans of a failed run
    are never seen.

    `rollups`: also define `usage_rollups` and `usage_unrolled` when settled files have rollups
    and no LLM usage is joined (pipeline.lake.rollups: the report sums those instead of `usage`).
    `events=False`, for a reader of those alone (the report when nothing is voided): a local
    store's settled files that have a rollup are not scanned as events, and `usage` is not
    defined (`Warehouse.events`), when the rollups are; else it changes nothing."""
    if reference is not None and not events:
        raise ValueError("the `costs` view prices each event: open the warehouse with events=True")
    limits = limits or Limits()
    config: dict[str, str | bool | int | float | list[str]] = {"temp_directory": str(limits.temp_directory)}
    if limits.memory_limit:
        config["memory_limit"] = limits.memory_limit
    try:
        database = duckdb.connect(config=config)
    except duckdb.Error as error:  # a memory limit DuckDB cannot read
        raise UserError(f"CHARGEBACK_DUCKDB_MEMORY_LIMIT {limits.memory_limit!r}: {str(error).splitlines()[0]}") \
            from None
    connection = database.cursor()
    files = published_files(store, days)
    cutoff = (now or datetime.now(UTC)) - usage_window
    # A constant, not a joined one-row table: it is a datetime (never text), in UTC.
    cutoff = cutoff.astimezone(UTC) if cutoff.tzinfo is not None else cutoff.replace(tzinfo=UTC)
    llm_keys = llm_usage_keys(llm_usage, days) if llm_usage is not None else []
    rollups = rollups and not llm_keys  # a streamed event's LLM-log usage is joined by its eventId
    scans = snapshot_scans.read_local_files(connection, store.local_root, files, cutoff.date(), rollups, events) \
        if store.local_root is not None and files else None
    if not files:  # no snapshot of these days: an empty table, not an empty Arrow dataset (it loads pandas)
        connection.execute(f"CREATE OR REPLACE TABLE usage_events ({columns_sql(USAGE_WITH_DATE)})")
        scans = snapshot_scans.Scans([("usage_events", False)])
    elif scans is None:
        scans = snapshot_scans.read_through_arrow(connection, store, files, cutoff.date(), rollups)
    if llm_usage is not None and llm_keys:
        _read_llm_usage(connection, llm_usage, llm_keys)
    else:
        connection.execute(f"CREATE OR REPLACE TABLE llm_usage_records ({columns_sql(LLM_USAGE_SCHEMA)})")
    moment = f"TIMESTAMPTZ '{cutoff.isoformat()}'"
    pending = f"e.timestamp > {moment}"
    views: list[str]
    if llm_keys:
        views = [LLM_USAGE_VIEW, LLM_UNMATCHED_VIEW,
                 USAGE_VIEW.replace("{cutoff}", moment).replace("{billing}", BILLING_COLUMNS)]
    else:
        views = [LLM_USAGE_VIEW, LLM_UNMATCHED_VIEW_EMPTY]
        if scans.usage is not None:
            views.append(f"CREATE OR REPLACE VIEW usage AS {_usage_of(scans.usage, pending)}")
        if scans.unrolled is not None:  # the files that have a rollup apart: `usage` over every other file
            if not scans.unrolled:
                connection.execute(f"CREATE OR REPLACE TABLE {_NO_EVENTS} ({columns_sql(USAGE_WITH_DATE)})")
            rest = _usage_of(scans.unrolled or [(_NO_EVENTS, True)], pending)
            views.append(f"CREATE OR REPLACE VIEW usage_unrolled AS {rest}")
    for view in views:
        connection.execute(view)
    register_corrections(connection, corrections or NO_CORRECTIONS)
    if reference is not None:
        register_pricing_keys(connection, reference, corrections)
        connection.execute(COSTS_VIEW)
    return Warehouse(connection, bool(llm_keys), scans.usage is not None, scans.unrolled is not None, database,
                     len(files))


def _usage_of(scans: list[tuple[str, bool]], pending: str) -> str:
    """The `usage` rows of these scans: a settled one's never pending, the others' `pending`."""
    return " UNION ALL ".join(USAGE_WITHOUT_LLM_USAGE.format(events=events, pending="false" if settled else pending,
                                                             billing=BILLING_COLUMNS) for events, settled in scans)


def _read_llm_usage(connection: duckdb.DuckDBPyConnection, store: ObjectStore, keys: list[str]) -> None:
    """Define `llm_usage_records` over the LLM usage files: DuckDB's own scan of a local store's
    (an Arrow dataset would import pyarrow.dataset, and with it pandas: 0.3 s of a report), else
    an Arrow dataset over the store's filesystem."""
    patterns = local_patterns(connection, store.local_root, keys) if store.local_root is not None else None
    if patterns is not None:
        scan = connection.read_parquet(patterns, union_by_name=True)
        scan.project(", ".join(scan_columns(LLM_USAGE_SCHEMA, set(scan.columns)))).create_view("llm_usage_records")
        return
    import pyarrow.dataset as ds

    filesystem, base = store.arrow_filesystem()
    connection.register("llm_usage_records", ds.dataset([f"{base}/{key}" for key in keys], schema=LLM_USAGE_SCHEMA,
                                                        format="parquet", filesystem=filesystem))


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
