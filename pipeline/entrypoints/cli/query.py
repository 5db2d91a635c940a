"""`chargeback query SQL`: DuckDB over the snapshots, with the finance views."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from pipeline.entrypoints.cli.options import (
    capacity_options,
    catch_up,
    console,
    explain_no_usage,
    notices,
    reference_of,
    reference_options,
    user_errors,
)
from pipeline.lake.csv_files import csv_table_bytes
from pipeline.settings import Settings

# The views over the snapshots' events: a statement naming one over a store without a committed
# snapshot is told so (on stderr), not just handed empty rows. `llm_usage` is not one of them.
_READS_EVENTS = re.compile(r"\b(usage|costs|focus|allocations)\b", re.IGNORECASE)


@click.command("query", short_help="Run DuckDB SQL over the snapshots and the finance views.")
@click.argument("sql")
@click.option("--format", "output", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@reference_options
@capacity_options
@user_errors
def query_command(sql: str, output: str, prices: Path | None, deployments: Path | None,
                  cost_centers: Path | None, capacity: Path | None, ptu_weights: Path | None,
                  ptu_idle_owner: str | None) -> None:
    """Run DuckDB SQL over the snapshots: views `usage` (one row per event) and `costs`
    (one priced row per event, with cost, cost_center, month); `llm_usage` and
    `llm_usage_unmatched` (usage from APIM's LLM logs, and its records with no request event);
    `allocations` (provisioned capacity per deployment, day and cost center) and `focus` (the
    FOCUS 1.2 rows), built only when the statement names them.

    Example: chargeback query "SELECT cost_center, sum(cost) FROM costs GROUP BY ALL"
    """
    import msgspec
    from rich.table import Table

    from pipeline.app import focus_context, report_stores, warehouse_limits
    from pipeline.lake.pandas_probe import skip_pandas_probe
    from pipeline.lake.warehouse import open_warehouse, query_errors
    from pipeline.stages.correct import load_corrections
    from pipeline.stages.report.views import register_finance_views, wanted_views

    skip_pandas_probe()  # this process never hands pyarrow a pandas object
    settings = Settings.from_env()
    reference = reference_of(settings, prices, deployments, cost_centers, capacity, ptu_weights, ptu_idle_owner)
    catch_up(settings, notices)
    stores = report_stores(settings)
    corrections = load_corrections(stores.corrections)
    with query_errors():
        warehouse = open_warehouse(stores.snapshots, reference, corrections=corrections, llm_usage=stores.llm_usage,
                                   limits=warehouse_limits(settings))
        register_finance_views(warehouse, reference, corrections, wanted_views(sql), context=focus_context(settings))
        result = warehouse.connection.execute(sql)
        if result is None:
            raise click.ClickException("no SQL statement given")
        names = [column[0] for column in result.description or []]
        rows = result.fetchall()
    if not warehouse.files and _READS_EVENTS.search(sql):
        explain_no_usage(notices, stores.snapshots)
    if output == "csv":
        sys.stdout.write(csv_table_bytes(names, rows).decode("utf-8"))
    elif output == "json":
        sys.stdout.write(msgspec.json.encode([dict(zip(names, row, strict=True)) for row in rows]).decode())
        sys.stdout.write("\n")
    else:
        table = Table(*names)
        for row in rows:
            table.add_row(*("" if value is None else str(value) for value in row))
        console.print(table)
