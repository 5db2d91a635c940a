"""`-daily.csv`: the report's rows day by day (the bucket is the day).

A key resolves alike on every day of its period (pipeline.stages.report.build), so the day rows
need no resolution of their own: each period names its row (cost center, subscription, model,
deployment type, currency, catalog, charge class, tier, spillover) and its price. For a report of
pay-as-you-go usage, DuckDB then makes the whole file from the report's day table
(`DayGroups.days`, Arrow) in one query: it sums the usage per day, row and price, prices each sum
from the catalog's exact decimals (DECIMAL arithmetic, which raises rather than rounds; a price
has at most 6 decimals), and writes the lines. Python renders only each row's own cells, once per
row (`csv_cells` and the csv module, as every other report line), not once per day.

A report with provisioned (PTU) capacity or usage, usage of unknown cached share or true-ups, or
a price too large for DECIMAL(18, 6), is rendered from `report_rows` over the day usage instead.
Both ways give the same bytes (tests/test_report_daily.py holds them equal).

`DailyAhead` makes the file in a thread of its own, for a caller with other work to do
meanwhile: DuckDB's query runs without the GIL (the CLI prints the report's tables meanwhile).
"""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

from pipeline.domain.pricing import Price
from pipeline.lake.arrow_text import joined_bytes
from pipeline.lake.csv_files import csv_line, csv_lines, csv_table_bytes
from pipeline.stages.report.model import DAILY_COLUMNS, REPORT_COLUMNS, DayGroups, Report, ReportRow, csv_cells
from pipeline.stages.report.rows import RowKey, report_rows, row_key, with_true_ups

# The columns a row's key sets (its cells are rendered in Python, once per row) ...
_KEY_COLUMNS = frozenset({"cost_center", "subscription_id", "model", "deployment_type", "currency",
                          "catalog_version", "charge_class", "service_tier", "spillover"})
# ... and the others, as SQL text over `r` (a row's day sums and cost): a row of pay-as-you-go
# usage has no PTU cost, no usage of unknown cached share and no true-up, and its total is its cost.
_VALUES = {
    "month": "r.date::VARCHAR", "requests": "r.requests::VARCHAR", "prompt_tokens": "r.prompt_tokens::VARCHAR",
    "cached_tokens": "r.cached_tokens::VARCHAR", "completion_tokens": "r.completion_tokens::VARCHAR",
    "cost": "r.cost", "ptu_cost": "''", "total_cost": "r.cost", "cached_unknown_requests": "'0'",
    "cached_unknown_max_overcharge": "''", "audio_prompt_tokens": "r.audio_prompt_tokens::VARCHAR",
    "audio_completion_tokens": "r.audio_completion_tokens::VARCHAR", "true_up_cost": "''",
}
_LARGEST_PRICE = Decimal(10) ** 12  # DECIMAL(18, 6): 12 digits before the point
_SUMMED = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "audio_prompt_tokens",
           "audio_completion_tokens")


def _runs() -> list[tuple[bool, list[str]]]:
    """REPORT_COLUMNS as runs of key columns and of SQL-valued ones, in order."""
    runs: list[tuple[bool, list[str]]] = []
    for column in REPORT_COLUMNS:
        is_key = column in _KEY_COLUMNS
        if runs and runs[-1][0] == is_key:
            runs[-1][1].append(column)
        else:
            runs.append((is_key, [column]))
    return runs


_RUNS = _runs()
_KEY_RUNS = [columns for is_key, columns in _RUNS if is_key]


def _line_sql() -> str:
    """A day row's CSV line: each run of key columns is the row's text `k.key_N` (a parameter
    list `$key_N` by row number), each other column its SQL."""
    parts, keys = [], 0
    for is_key, columns in _RUNS:
        if is_key:
            parts.append(f"k.key_{keys}")
            keys += 1
        else:
            parts.extend(_VALUES[column] for column in columns)
    return f"concat_ws(',', {', '.join(parts)})"  # no part is NULL


_PRICE_COLUMNS = ("input", "cached_input", "output", "audio_input", "audio_output")
# Per day, row and price, the days' sums; priced (NULL for no price); per day and row, the sum of
# its prices' costs as exact text (no trailing zeros, '' for no price); then the lines, in row order.
_DAILY_SQL = f"""
WITH periods AS (
  SELECT unnest($rows) AS row_number, unnest($prices) AS price, generate_subscripts($rows, 1) - 1 AS period
), prices AS (
  SELECT {', '.join(f'unnest(${c})::DECIMAL(18, 6) AS {c}' for c in _PRICE_COLUMNS)},
         generate_subscripts($input, 1) - 1 AS price
), sums AS (
  SELECT d.date, p.row_number, p.price, {', '.join(f'sum(d.{c})::BIGINT AS {c}' for c in _SUMMED)}
  FROM days d JOIN periods p ON p.period = d.period
  GROUP BY d.date, p.row_number, p.price
), priced AS (
  SELECT s.*, CASE WHEN s.price >= 0 THEN
           (s.prompt_tokens - s.cached_tokens - s.audio_prompt_tokens)::DECIMAL(38, 0) * c.input
         + s.cached_tokens::DECIMAL(38, 0) * c.cached_input
         + (s.completion_tokens - s.audio_completion_tokens)::DECIMAL(38, 0) * c.output
         + CASE WHEN s.audio_prompt_tokens = 0 THEN 0
                WHEN c.audio_input IS NULL THEN error('audio prompt tokens priced without an audio price')
                ELSE s.audio_prompt_tokens::DECIMAL(38, 0) * c.audio_input END
         + CASE WHEN s.audio_completion_tokens = 0 THEN 0
                WHEN c.audio_output IS NULL THEN error('audio completion tokens priced without an audio price')
                ELSE s.audio_completion_tokens::DECIMAL(38, 0) * c.audio_output END END
         AS units
  FROM sums s LEFT JOIN prices c ON c.price = s.price
), keys AS (
  SELECT {', '.join(f'unnest($key_{n}) AS key_{n}' for n in range(len(_KEY_RUNS)))},
         generate_subscripts($key_0, 1) - 1 AS row_number
), r AS (
  SELECT date, row_number, {', '.join(f'sum({c})::BIGINT AS {c}' for c in _SUMMED)},
         coalesce(rtrim(rtrim((sum(units) * 0.000001::DECIMAL(7, 6))::VARCHAR, '0'), '.'), '') AS cost
  FROM priced GROUP BY date, row_number
)
SELECT {_line_sql()} || chr(10) AS line
FROM r JOIN keys k ON k.row_number = r.row_number
ORDER BY r.date, r.row_number
"""


def daily_csv(report: Report) -> bytes:
    """The `-daily.csv` file of the report: its rows per UTC day (`date`), in row order, with
    the true-ups."""
    groups = report.day_groups
    if (groups is not None and not report.deployment_days and not report.cached_unknown and not report.true_ups
            and not any(item.resolution.provisioned for item in groups.usage)):
        made = summed_daily_csv(groups)
        if made is not None:
            return made
    daily = report_rows(report.day_usage(), report.deployment_days, bucket=date.isoformat,
                        unknown=report.cached_unknown)
    return csv_table_bytes(DAILY_COLUMNS, map(csv_cells, with_true_ups(daily, report.true_ups, date.isoformat)))


class DailyAhead:
    """`daily_csv(report)` begun in a thread of its own; `result()` waits for its bytes (and raises
    what making them raised). Begin it only once the report is final: a report changed afterwards
    (true-ups applied) would be rendered as it was. A bare thread, not concurrent.futures: that
    imports logging, 14 ms of a report's start."""

    def __init__(self, report: Report) -> None:
        self._made: bytes | BaseException | None = None
        self._thread = threading.Thread(target=self._make, args=(report,), name="daily-csv")
        self._thread.start()

    def _make(self, report: Report) -> None:
        try:
            self._made = daily_csv(report)
        except BaseException as error:  # handed to the caller of result(), as if made there
            self._made = error

    def result(self) -> bytes:
        self._thread.join()
        made = self._made
        if isinstance(made, BaseException):
            raise made
        assert made is not None
        return made


def summed_daily_csv(groups: DayGroups) -> bytes | None:
    """The day rows of pay-as-you-go usage made by DuckDB (no provisioned usage, whose rows cost 0
    and take the allocated capacity; no usage of unknown cached share); None when a price does
    not fit DECIMAL(18, 6) or a cost does not fit DECIMAL(38, 12) (report_rows makes them then)."""
    header = f"{csv_line(DAILY_COLUMNS)}\n".encode()
    if not groups.days.num_rows:  # no usage: the header alone, without a DuckDB connection (20 ms)
        return header
    import duckdb

    keys: list[RowKey] = [row_key("", item.subscription_id, item.resolution) for item in groups.usage]
    order = {key: number for number, key in enumerate(sorted(set(keys)))}
    prices: list[Price] = []
    numbers: dict[int, int] = {}
    price_numbers = []
    for item in groups.usage:
        price = item.resolution.price
        if price is None:
            price_numbers.append(-1)
            continue
        number = numbers.get(id(price))
        if number is None:
            number = numbers[id(price)] = len(prices)
            prices.append(price)
        price_numbers.append(number)
    rates = {column: [getattr(price, f"{column}_per_1m") for price in prices] for column in _PRICE_COLUMNS}
    if any(rate is not None and abs(rate) >= _LARGEST_PRICE for column in rates.values() for rate in column):
        return None
    cells = [csv_cells(ReportRow(*key)) for key in sorted(order, key=order.__getitem__)]
    parameters: dict[str, object] = {"rows": [order[key] for key in keys], "prices": price_numbers}
    parameters.update({column: [_text(rate) for rate in column_rates] for column, column_rates in rates.items()})
    for number, columns in enumerate(_KEY_RUNS):
        at = [REPORT_COLUMNS.index(column) for column in columns]
        parameters[f"key_{number}"] = csv_lines([row[i] for i in at] for row in cells)
    connection = groups.database.cursor() if groups.database is not None else duckdb.connect()
    try:
        connection.register("days", groups.days)
        lines = connection.sql(_DAILY_SQL, params=parameters).to_arrow_table().column("line")
    except duckdb.OutOfRangeException:  # a cost beyond DECIMAL(38, 12)
        return None
    finally:
        connection.close()
    return b"".join([header, joined_bytes(lines)])


def _text(rate: Decimal | None) -> str | None:
    """A rate as exact text, for DuckDB to read as DECIMAL(18, 6)."""
    return None if rate is None else str(rate)
