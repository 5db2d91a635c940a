"""The `chargeback` command. Each command parses its arguments and calls one stage; user
mistakes become one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import csv
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import msgspec
from rich.progress import Progress
from rich.table import Table

from pipeline import demo_traffic
from pipeline.bootstrap import (
    LLM_USAGE,
    SNAPSHOTS,
    monthly_report,
    open_budgets,
    open_counters,
    open_store,
    period_report,
)
from pipeline.cli_support import (
    capacity_options,
    catch_up,
    console,
    load_reference_files,
    notices,
    pipeline,
    reference_options,
    user_errors,
)
from pipeline.domain.decode import RawMessage
from pipeline.finance_views import register_finance_views, wanted_views
from pipeline.presentation import LiveUsage, show_ingest, show_report, show_snapshot, show_usage
from pipeline.settings import Settings
from pipeline.sources import json_lines
from pipeline.stages.correct import CORRECTIONS, load_corrections
from pipeline.stages.ingest import IngestResult, ingest
from pipeline.stages.report import DEFAULT_FORMATS, FORMATS, check_month, choose_period, write_report
from pipeline.stages.snapshot import snapshot
from pipeline.warehouse import open_warehouse


@click.group()
@click.version_option(package_name="apim-openai-chargeback")
def main() -> None:
    """Chargeback for Azure OpenAI traffic through Azure API Management.

    Data lives under $CHARGEBACK_HOME (default ./.chargeback). Start with `chargeback demo`.
    """


@main.command("ingest")
@click.argument("files", nargs=-1, required=True)
@user_errors
def ingest_command(files: tuple[str, ...]) -> None:
    """Ingest usage events from JSON-lines FILES (`-` for stdin) into the ledger and counters.

    Example: chargeback ingest events-2026-10.jsonl
    """
    settings = Settings.from_env()
    with pipeline(settings) as p:
        total = IngestResult()
        started = time.perf_counter()
        for name in files:
            if name != "-" and not Path(name).is_file():
                raise click.ClickException(f"{name}: no such file")
            total.add(ingest(json_lines(name), p.ledger, p.counters, p.dead_letters, p.pricer))
        total.seconds = time.perf_counter() - started
    show_ingest(console, total)


@main.command("snapshot")
@user_errors
def snapshot_command() -> None:
    """Write new ledger events to Parquet snapshots (usage/date=YYYY-MM-DD/*.parquet).

    Example: chargeback snapshot
    """
    with pipeline(Settings.from_env()) as p:
        show_snapshot(console, snapshot(p.ledger, p.snapshots))


@main.command("report")
@click.option("--month", default=None, help="The month to report, YYYY-MM (UTC).")
@click.option("--from", "first", default=None, metavar="YYYY-MM-DD",
              help="Report a range of days instead of a month: its first day (UTC), with --to.")
@click.option("--to", "last", default=None, metavar="YYYY-MM-DD", help="The range's last day (UTC, included).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the report files (default: $CHARGEBACK_HOME/reports).")
@click.option("--format", "formats", default=",".join(DEFAULT_FORMATS), show_default=True,
              help=f"Comma-separated output formats, of: {', '.join(FORMATS)} (focus: FOCUS 1.2 CSV and "
                   "Parquet in the FinOps hubs layout; html: a self-contained report with charts).")
@reference_options
@capacity_options
@user_errors
def report_command(month: str | None, first: str | None, last: str | None, out: Path | None, formats: str,
                   prices: Path | None, deployments: Path | None, cost_centers: Path | None,
                   capacity: Path | None, ptu_weights: Path | None, ptu_idle_owner: str | None) -> None:
    """Price a month (or, with --from/--to, any range of days) of usage and write
    chargeback-YYYY-MM.csv, -daily.csv and .parquet (chargeback-YYYY-MM-DD_YYYY-MM-DD.* for a
    range) and, with --format, the FOCUS 1.2 export and the HTML report. Provisioned (PTU)
    capacity is allocated to the cost centers that used it (ptu_cost, next to the pay-as-you-go
    cost).

    Ledger events not yet snapshotted are snapshotted first.

    Example: chargeback report --month 2026-10 --out reports/ --format csv,parquet,focus,html

    Example: chargeback report --from 2026-07-01 --to 2026-09-30 --format csv,html
    """
    settings = Settings.from_env()
    period = choose_period(month, first, last)
    reference = load_reference_files(settings, prices, deployments, cost_centers, capacity, ptu_weights,
                                     ptu_idle_owner)
    catch_up(settings, console)
    report = period_report(settings, reference, period)
    files = write_report(report, out or settings.reports_dir, [f.strip() for f in formats.split(",") if f.strip()])
    show_report(console, report)
    for path in files:
        console.print(f"wrote {path}")


@main.command("query")
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
    settings = Settings.from_env()
    reference = load_reference_files(settings, prices, deployments, cost_centers, capacity, ptu_weights,
                                     ptu_idle_owner)
    catch_up(settings, notices)
    corrections = load_corrections(open_store(settings, CORRECTIONS))
    warehouse = open_warehouse(open_store(settings, SNAPSHOTS), reference, corrections=corrections,
                               llm_usage=open_store(settings, LLM_USAGE))
    register_finance_views(warehouse, reference, corrections, wanted_views(sql))
    result = warehouse.connection.execute(sql)
    if result is None:
        raise click.ClickException("no SQL statement given")
    names = [column[0] for column in result.description or []]
    rows = result.fetchall()
    if output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
    elif output == "json":
        sys.stdout.write(msgspec.json.encode([dict(zip(names, row, strict=True)) for row in rows]).decode())
        sys.stdout.write("\n")
    else:
        table = Table(*names)
        for row in rows:
            table.add_row(*("" if value is None else str(value) for value in row))
        console.print(table)


@main.command("usage")
@click.option("--month", default=None, help="Month, YYYY-MM (default: this month, UTC).")
@click.option("--subscription", default=None, help="Show one subscription only.")
@user_errors
def usage_command(month: str | None, subscription: str | None) -> None:
    """Show month-to-date requests, tokens and spend from the live counters, against budgets.

    Live spend is priced at ingest with the catalog then in force; `report` is the authority.

    Example: chargeback usage --month 2026-10 --subscription sub-search-prod
    """
    settings = Settings.from_env()
    month = check_month(month or datetime.now(UTC).strftime("%Y-%m"))
    budgets = open_budgets(settings)
    counters = open_counters(settings, budgets)
    try:
        live = LiveUsage(month, counters.month_to_date(month), counters.cost_center_spend(month),
                         counters.alerts(month), budgets)
    finally:
        counters.close()
    show_usage(console, live, subscription)


@main.command("demo")
@click.option("--events", default=100_000, show_default=True, type=click.IntRange(min=1),
              help="How many events to generate.")
@click.option("--month", default=None, help="Month of the traffic, YYYY-MM (default: last month).")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same events).")
@user_errors
def demo_command(events: int, month: str | None, seed: int) -> None:
    """Generate a month of realistic APIM traffic, then ingest, snapshot and report it.

    Example: chargeback demo --events 100000
    """
    settings = Settings.from_env()
    month = check_month(month or _last_month())
    started = time.perf_counter()
    _write_if_absent(settings.deployments_csv, demo_traffic.deployments_csv())
    _write_if_absent(settings.cost_centers_csv, demo_traffic.cost_centers_csv(month))
    _write_if_absent(settings.budgets_csv, demo_traffic.budgets_csv())
    _write_if_absent(settings.capacity_csv, demo_traffic.capacity_csv(month))
    traffic = settings.home / "demo" / f"traffic-{month}.jsonl"
    traffic.parent.mkdir(parents=True, exist_ok=True)
    traffic.write_bytes(b"\n".join(demo_traffic.traffic(month, events, seed)) + b"\n")
    console.print(f"generated {events:,} events of {month} in {traffic}")
    with pipeline(settings) as p, Progress(console=console, transient=True) as progress:
        task = progress.add_task("ingest", total=events)
        messages = (RawMessage(line.rstrip(b"\n"), str(traffic), f"line {n}")
                    for n, line in enumerate(traffic.open("rb"), start=1))
        result = ingest(messages, p.ledger, p.counters, p.dead_letters, p.pricer,
                        progress=lambda batch: progress.advance(task, batch.received))
        progress.stop()
        show_ingest(console, result)
        show_snapshot(console, snapshot(p.ledger, p.snapshots))
    reference = load_reference_files(settings, None, None, None)
    report = monthly_report(settings, reference, month)
    files = write_report(report, settings.reports_dir, FORMATS)
    show_report(console, report)
    for path in files:
        console.print(f"wrote {path}")
    elapsed = time.perf_counter() - started
    console.print(f"demo done in {elapsed:.1f} s ({events / elapsed:,.0f} events/s end to end). "
                  f"Try: chargeback query \"SELECT cost_center, sum(cost) FROM costs GROUP BY ALL\"")


def _last_month() -> str:
    today = datetime.now(UTC).date()
    return f"{today.year - 1}-12" if today.month == 1 else f"{today.year}-{today.month - 1:02d}"


def _write_if_absent(path: Path, text: str) -> None:
    if path.exists():
        console.print(f"keeping your {path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    console.print(f"wrote demo map {path}")


# Commands defined in their own modules (ops: replay, corrections, reconcile), registered here.
from pipeline.cli_reconcile import reconcile_command  # noqa: E402

main.add_command(reconcile_command)

from pipeline.cli_replay import replay_command  # noqa: E402

main.add_command(replay_command)

from pipeline.cli_correct import correct_command, corrections_command  # noqa: E402

main.add_command(correct_command)
main.add_command(corrections_command)

from pipeline.cli_llm_logs import ingest_llm_logs_command  # noqa: E402

main.add_command(ingest_llm_logs_command)

from pipeline.cli_prices import prices_group  # noqa: E402

main.add_command(prices_group)
