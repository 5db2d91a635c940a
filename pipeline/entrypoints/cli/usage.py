"""`chargeback usage`: month-to-date live counters against budgets."""

from __future__ import annotations

import click

from pipeline.entrypoints.cli.options import console, month_option, user_errors
from pipeline.settings import Settings


@click.command("usage")
@click.option("--month", default=None, help="Month, YYYY-MM (default: this month, UTC).")
@click.option("--subscription", default=None, help="Show one subscription only.")
@user_errors
def usage_command(month: str | None, subscription: str | None) -> None:
    """Show month-to-date requests, tokens and spend from the live counters, against budgets.

    Live spend is priced at ingest with the catalog then in force; `report` is the authority.

    Example: chargeback usage --month 2026-10 --subscription sub-search-prod
    """
    from pipeline.app import open_budgets, open_counters
    from pipeline.entrypoints.cli.output import LiveUsage, show_usage

    settings = Settings.from_env()
    chosen = month_option(month)
    budgets = open_budgets(settings)
    counters = open_counters(settings, budgets)
    try:
        live = LiveUsage(chosen, counters.month_to_date(chosen), counters.cost_center_spend(chosen),
                         counters.alerts(chosen), budgets)
    finally:
        counters.close()
    show_usage(console, live, subscription)
