"""`chargeback reconcile`: recount a month's live counters from the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.entrypoints.cli.options import console, month_option, pipeline_of, user_errors
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.stages.reconcile import ReconcileResult

EXIT_DRIFT = 3  # drift found and left as is: scripts can tell

MAX_ROWS = 30


@click.command("reconcile", short_help="Compare a month's live counters with the ledger; --apply rebuilds them.")
@click.option("--month", default=None, help="Month, YYYY-MM (default: this month, UTC).")
@click.option("--apply", "apply_", is_flag=True, help="Rebuild the counters from the ledger.")
@user_errors
def reconcile_command(month: str | None, apply_: bool) -> None:
    """Compare the live counters of a month with the ledger and show the drift per key; with
    --apply, rebuild them from the ledger (after a Redis flush or failover).

    Example: chargeback reconcile --month 2026-10 --apply
    """
    from pipeline.stages.reconcile import reconcile

    chosen = month_option(month)
    with pipeline_of(Settings.from_env()) as p:
        result = reconcile(p.ledger, p.counters, p.pricer, chosen, apply=apply_)
    show_reconcile(result)
    if result.drift and not apply_:
        click.get_current_context().exit(EXIT_DRIFT)


def show_reconcile(result: ReconcileResult) -> None:
    from rich.table import Table

    console.print(f"reconcile {result.month}: {result.events:,} ledger events, "
                  f"{len(result.drift):,} counter(s) drifted")
    if result.drift:
        table = Table("key", "measure", "counted", "ledger says", "drift")
        for drift in result.drift[:MAX_ROWS]:
            table.add_row(drift.key, drift.measure, f"{drift.counted:,}", f"{drift.expected:,}",
                          f"{drift.counted - drift.expected:+,}")
        console.print(table)
        if len(result.drift) > MAX_ROWS:
            console.print(f"... and {len(result.drift) - MAX_ROWS:,} more")
    if result.applied:
        console.print(f"rebuilt from the ledger; drift now: {len(result.drift_after)}")
    elif result.drift:
        console.print("run again with --apply to rebuild these counters from the ledger")
