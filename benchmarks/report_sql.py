"""The hand-written DuckDB query that `make bench` holds the report against: a month's totals
per cost center, subscription, model, deployment type and currency, priced from the catalog, over
the snapshot files the manifests commit. Only duckdb and the standard library are imported, so
that as a whole process (`python -m benchmarks.report_sql`) it pays what a user's own script
would: the interpreter, `import duckdb`, the query.

    python -m benchmarks.report_sql SNAPSHOTS --month 2026-10 --deployments F --cost-centers F
        --prices F --rows-out rows.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

BASELINE_SQL = r"""
WITH groups AS (
  SELECT date, subscription_id, cost_center AS cost_center_sent, deployment, model AS model_sent,
         CASE WHEN prompt_tokens IS NOT NULL THEN 'measured'
              WHEN usage_source = 'stream' THEN 'pending' ELSE 'none' END AS state,
         count(*) AS requests, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
         coalesce(sum(cached_tokens), 0) AS cached_tokens, coalesce(sum(completion_tokens), 0) AS completion_tokens
  FROM read_parquet($files, hive_partitioning = true, hive_types = {'date': 'DATE'})
  WHERE date >= $start AND date < $end
  GROUP BY ALL
), resolved AS (
  SELECT g.*, coalesce(m.cost_center, nullif(trim(g.cost_center_sent), ''), 'unassigned') AS cost_center,
         coalesce(g.model_sent, nullif(d.model, '')) AS model, d.deployment_type,
         lower(replace(coalesce(d.region, ''), ' ', '')) AS region_key
  FROM groups g
  LEFT JOIN read_csv($deployments, header = true, all_varchar = true) d ON d.deployment = g.deployment
  LEFT JOIN read_csv($cost_centers, header = true, types = {'effective_from': 'DATE', 'effective_to': 'DATE'}) m
    ON m.subscription_id = g.subscription_id AND g.date >= coalesce(m.effective_from, DATE '0001-01-01')
   AND (m.effective_to IS NULL OR g.date < m.effective_to)
), prices AS (
  SELECT model, lower(replace(deployment_type, ' ', '')) AS type_key, lower(replace(region, ' ', '')) AS region_key,
         effective_from, effective_to, currency, input_per_1m,
         coalesce(cached_input_per_1m, input_per_1m) AS cached_input_per_1m, output_per_1m
  FROM read_csv($prices, header = true, comment = '#', types = {
    'effective_from': 'DATE', 'effective_to': 'DATE', 'input_per_1m': 'DECIMAL(18,6)',
    'cached_input_per_1m': 'DECIMAL(18,6)', 'output_per_1m': 'DECIMAL(18,6)'})
), priced AS (
  SELECT r.*, p.currency, p.input_per_1m, p.cached_input_per_1m, p.output_per_1m
  FROM resolved r LEFT JOIN prices p
    ON r.state = 'measured' AND p.model IN (r.model, regexp_replace(r.model, '-\d{4}-\d{2}-\d{2}$', ''))
   AND p.type_key = lower(replace(r.deployment_type, ' ', ''))
   AND p.region_key IN (r.region_key, '*')
   AND r.date >= p.effective_from AND (p.effective_to IS NULL OR r.date < p.effective_to)
  QUALIFY row_number() OVER (
    PARTITION BY r.date, r.subscription_id, r.cost_center_sent, r.deployment, r.model_sent, r.state
    ORDER BY p.model = r.model DESC, p.region_key = r.region_key DESC) = 1
)
SELECT cost_center, subscription_id, coalesce(model, '') AS model, coalesce(deployment_type, '') AS deployment_type,
       coalesce(currency, '') AS currency, sum(requests)::BIGINT AS requests,
       sum(prompt_tokens)::BIGINT AS prompt_tokens, sum(cached_tokens)::BIGINT AS cached_tokens,
       sum(completion_tokens)::BIGINT AS completion_tokens,
       sum((prompt_tokens - cached_tokens)::DECIMAL(38, 0) * input_per_1m
           + cached_tokens::DECIMAL(38, 0) * cached_input_per_1m
           + completion_tokens::DECIMAL(38, 0) * output_per_1m) * 0.000001::DECIMAL(7, 6) AS cost
FROM priced
GROUP BY ALL
ORDER BY ALL
"""


def month_bounds(month: str) -> tuple[date, date]:
    year, number = (int(part) for part in month.split("-"))
    return date(year, number, 1), date(year + number // 12, number % 12 + 1, 1)


def month_rows(root: Path, month: str, deployments: Path, cost_centers: Path, prices: Path) -> list[list[Any]]:
    """The month's rows: the 5 key columns, requests, 3 token counts, the cost as exact text (or None)."""
    import duckdb

    start, end = month_bounds(month)
    keys = [item["key"] for path in sorted((root / "_manifests").glob("*.json"))
            for item in json.loads(path.read_bytes())["files"] if start.isoformat() <= item["date"] < end.isoformat()]
    connection = duckdb.connect()
    rows = connection.execute(BASELINE_SQL, {
        "files": [str(root / key) for key in keys], "start": start, "end": end, "deployments": str(deployments),
        "cost_centers": str(cost_centers), "prices": str(prices)}).fetchall()
    return [[*row[:9], None if row[9] is None else str(row[9])] for row in rows]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_sql", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshots", type=Path, help="the snapshots folder (its _manifests/ and usage/)")
    parser.add_argument("--month", required=True)
    for name in ("deployments", "cost-centers", "prices", "rows-out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = month_rows(args.snapshots, args.month, args.deployments, args.cost_centers, args.prices)
    args.rows_out.write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
