"""The warehouse's scans of the committed snapshot files and their rollups (pipeline.lake.warehouse
defines its views over them): DuckDB's own scans of a local store's files, or Arrow datasets over
any other store's.

A scan reads only the files a committed manifest names, each by its exact path: DuckDB expands
glob patterns in the paths it reads, so a path's `*`, `?` and `[` are bracketed (`local_patterns`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.manifests import GATEWAY_TIMEOUT_LAYOUT, USAGE_PREFIX, PublishedFile
from pipeline.lake.rollups import DAY_ROLLUP_LAYOUT, ROLLUP_LAYOUT, sums_exactly
from pipeline.lake.usage import USAGE_SCHEMA
from pipeline.lake.views import RECENT_EVENTS, ROLLUPS, SETTLED_EVENTS, TIMEOUT_OF_TAGS, UNROLLED_EVENTS
from pipeline.ports import ObjectStore

USAGE_WITH_DATE = USAGE_SCHEMA.append(pa.field("date", pa.date32()))
# DuckDB reads a path with `*`, `?` or `[` as a glob pattern; inside brackets they are literal.
_GLOB_CHARACTER = re.compile(r"[\[*?]")
_MAYBE_PATTERN = re.compile(r"[\[*?{}\\]")
_LAYOUTS = (ROLLUP_LAYOUT, DAY_ROLLUP_LAYOUT)  # a file's own rollup, and its day's
# The snapshot's day, from its committed key `usage/date=YYYY-MM-DD/part-....parquet`.
_FILE_COLUMN = "filename"  # DuckDB's name for the column of each row's file (not a usage column)
_DATE_OF_FILE = rf"CAST(regexp_extract({_FILE_COLUMN}, '/date=(\d{{4}}-\d{{2}}-\d{{2}})/[^/]*$', 1) AS DATE)"


@dataclass(frozen=True, slots=True)
class Scans:
    """The scans a reader defined over the files, each (name, settled: every event older than the
    usage window): those `usage` reads, and those `usage_unrolled` reads when `usage_rollups`
    was defined (None when it was not)."""

    usage: list[tuple[str, bool]] | None  # None: `usage` is not defined (read_local_files, `events`)
    unrolled: list[tuple[str, bool]] | None = None


def rolled_up(files: list[PublishedFile], settled_before: date) -> dict[str, list[PublishedFile]]:
    """The rollups the report may sum instead of their files' events, each with the files it
    sums: those of settled files (no streamed event still waiting for its usage), of this
    version, and a day's rollup only when it is the one of exactly the files that name it
    (pipeline.lake.rollups.sums_exactly; `files` holds whole days)."""
    found: dict[str, list[PublishedFile]] = {}
    for file in files:
        if file.date < settled_before and file.rollup is not None and file.rollup_layout in _LAYOUTS:
            found.setdefault(file.rollup, []).append(file)
    return {key: named for key, named in found.items() if named[0].rollup_layout == ROLLUP_LAYOUT
            or sums_exactly(key, named[0].date, (file.key for file in named))}


def read_through_arrow(connection: duckdb.DuckDBPyConnection, store: ObjectStore, files: list[PublishedFile],
                        settled_before: date, rollups: bool) -> Scans:
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
    chosen = rolled_up(files, settled_before) if rollups else {}
    found = [(key, named, store.get(key)) for key, named in chosen.items()]
    read = [(named, _rollup_table(store, key, data)) for key, named, data in found if data is not None]
    if not read:
        return Scans([("usage_events", False)])
    rows = pa.concat_tables([table.append_column("date", pa.array([named[0].date] * table.num_rows, pa.date32()))
                             for named, table in read], promote_options="default")
    connection.register("usage_rollup_rows", rows)
    connection.execute(f"CREATE OR REPLACE VIEW {ROLLUPS} AS SELECT * FROM usage_rollup_rows")
    covered = {file.key for named, _ in read for file in named}
    rest = [file for file in files if file.key not in covered]
    if rest:
        define(UNROLLED_EVENTS, rest)
    return Scans([("usage_events", False)], [(UNROLLED_EVENTS, False)] if rest else [])


def _rollup_table(store: ObjectStore, key: str, data: bytes) -> pa.Table:
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read()  # read_table: its datasets cost as much again
    except pa.ArrowException as error:  # named, as DuckDB's reader names it
        raise pa.ArrowInvalid(f"{store.url}/{key}: {error}") from error


def read_local_files(connection: duckdb.DuckDBPyConnection, root: Path, files: list[PublishedFile],
                     settled_before: date, rollups: bool = False, events: bool = True) -> Scans | None:
    """Define `usage_events` as DuckDB's own scans of the committed files of a local store (they
    stream row groups: memory does not grow with the files): `usage_events_settled` over the
    files of days before `settled_before`, `usage_events_recent` over the others, and their
    union. Files written before the `gateway_timeout` column (their manifest's `layout` says)
    are scanned apart, the column made from their tags, so that the files that have it are read
    without the `tags` map. None, and nothing defined, when a path cannot be handed to DuckDB
    as exactly itself.

    `rollups`: when settled files have rollups of this version, also `usage_rollups` (ROLLUPS)
    over those, with each row's `date`, and `usage_events_unrolled` over the other settled files;
    then, unless `events`, neither `usage_events_settled` nor `usage_events` is defined (Scans.usage
    None): a scan reads the footer of every file as it is defined (2,976 files, a month of
    15-minute snapshots: 1.6 s), and a reader of the rollups alone never reads those events.

    DuckDB expands glob patterns in the paths it reads, so `*`, `?` and `[` are bracketed
    (`[*]` is a literal `*`); when the folder has any character a pattern may use, DuckDB's own
    `glob` must expand each path to that one file, or the caller reads them through Arrow. The
    `date` comes from the key (`usage/date=YYYY-MM-DD/...`), never from Hive partitions of the
    whole path, which would also parse `name=value` folders above the store."""
    patterns = local_patterns(connection, root, [file.key for file in files])
    if patterns is None:
        return None
    located = list(zip(patterns, files, strict=True))
    # A snapshot file holds the events of its UTC day (pipeline.stages.snapshot), so every
    # event of a file of a day before `settled_before` is older than that day.
    settled = [(pattern, file) for pattern, file in located if file.date < settled_before]
    recent = [(pattern, file) for pattern, file in located if file.date >= settled_before]
    chosen = [(SETTLED_EVENTS, settled), (RECENT_EVENTS, recent)]
    rolled = {key: named for key, named in rolled_up(files, settled_before).items() if (root / key).is_file()} \
        if rollups else {}
    rollup_patterns = local_patterns(connection, root, list(rolled)) if rolled else None
    if rollup_patterns is not None:
        scan = connection.read_parquet(rollup_patterns, filename=True)
        scan.project(f"* EXCLUDE ({_FILE_COLUMN}), {_DATE_OF_FILE} AS date").create_view(ROLLUPS)
        covered = {file.key for named in rolled.values() for file in named}
        chosen.append((UNROLLED_EVENTS, [item for item in settled if item[1].key not in covered]))
        if not events:
            chosen = [(name, some) for name, some in chosen if name != SETTLED_EVENTS]
    defined = {name for name, some in chosen if some}
    for name, some in chosen:
        if some:
            _define_scan(connection, name, some)
    usage: list[tuple[str, bool]] | None = None
    if rollup_patterns is None or events:
        usage = [(name, name == SETTLED_EVENTS) for name in (SETTLED_EVENTS, RECENT_EVENTS) if name in defined]
        connection.execute(f"CREATE OR REPLACE VIEW usage_events AS "
                           f"{' UNION ALL '.join(f'SELECT * FROM {name}' for name, _ in usage)}")
    if rollup_patterns is None:
        return Scans(usage)
    return Scans(usage, [(name, name == UNROLLED_EVENTS) for name in (UNROLLED_EVENTS, RECENT_EVENTS)
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
            columns = scan_columns(USAGE_SCHEMA, present)
            if not has_flag:
                derived = TIMEOUT_OF_TAGS if "tags" in present else "false"
                columns[USAGE_SCHEMA.get_field_index("gateway_timeout")] = f"{derived} AS gateway_timeout"
            scans.append(scan.project(", ".join([*columns, f"{_DATE_OF_FILE} AS date"])))
    functools.reduce(lambda one, other: one.union(other), scans).create_view(name)


def local_patterns(connection: duckdb.DuckDBPyConnection, root: Path, keys: list[str]) -> list[str] | None:
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


def scan_columns(schema: pa.Schema, present: set[str]) -> list[str]:
    """A scan's columns as the schema types them, NULL for a column its files do not have."""
    return [f'CAST("{f.name}" AS {_SQL_TYPES[f.type]}) AS "{f.name}"' if f.name in present
            else f'CAST(NULL AS {_SQL_TYPES[f.type]}) AS "{f.name}"' for f in schema]


_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.int16(): "SMALLINT",
              pa.int8(): "TINYINT", pa.bool_(): "BOOLEAN", pa.date32(): "DATE",
              pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
              pa.map_(pa.string(), pa.string()): "MAP(VARCHAR, VARCHAR)"}


def columns_sql(schema: pa.Schema) -> str:
    """`"name" TYPE, ...`: the DuckDB types Arrow's would become (KeyError for one not listed)."""
    return ", ".join(f'"{f.name}" {_SQL_TYPES[f.type]}' for f in schema)
