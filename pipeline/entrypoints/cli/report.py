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
    explain_no_usage,
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
@click.option("--true-up", "true_up", type=click.Path(dir_okay=False, path_type=Path),
              help="A cost reconciliation (cost-reconciliation-YYYY-MM.csv of `reconcile-azure --cost-export`): "
                   "allocate each account-day's billed cost that the metered usage does not explain to the cost "
                   "centers in proportion to their metered cost there, as lines of charge class True-up.")
@click.option("--true-up-owner", metavar="COST_CENTER",
              help="With --true-up: charge every gap to this cost center instead.")
@reference_options
@capacity_options
@user_errors
def report_command(month: str | None, first: str | None, last: str | None, out: Path | None, formats: str,
                   true_up: Path | None, true_up_owner: str | None,
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
    from pipeline.lake.pandas_probe import skip_pandas_probe
    from pipeline.lake.warehouse import query_errors
    from pipeline.stages.report.build import period_report
    from pipeline.stages.report.model import formats_of

    skip_pandas_probe()  # this process never hands pyarrow a pandas object (corrections, FOCUS rows)
    settings = Settings.from_env()
    period = choose_period(month, first, last)
    wanted = formats_of(formats)
    reference = reference_of(settings, prices, deployments, cost_centers, capacity, ptu_weights, ptu_idle_owner)
    if true_up_owner is not None and true_up is None:
        raise click.UsageError("--true-up-owner needs --true-up FILE")
    gaps = None
    if true_up is not None:
        from pipeline.inputs.gaps import read_gaps

        gaps = read_gaps(true_up)
    catch_up(settings, console)
    stores = report_stores(settings)
    with query_errors():
        report = period_report(stores, reference, period, limits=warehouse_limits(settings))
    if not report.requests:
        explain_no_usage(console, stores.snapshots, period)
    if gaps is not None:
        from pipeline.stages.report.true_up import apply_true_up

        apply_true_up(report, reference.deployments, gaps, true_up_owner)
    write_report(settings, report, out or settings.reports_dir, wanted)


def write_report(settings: Settings, report: Report, out: Path, formats: Iterable[str]) -> None:
    """Publish the report into the folder `out` and show it, with the files written. Its tables
    are shown while its `-daily.csv` is made in a thread (DailyAhead), begun before the modules
    that render the rest are imported, then the files written."""
    from pipeline.stages.report.daily import DailyAhead

    daily = DailyAhead(report) if "csv" in formats else None
    from pipeline.app import focus_context, folder_store
    from pipeline.entrypoints.cli.output import show_report, show_restatement
    from pipeline.stages.report.publish import publish_report

    store = folder_store(out)
    if "html" in formats:
        from pipeline.stages.report.reconciled import attach_reconciliation  # the HTML page alone shows it

        if attach_reconciliation(report, store):
            console.print(f"with the reconciliation {out / ('reconciliation-' + report.label + '.csv')}",
                          markup=False, highlight=False, soft_wrap=True)
    show_report(console, report)
    published = publish_report(report, store, formats, focus=focus_context(settings),
                               daily=daily.result if daily is not None else None)
    restated = published.restatement
    if restated is not None:
        show_restatement(console, restated, str(out / restated.key))
    for key in published.keys:
        console.print(f"wrote {out / key}", highlight=False, soft_wrap=True)  # a path whole, to copy
