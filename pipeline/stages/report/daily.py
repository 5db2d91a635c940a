"""The `-daily.csv` rows: the report's rows day by day (the bucket is the day).

A key resolves alike on every day of its period (pipeline.stages.report.build), so the day rows
need no resolution of their own: each period names its row (cost center, subscription, model,
deployment type, currency, catalog, charge class, tier, spillover) and its price, and DuckDB sums
the days' usage per day, row and price over the report's day table (`DayGroups.days`, Arrow)
in one query. Python then prices each sum once (`Price.cost`, the one pricing code) and makes
the row: about one Python step per row instead of the ten per day and key of `report_rows`.

A report with provisioned (PTU) capacity or usage in its period, or usage of unknown cached share, takes
`report_rows` over the day usage instead: the allocated capacity and the marks come from Python
objects anyway. Both ways give the same rows (tests/test_report_daily.py holds them equal).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pipeline.domain.pricing import Price, money_sum
from pipeline.stages.report.model import DayGroups, Report, ReportRow
from pipeline.stages.report.rows import RowKey, report_rows, row_key

# Per day, row and price: the days' sums. `row_number` and `price` come from the period (a
# parameter list each, indexed by period): a row number in row order, and a price number (-1: none).
_SUMS_SQL = """
WITH periods AS (
  SELECT unnest($rows) AS row_number, unnest($prices) AS price, generate_subscripts($rows, 1) - 1 AS period
)
SELECT d.date::VARCHAR, p.row_number, p.price, sum(d.requests)::BIGINT, sum(d.prompt_tokens)::BIGINT,
       sum(d.cached_tokens)::BIGINT, sum(d.completion_tokens)::BIGINT, sum(d.audio_prompt_tokens)::BIGINT,
       sum(d.audio_completion_tokens)::BIGINT
FROM days d JOIN periods p ON p.period = d.period
GROUP BY d.date, p.row_number, p.price
ORDER BY d.date, p.row_number, p.price
"""


def daily_rows(report: Report) -> list[ReportRow]:
    """The report's rows per UTC day (`month` holds the day), in row order, without true-ups
    (pipeline.stages.report.rows.with_true_ups adds them)."""
    groups = report.day_groups
    if (groups is None or report.deployment_days or report.cached_unknown
            or any(item.resolution.provisioned for item in groups.usage)):
        return report_rows(report.day_usage(), report.deployment_days, bucket=date.isoformat,
                           unknown=report.cached_unknown)
    return summed_daily_rows(groups)


def summed_daily_rows(groups: DayGroups) -> list[ReportRow]:
    """The day rows of pay-as-you-go usage (no provisioned usage, whose rows cost 0 and take the
    allocated capacity; no usage of unknown cached share), summed in DuckDB and priced here: the
    rows `report_rows` gives for the same day usage."""
    import duckdb

    keys: list[RowKey] = [row_key("", item.subscription_id, item.resolution) for item in groups.usage]
    order = {key: number for number, key in enumerate(sorted(set(keys)))}
    by_number = sorted(order, key=order.__getitem__)
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
    connection = duckdb.connect()
    try:
        connection.register("days", groups.days)
        sums = connection.execute(_SUMS_SQL, {
            "rows": [order[key] for key in keys], "prices": price_numbers}).fetchall()
    finally:
        connection.close()
    rows: list[ReportRow] = []
    costs: list[Decimal] = []
    row: ReportRow | None = None
    at: tuple[str, int] | None = None
    for day, number, price, requests, prompt, cached, completion, audio_prompt, audio_completion in sums:
        if (day, number) != at:
            if row is not None:
                row.cost = money_sum(costs) if costs else None
            at, costs = (day, number), []
            row = ReportRow(day, *by_number[number][1:])
            rows.append(row)
        assert row is not None
        row.requests += requests
        row.prompt_tokens += prompt
        row.cached_tokens += cached
        row.completion_tokens += completion
        row.audio_prompt_tokens += audio_prompt
        row.audio_completion_tokens += audio_completion
        if price >= 0:
            costs.append(prices[price].cost(prompt, cached, completion, audio_prompt, audio_completion))
    if row is not None:
        row.cost = money_sum(costs) if costs else None  # unpriced: no cost
    return rows
