"""The pricing keys of the `costs` view: each distinct (day, subscription, cost center sent,
deployment, model sent, usage state, tier, spillover, audio classes) of the usage with its
resolution (pipeline.domain.costing, with the corrections applied): resolved in Python once per
key and reference period, handed to DuckDB as small Arrow tables, and given to each day there.
Money stays DECIMAL(38,12): prices per token have at most 12 decimals, so no rounding."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pyarrow as pa

from pipeline.domain.corrections import NO_CORRECTIONS, Corrections
from pipeline.domain.costing import Reference, Resolution, UsageKey, UsageState, names_day
from pipeline.domain.pricing import MONEY, TOKENS_PER_UNIT
from pipeline.lake.views import PERIOD_OF_DATE

PER_TOKEN = pa.decimal128(38, 12)
PAY_AS_YOU_GO, PROVISIONED = "pay-as-you-go", "provisioned"  # `costs.pricing`
RESOLUTION_SCHEMA = pa.schema([
    ("date", pa.date32()), ("subscription_id", pa.string()), ("cost_center_sent", pa.string()),
    ("deployment", pa.string()), ("model_sent", pa.string()), ("state", pa.string()),
    ("billing_tier", pa.string()), ("spilled", pa.bool_()), ("audio_classes", pa.int32()),
    ("cost_center", pa.string()), ("model", pa.string()), ("deployment_type", pa.string()),
    ("currency", pa.string()), ("input_per_token", PER_TOKEN), ("cached_input_per_token", PER_TOKEN),
    ("output_per_token", PER_TOKEN), ("catalog_version", pa.string()), ("unpriced_reason", pa.string()),
    ("unpriced_detail", pa.string()), ("charge_class", pa.string()), ("pricing", pa.string()),
    ("audio_input_per_token", PER_TOKEN), ("audio_output_per_token", PER_TOKEN),
])


_STATES = {state.value: state for state in UsageState}  # a dict lookup: calling the enum costs more


KEY_WIDTH = 9  # the columns of pipeline.lake.views.KEY_COLUMNS


def usage_key(row: tuple[object, ...]) -> UsageKey:
    """The key of a KEY_COLUMNS row (date, subscription, cost center sent, deployment, model sent,
    usage state, billing tier, spilled, audio classes)."""
    day, subscription, cost_center, deployment, model, state, tier, spilled, audio = row
    return UsageKey(day, subscription, cost_center, deployment, model, _STATES[state],  # type: ignore[arg-type, index]
                    tier, spilled, audio)  # type: ignore[arg-type]


_KEY_NAMES = RESOLUTION_SCHEMA.names[:KEY_WIDTH]  # the key's columns, as the keys' rows hold them
_RESOLVED_FIELDS = list(RESOLUTION_SCHEMA)[KEY_WIDTH:]


def register_pricing_keys(connection: duckdb.DuckDBPyConnection, reference: Reference,
                          corrections: Corrections | None = None) -> None:
    """Make the `pricing_keys` table the `costs` view joins: each distinct day key of `usage`
    (KEY_COLUMNS) with its resolution's columns (RESOLUTION_SCHEMA).

    A key resolves alike on every day between two boundaries (Corrections.boundaries: prices,
    cost-center rows, capacity, corrections), so it is resolved once per such period, from its
    first day, and DuckDB gives each day its period's columns; a resolution whose detail names
    the day (no price, no capacity) is made for each of its days. 5,000 subscriptions: 277,000
    day keys, 53,000 periods. A resolution is shared by the keys it covers, so its columns are
    made once per resolution."""
    corrections = corrections or NO_CORRECTIONS
    connection.execute(_DAY_KEYS_SQL, [sorted(corrections.boundaries(reference))])
    connection.execute(_PERIODS_SQL)
    connection.execute(_NUMBERED_DAYS_SQL)
    made: dict[int, tuple[Resolution, tuple[object, ...]]] = {}

    def cells(key: tuple[object, ...]) -> tuple[object, ...] | None:
        resolved = corrections.resolve(reference, usage_key(key))
        if names_day(resolved):
            return None
        kept = made.get(id(resolved))
        if kept is None:
            made[id(resolved)] = kept = (resolved, _resolved_cells(resolved))  # holds it: its id stays its
        return kept[1]

    periods: tuple[list[int], list[tuple[object, ...]]] = ([], [])
    days: tuple[list[int], list[tuple[object, ...]]] = ([], [])
    each_day = []
    for period, *key in connection.execute(_PERIOD_ROWS_SQL).fetchall():
        period_cells = cells(tuple(key))
        if period_cells is None:
            each_day.append(period)
        else:
            periods[0].append(period)
            periods[1].append(period_cells)
    if each_day:
        for number, *key in connection.execute(_DAY_ROWS_SQL, [each_day]).fetchall():
            days[0].append(number)
            days[1].append(_resolved_cells(corrections.resolve(reference, usage_key(tuple(key)))))
    connection.register("pricing_period_resolutions", _numbered("period", *periods))
    connection.register("pricing_day_resolutions", _numbered("day_key", *days))
    try:
        connection.execute(_PRICING_KEYS_SQL)
    finally:
        for name in ("pricing_period_resolutions", "pricing_day_resolutions"):
            connection.unregister(name)
        connection.execute("DROP TABLE pricing_day_keys; DROP TABLE pricing_periods; DROP TABLE pricing_numbered_days")


def _numbered(number: str, numbers: list[int], resolved_rows: list[tuple[object, ...]]) -> pa.Table:
    """The resolutions' columns (RESOLUTION_SCHEMA after the key) after a number column."""
    columns = zip(*resolved_rows, strict=True) if resolved_rows else [()] * len(_RESOLVED_FIELDS)
    return pa.Table.from_arrays(
        [pa.array(numbers, pa.int64()), *(pa.array(list(column), field.type)
                                          for column, field in zip(columns, _RESOLVED_FIELDS, strict=True))],
        schema=pa.schema([(number, pa.int64()), *_RESOLVED_FIELDS]))


# The key's columns but the day, as RESOLUTION_SCHEMA names them; the last three are never NULL.
_REST = ("subscription_id", "cost_center_sent", "deployment", "model_sent", "state", "billing_tier", "spilled",
         "audio_classes")
_REST_LIST = ", ".join(_REST)
_SAME_REST = " AND ".join(f"d.{column} IS NOT DISTINCT FROM p.{column}" for column in _REST)
# The distinct day keys, each with its bucket: the number of boundaries (a parameter) on or before its day.
_DAY_KEYS_SQL = (
    "CREATE OR REPLACE TEMP TABLE pricing_day_keys AS "
    f"SELECT *, {PERIOD_OF_DATE} AS bucket FROM ("
    "SELECT DISTINCT u.date, u.subscription_id, u.cost_center AS cost_center_sent, u.deployment, "
    "u.model AS model_sent, u.usage_state AS state, u.billing_tier, u.spilled, u.audio_classes FROM usage u)")
# A key over one bucket's days is a period: numbered, with its first day.
_PERIODS_SQL = (
    "CREATE OR REPLACE TEMP TABLE pricing_periods AS "
    f"SELECT (row_number() OVER () - 1) AS period, first_day, bucket, {_REST_LIST} FROM ("
    f"SELECT min(date) AS first_day, bucket, {_REST_LIST} FROM pricing_day_keys GROUP BY bucket, {_REST_LIST})")
_NUMBERED_DAYS_SQL = (
    "CREATE OR REPLACE TEMP TABLE pricing_numbered_days AS "
    "SELECT d.* EXCLUDE (bucket), p.period, (row_number() OVER () - 1) AS day_key FROM pricing_day_keys d "
    f"JOIN pricing_periods p ON p.bucket = d.bucket AND {_SAME_REST}")
_PERIOD_ROWS_SQL = f"SELECT period, first_day, {_REST_LIST} FROM pricing_periods"
_DAY_ROWS_SQL = (f"SELECT day_key, date, {_REST_LIST} FROM pricing_numbered_days "
                 "WHERE period IN (SELECT unnest(?::BIGINT[]))")
_KEY_LIST = ", ".join(f"d.{name}" for name in _KEY_NAMES)
_PRICING_KEYS_SQL = (
    "CREATE OR REPLACE TEMP TABLE pricing_keys AS "
    f"SELECT {_KEY_LIST}, r.* EXCLUDE (period) FROM pricing_numbered_days d "
    "JOIN pricing_period_resolutions r ON r.period = d.period "
    f"UNION ALL SELECT {_KEY_LIST}, r.* EXCLUDE (day_key) FROM pricing_numbered_days d "
    "JOIN pricing_day_resolutions r ON r.day_key = d.day_key")


def _resolved_cells(resolved: Resolution) -> tuple[object, ...]:
    """The resolution's columns of RESOLUTION_SCHEMA (after the key's), in its order."""
    price = resolved.price
    zero = Decimal(0) if resolved.provisioned else None
    return (
        resolved.cost_center, resolved.model, resolved.deployment_type, resolved.currency or None,
        # provisioned (PTU) usage costs 0 per token: its capacity is in the `allocations` view
        _per_token(price.input_per_1m) if price else zero,
        _per_token(price.cached_input_per_1m) if price else zero,
        _per_token(price.output_per_1m) if price else zero,
        resolved.catalog_version or None,
        resolved.unpriced.value if resolved.unpriced else None,
        resolved.detail or None,
        resolved.charge_class or None,
        PROVISIONED if resolved.provisioned else PAY_AS_YOU_GO if price else None,
        _audio(price.audio_input_per_1m) if price else zero,
        _audio(price.audio_output_per_1m) if price else zero,
    )


def _audio(per_1m: Decimal | None) -> Decimal | None:
    return None if per_1m is None else _per_token(per_1m)


def _per_token(per_1m: Decimal) -> Decimal:
    return MONEY.divide(per_1m, TOKENS_PER_UNIT)
