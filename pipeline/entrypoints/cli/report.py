"""`chargeback report`: a month's (or a range of days') report, written into a folder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.entrypoints.cli.options import (
    capacity_options,
    catch_up,
    choose_period,
    console,
    reference_of,
    reference_options,
    user_errors,
)
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.stages.report.model import Report

# The formats of pipeline.stages.report.model.FORMATS and DEFAULT_FORMATS (a test keeps them equal):
# named here so that `--help` does not load the report's modules.
FORMATS = ("csv", "parquet", "focus", "focus-1.2", "html")
DEFAULT_FORMATS = ("csv", "parquet")


@click.command("report", short_help="Price a month (or any range of days) of usage and write the report files.")
@click.option("--month", default=None, help="The month to report, YYYY-MM (UTC).")
@click.option("--from", "first", default=None, metavar="YYYY-MM-DD",
              help="Report a range of days instead of a month: its first day (UTC), with --to.")
@click.option("--to", "last", default=None, metavar="YYYY-MM-DD", help="The range's last day (UTC, included).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the report files (default: $CHARGEBACK_HOME/reports).")
@click.option("--format", "formats", default=",".join(DEFAULT_FORMATS), show_default=True,
              help=f"Comma-separated output formats, of: {', '.join(FORMATS)} (focus: FOCUS 1.3 CSV and "
                   "Parquet in the FinOps hubs layout; focus-1.2: FOCUS 1.2 CSV and Parquet; html: a "
                   "self-contained report with charts).")
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
    from pipeline.app import report_stores, warehouse_limits
    from pipeline.lake.warehouse import query_errors
    from pipeline.stages.report.build import period_report
    from pipeline.stages.report.model import formats_of

    settings = Settings.from_env()
    period = choose_period(month, first, last)
    wanted = formats_of(formats)
    reference = reference_of(settings, prices, deployments, cost_centers, capacity, ptu_weights, ptu_idle_owner)
    catch_up(settings, console)
    with query_errors():
        report = period_report(report_stores(settings), reference, period, limits=warehouse_limits(settings))
    write_report(settings, report, out or settings.reports_dir, wanted)


def write_report(settings: Settings, report: Report, out: Path, formats: Iterable[str]) -> None:
    """Publish the report into the folder `out` and show it, with the files written."""
    from pipeline.app import focus_context, folder_store
    from pipeline.entrypoints.cli.output import show_report
    from pipeline.stages.report.publish import publish_report

    published = publish_report(report, folder_store(out), formats, focus=focus_context(settings))
    restated = published.restatement
    show_report(console, report, (restated, str(out / restated.key)) if restated is not None else None)
    for key in published.keys:
        console.print(f"wrote {out / key}")
