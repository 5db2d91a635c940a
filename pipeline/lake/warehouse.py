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

import functools
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.domain.corrections import NO_CORRECTIONS, Corrections
from pipeline.domain.costing import Reference
from pipeline.lake.llm_usage import LLM_USAGE_SCHEMA, llm_usage_keys
from pipeline.lake.manifests import GATEWAY_TIMEOUT_LAYOUT, USAGE_PREFIX, PublishedFile, published_files
from pipeline.lake.pricing_keys import register_pricing_keys
from pipeline.lake.rollups import ROLLUP_LAYOUT
from pipeline.lake.usage import USAGE_SCHEMA
from pipeline.lake.views import (
    BILLING_COLUMNS,
    COSTS_VIEW,
    IS_VOIDED,
    LLM_UNMATCHED_VIEW,
    LLM_UNMATCHED_VIEW_EMPTY,
    LLM_USAGE_VIEW,
    NO_VOIDS,
    RECENT_EVENTS,
    ROLLUPS,
    SETTLED_EVENTS,
    TIMEOUT_OF_TAGS,
    UNROLLED_EVENTS,
    USAGE_VIEW,
    USAGE_WITHOUT_LLM_USAGE,
    VOIDED_BY_FILTER,
    VOIDED_BY_ID,
)
from pipeline.ports import ObjectStore, UserError

USAGE_WITH_DATE = USAGE_SCHEMA.append(pa.field("date", pa.date32()))
USAGE_WINDOW = timedelta(hours=24)  # how long a streamed event waits for its LLM-log usage

VOID_IDS_SCHEMA = pa.schema([("event_id", pa.string()), ("correction", pa.string())])
VOID_FILTERS_SCHEMA = pa.schema([
    ("correction", pa.string()), ("subscription_id", pa.string()), ("deployment", pa.string()),
    ("start_time", pa.timestamp("us", tz="UTC")), ("end_time", pa.timestamp("us", tz="UTC")),
])
# DuckDB reads a path with `*`, `?` or `[` as a glob pattern; inside brackets they are literal.
_GLOB_CHARACTER = re.compile(r"[\[*?]")
_MAYBE_PATTERN = re.compile(r"[\[*?{}\\]")
# The snapshot's day, from its committed key `usage/date=YYYY-MM-DD/part-....parquet`.
_FILE_COLUMN = "filename"  # DuckDB's name for the column of each row's file (not a usage column)
_NO_USAGE = "SELECT * FROM usage WHERE false"
_DATE_OF_FILE = rf"CAST(regexp_extract({_FILE_COLUMN}, '/date=(\d{{4}}-\d{{2}}-\d{{2}})/[^/]*$', 1) AS DATE)"


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
    # Whether `usage_rollups` (the rollups of the settled files that have one: pipeline.lake.rollups)
    # and `usage_unrolled` (`usage` over every other file) are defined.
    rollups: bool = False
    # The in-memory database `connection` is a cursor of: a reader on another thread (or after the
    # connection is closed) takes a cursor of its own from it, without starting DuckDB again
    # (20 ms). Closed when the last reference to it goes.
    database: duckdb.DuckDBPyConnection | None = None


def open_warehouse(store: ObjectStore, reference: Reference | None = None,
                   days: tuple[date, date] | None = None, corrections: Corrections | None = None, *,
                   llm_usage: ObjectStore | None = None, now: datetime | None = None,
                   usage_window: timedelta = USAGE_WINDOW, limits: Limits | None = None,
                   rollups: bool = True) -> Warehouse:
    """A DuckDB connection with the `usage`, `llm_usage`, `llm_usage_unmatched` and
    `voided_events` views (and `costs` when a reference is given, with the corrections applied),
    over the committed snapshot files of the days in [start, end) when `days` is given, and the
    LLM usage files of the `llm_usage` store (none: no streamed event gets usage). A streamed
    event without usage is `pending` until `usage_window` after its timestamp, as of `now`.

    Only files named by a committed manifest (or listed in the LLM usage area) are read, handed
    over as Arrow datasets: no path is ever read as a glob pattern, and orphans of a failed run
    are never seen.

    `rollups`: also define `usage_rollups` and `usage_unrolled` when settled files have rollups
    and no LLM usage is joined (pipeline.lake.rollups: the report sums those instead of `usage`)."""
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
    scans = _read_local_files(connection, store.local_root, files, cutoff.date(), rollups) \
        if store.local_root is not None and files else None
    if not files:  # no snapshot of these days: an empty table, not an empty Arrow dataset (it loads pandas)
        connection.execute(f"CREATE OR REPLACE TABLE usage_events ({_columns_sql(USAGE_WITH_DATE)})")
        scans = _Scans([("usage_events", False)])
    elif scans is None:
        scans = _read_through_arrow(connection, store, files, cutoff.date(), rollups)
    if llm_usage is not None and llm_keys:
        _read_llm_usage(connection, llm_usage, llm_keys)
    else:
        connection.execute(f"CREATE OR REPLACE TABLE llm_usage_records ({_columns_sql(LLM_USAGE_SCHEMA)})")
    moment = f"TIMESTAMPTZ '{cutoff.isoformat()}'"
    pending = f"e.timestamp > {moment}"
    views: list[str]
    if llm_keys:
        views = [LLM_USAGE_VIEW, LLM_UNMATCHED_VIEW,
                 USAGE_VIEW.replace("{cutoff}", moment).replace("{billing}", BILLING_COLUMNS)]
    else:
        views = [LLM_USAGE_VIEW, LLM_UNMATCHED_VIEW_EMPTY,
                 f"CREATE OR REPLACE VIEW usage AS {_usage_of(scans.usage, pending)}"]
        if scans.unrolled is not None:  # the files that have a rollup apart: `usage` over every other file
            rest = _usage_of(scans.unrolled, pending) if scans.unrolled else _NO_USAGE
            views.append(f"CREATE OR REPLACE VIEW usage_unrolled AS {rest}")
    for view in views:
        connection.execute(view)
    register_corrections(connection, corrections or NO_CORRECTIONS)
    if reference is not None:
        register_pricing_keys(connection, reference, corrections)
        connection.execute(COSTS_VIEW)
    return Warehouse(connection, bool(llm_keys), scans.unrolled is not None, database)


@dataclass(frozen=True, slots=True)
class _Scans:
    """The scans a reader defined over the files, each (name, settled: every event older than the
    usage window): those `usage` reads, and those `usage_unrolled` reads when `usage_rollups`
    was defined (None when it was not)."""

    usage: list[tuple[str, bool]]
    unrolled: list[tuple[str, bool]] | None = None


def _usage_of(scans: list[tuple[str, bool]], pending: str) -> str:
    """The `usage` rows of these scans: a settled one's never pending, the others' `pending`."""
    return " UNION ALL ".join(USAGE_WITHOUT_LLM_USAGE.format(events=events, pending="false" if settled else pending,
                                                             billing=BILLING_COLUMNS) for events, settled in scans)


def _rolled_up(files: list[PublishedFile], settled_before: date) -> list[PublishedFile]:
    """The files whose rollup the report may sum instead of their events: settled ones (no
    streamed event still waiting for its usage), with a rollup of this version."""
    return [file for file in files if file.date < settled_before and file.rollup is not None
            and file.rollup_layout == ROLLUP_LAYOUT]


def _read_through_arrow(connection: duckdb.DuckDBPyConnection, store: ObjectStore, files: list[PublishedFile],
                        settled_before: date, rollups: bool) -> _Scans:
    """Define `usage_events` over the files as an Arrow dataset on the store's filesystem (a
    store DuckDB cannot read itself); with `rollups`, `usage_rollups` over the rollups of the
    settled files (small: read whole) and `usage_events_unrolled` over every other file."""
    import pyarrow.dataset as ds  # here: importing it costs a report about a second (it loads pandas)

    filesystem, base = store.arrow_filesystem()

    def define(name: str, chosen: list[PublishedFile]) -> None:
        dataset = ds.dataset(
            [f"{base}/{file.key}" for file in chosen], schema=USAGE_WITH_DATE, format="parquet",
            filesystem=filesystem, partition_base_dir=f"{base}/{USAGE_PREFIX}",
            partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"),
        )
        connection.register(f"{name}_files", dataset)  # a file written before `gateway_timeout`: its tags say
        connection.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * REPLACE "
                           f"(coalesce(gateway_timeout, {TIMEOUT_OF_TAGS}) AS gateway_timeout) FROM {name}_files")

    define("usage_events", files)
    found = [(file, store.get(file.rollup or "")) for file in (_rolled_up(files, settled_before) if rollups else [])]
    read = [(file, _rollup_table(store, file, data)) for file, data in found if data is not None]
    if not read:
        return _Scans([("usage_events", False)])
    rows = pa.concat_tables([table.append_column("date", pa.array([file.date] * table.num_rows, pa.date32()))
                             for file, table in read], promote_options="default")
    connection.register("usage_rollup_rows", rows)
    connection.execute(f"CREATE OR REPLACE VIEW {ROLLUPS} AS SELECT * FROM usage_rollup_rows")
    covered = {file.key for file, _ in read}
    rest = [file for file in files if file.key not in covered]
    if rest:
        define(UNROLLED_EVENTS, rest)
    return _Scans([("usage_events", False)], [(UNROLLED_EVENTS, False)] if rest else [])


def _rollup_table(store: ObjectStore, file: PublishedFile, data: bytes) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as error:  # named, as DuckDB's reader names it
        raise pa.ArrowInvalid(f"{store.url}/{file.rollup}: {error}") from error


def _read_local_files(connection: duckdb.DuckDBPyConnection, root: Path, files: list[PublishedFile],
                      settled_before: date, rollups: bool = False) -> _Scans | None:
    """Define `usage_events` as DuckDB's own scans of the committed files of a local store (they
    stream row groups: memory does not grow with the files): `usage_events_settled` over the
    files of days before `settled_before`, `usage_events_recent` over the others, and their
    union. Files written before the `gateway_timeout` column (their manifest's `layout` says)
    are scanned apart, the column made from their tags, so that the files that have it are read
    without the `tags` map. None, and nothing defined, when a path cannot be handed to DuckDB
    as exactly itself.

    `rollups`: when settled files have rollups of this version, also `usage_rollups` (ROLLUPS)
    over those, with each row's `date`, and `usage_events_unrolled` over the other settled files.

    DuckDB expands glob patterns in the paths it reads, so `*`, `?` and `[` are bracketed
    (`[*]` is a literal `*`); when the folder has any character a pattern may use, DuckDB's own
    `glob` must expand each path to that one file, or the caller reads them through Arrow. The
    `date` comes from the key (`usage/date=YYYY-MM-DD/...`), never from Hive partitions of the
    whole path, which would also parse `name=value` folders above the store."""
    patterns = _local_patterns(connection, root, [file.key for file in files])
    if patterns is None:
        return None
    located = list(zip(patterns, files, strict=True))
    # A snapshot file holds the events of its UTC day (pipeline.stages.snapshot), so every
    # event of a file of a day before `settled_before` is older than that day.
    settled = [(pattern, file) for pattern, file in located if file.date < settled_before]
    recent = [(pattern, file) for pattern, file in located if file.date >= settled_before]
    chosen = [(SETTLED_EVENTS, settled), (RECENT_EVENTS, recent)]
    rolled = [file for file in _rolled_up(files, settled_before) if (root / (file.rollup or "")).is_file()] \
        if rollups else []
    rollup_patterns = _local_patterns(connection, root, [file.rollup or "" for file in rolled]) if rolled else None
    if rollup_patterns is not None:
        scan = connection.read_parquet(rollup_patterns, filename=True)
        scan.project(f"* EXCLUDE ({_FILE_COLUMN}), {_DATE_OF_FILE} AS date").create_view(ROLLUPS)
        covered = {file.key for file in rolled}
        chosen.append((UNROLLED_EVENTS, [item for item in settled if item[1].key not in covered]))
    defined = {name for name, some in chosen if some}
    for name, some in chosen:
        if some:
            _define_scan(connection, name, some)
    usage = [(name, name == SETTLED_EVENTS) for name in (SETTLED_EVENTS, RECENT_EVENTS) if name in defined]
    connection.execute(f"CREATE OR REPLACE VIEW usage_events AS "
                       f"{' UNION ALL '.join(f'SELECT * FROM {name}' for name, _ in usage)}")
    if rollup_patterns is None:
        return _Scans(usage)
    return _Scans(usage, [(name, name == UNROLLED_EVENTS) for name in (UNROLLED_EVENTS, RECENT_EVENTS)
                          if name in defined])


def _define_scan(connection: duckdb.DuckDBPyConnection, name: str, chosen: list[tuple[str, PublishedFile]]) -> None:
    """The view `name` over these files (pattern, file): those written before `gateway_timeout`
    scanned apart, the column made from their tags."""
    scans = []
    for has_flag in (True, False):
        paths = [pattern for pattern, file in chosen if (file.layout >= GATEWAY_TIMEOUT_LAYOUT) == has_flag]
        if paths:
            scan = connection.read_parquet(paths, filename=True, union_by_name=True)
            present = set(scan.columns)
            columns = _scan_columns(USAGE_SCHEMA, present)
            if not has_flag:
                derived = TIMEOUT_OF_TAGS if "tags" in present else "false"
                columns[USAGE_SCHEMA.get_field_index("gateway_timeout")] = f"{derived} AS gateway_timeout"
            scans.append(scan.project(", ".join([*columns, f"{_DATE_OF_FILE} AS date"])))
    functools.reduce(lambda one, other: one.union(other), scans).create_view(name)


def _local_patterns(connection: duckdb.DuckDBPyConnection, root: Path, keys: list[str]) -> list[str] | None:
    """The paths of these keys under `root` as DuckDB reads exactly each file (`*`, `?` and `[`
    bracketed); None when the folder has a character a pattern may use and DuckDB's own `glob`
    does not expand every one to its file (then they are read through Arrow)."""
    paths = [str(root / key) for key in keys]
    patterns = [_GLOB_CHARACTER.sub(r"[\g<0>]", path) for path in paths]
    if _MAYBE_PATTERN.search(str(root)) and any(
            connection.execute("SELECT file FROM glob(?)", [pattern]).fetchall() != [(path,)]
            for pattern, path in zip(patterns, paths, strict=True)):
        return None
    return patterns


def _scan_columns(schema: pa.Schema, present: set[str]) -> list[str]:
    """A scan's columns as the schema types them, NULL for a column its files do not have."""
    return [f'CAST("{f.name}" AS {_SQL_TYPES[f.type]}) AS "{f.name}"' if f.name in present
            else f'CAST(NULL AS {_SQL_TYPES[f.type]}) AS "{f.name}"' for f in schema]


_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.int16(): "SMALLINT",
              pa.int8(): "TINYINT", pa.bool_(): "BOOLEAN", pa.date32(): "DATE",
              pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
              pa.map_(pa.string(), pa.string()): "MAP(VARCHAR, VARCHAR)"}


def _columns_sql(schema: pa.Schema) -> str:
    """`"name" TYPE, ...`: the DuckDB types Arrow's would become (KeyError for one not listed)."""
    return ", ".join(f'"{f.name}" {_SQL_TYPES[f.type]}' for f in schema)


def _read_llm_usage(connection: duckdb.DuckDBPyConnection, store: ObjectStore, keys: list[str]) -> None:
    """Define `llm_usage_records` over the LLM usage files: DuckDB's own scan of a local store's
    (an Arrow dataset would import pyarrow.dataset, and with it pandas: 0.3 s of a report), else
    an Arrow dataset over the store's filesystem."""
    patterns = _local_patterns(connection, store.local_root, keys) if store.local_root is not None else None
    if patterns is not None:
        scan = connection.read_parquet(patterns, union_by_name=True)
        scan.project(", ".join(_scan_columns(LLM_USAGE_SCHEMA, set(scan.columns)))).create_view("llm_usage_records")
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
