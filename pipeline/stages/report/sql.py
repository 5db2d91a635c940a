"""The report's SQL over the warehouse's `usage` view (pipeline.lake.warehouse): the period's
usage per day, key and origin in a temp table, then summed per key and reference period."""

from __future__ import annotations

from datetime import date

from pipeline.lake.views import KEY_COLUMNS, NOT_VOIDED, PERIOD_OF_DATE, SUMMED, USAGE_SUMS

_KEY = KEY_COLUMNS
_SUMS = USAGE_SUMS
# Where the numbers came from (`usage.usage_origin`) is grouped by and summed afterwards: a
# FILTER per origin costs the SQL more. Without LLM usage joined, the origin is the event's
# usageSource when it carried usage (else `none`), so the plain column is grouped by (the
# view's CASE for `usage_origin`, per event, costs the SQL a third more).
ORIGINS = ("response", "stream", "estimated", "llm-log", "none")


def groups_sql(llm_usage: bool) -> str:
    """The period's usage per day, key and origin, kept in the `report_groups` table; with LLM
    usage joined, also by whether its cached tokens are unknown and whether its log record names
    another deployment or model (CACHED_UNKNOWN_SQL and LLM_MISMATCH_SQL read them from there,
    not from a scan and join of their own: 0.25 s of a report of 1M events, 30% streamed)."""
    origin, flags = ("u.usage_origin", ", u.cached_tokens_unknown, u.llm_mismatch") if llm_usage else (
        "u.usage_source", "")
    return (f"CREATE OR REPLACE TEMP TABLE report_groups AS SELECT {_KEY}, {_SUMS}, {origin} AS origin{flags} "
            f"FROM usage u WHERE u.date >= ? AND u.date < ? AND {NOT_VOIDED} GROUP BY ALL")


# `report_groups` as groups_sql(False) makes it, from the rollups of the settled files that have
# one (pipeline.lake.rollups) and the events of every other file, for a report that joins no LLM
# usage and voids nothing. A day of several files has a key's sums once per file: every reader
# of `report_groups` sums its rows (summing them here first cost a report of 1M events 60 ms).
# A view, not a table: its two readers scan the rollups in less time than a table takes to fill
# (9 against 25-30 ms at 1M events). A view takes no parameters: `{start}` and `{end}` are DATE
# literals of the period's days (dates, never text from a user).
_ROLLED_KEY = _KEY.replace("u.", "")
ROLLED_GROUPS_SQL = (
    f"CREATE OR REPLACE TEMP VIEW report_groups AS SELECT {_ROLLED_KEY}, {', '.join(SUMMED)}, origin "
    "FROM usage_rollups WHERE date >= {start} AND date < {end} "
    f"UNION ALL SELECT {_KEY}, {_SUMS}, u.usage_source AS origin FROM usage_unrolled u "
    "WHERE u.date >= {start} AND u.date < {end} GROUP BY ALL")


def rolled_groups_sql(start: date, end: date) -> str:
    """ROLLED_GROUPS_SQL for the days in [start, end)."""
    return ROLLED_GROUPS_SQL.format(start=f"DATE '{start.isoformat()}'", end=f"DATE '{end.isoformat()}'")


_GROUP_KEY = "subscription_id, cost_center, deployment, model, usage_state, billing_tier, spilled, audio_classes"
_SUMMED = SUMMED
_TOTALS = ", ".join(f"sum({column})::BIGINT AS {column}" for column in _SUMMED)
# The period's usage per day and key in `report_days`, each with the number of its period: a key
# over a month's days between two reference boundaries (the boundaries of the period's days, a
# parameter). A key resolves alike on all the days of a period, so it is resolved once per
# period (PERIODS_SQL, from its first day, in period order) and each day takes its period's.
# The periods are numbered over their distinct keys, then joined to the days: a window over every
# day row (dense_rank) costs the SQL half as much again at 140k day rows.
_SAME_KEY = " AND ".join(f"d.{column} IS NOT DISTINCT FROM p.{column}" for column in _GROUP_KEY.split(", "))
REPORT_DAYS_SQL = (
    "CREATE OR REPLACE TEMP TABLE report_days AS "
    f"WITH d AS (SELECT date, {_GROUP_KEY}, {_TOTALS}, date_trunc('month', date) AS month, "
    f"{PERIOD_OF_DATE} AS bucket "
    f"FROM report_groups GROUP BY date, {_GROUP_KEY}), "
    f"p AS (SELECT *, (row_number() OVER (ORDER BY month, bucket, {_GROUP_KEY}) - 1)::INTEGER AS period "
    f"FROM (SELECT DISTINCT month, bucket, {_GROUP_KEY} FROM d)) "
    f"SELECT d.* EXCLUDE (month, bucket), p.period FROM d JOIN p ON d.month = p.month AND d.bucket = p.bucket "
    f"AND {_SAME_KEY}")
PERIODS_SQL = (f"SELECT min(date), {_GROUP_KEY}, {', '.join(f'sum({c})::BIGINT' for c in _SUMMED)} "
               f"FROM report_days GROUP BY period, {_GROUP_KEY} ORDER BY period")
DAYS_SQL = f"SELECT date, {_GROUP_KEY}, {', '.join(_SUMMED)}, period FROM report_days ORDER BY date, {_GROUP_KEY}"
ORIGINS_SQL = "SELECT usage_state, origin, sum(requests)::BIGINT FROM report_groups GROUP BY ALL ORDER BY ALL"


VOIDED_SQL = (f"SELECT {_KEY}, v.correction, count(*) FROM usage u JOIN voided_events v ON v.event_id = u.event_id "
              "WHERE u.date >= ? AND u.date < ? GROUP BY ALL ORDER BY ALL")
# LLM-log usage of the month whose request event never arrived: no caller to charge, so only counted.
UNMATCHED_SQL = "SELECT count(*) FROM llm_usage_unmatched WHERE time >= ? AND time < ?"
# From `report_groups` made with LLM usage joined: the usage priced from LLM-log records that
# carry no cached-token count, per day and key (requests and prompt tokens, whose cached share is
# unknown), and the streamed requests whose LLM-log record names another deployment or model.
CACHED_UNKNOWN_SQL = (f"SELECT {_KEY.replace('u.', '')}, sum(requests)::BIGINT, sum(prompt_tokens)::BIGINT "
                      "FROM report_groups WHERE cached_tokens_unknown GROUP BY ALL ORDER BY ALL")
LLM_MISMATCH_SQL = "SELECT coalesce(sum(requests), 0)::BIGINT FROM report_groups WHERE llm_mismatch"
