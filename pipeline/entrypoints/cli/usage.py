"""`chargeback usage`: month-to-date live counters against budgets."""

from __future__ import annotations

import click

from pipeline.entrypoints.cli.options import catch_up, console, month_option, notices, user_errors
from pipeline.settings import Settings


@click.command("usage", short_help="Show month-to-date requests, tokens and spend from the live counters, "
                                    "against budgets.")
@click.option("--month", default=None, help="Month, YYYY-MM (default: this month, UTC).")
@click.option("--subscription", default=None, help="Show one subscription only.")
@click.option("--all", "every", is_flag=True,
              help="Show every subscription and cost center (default: the 40 that spent the most, if more).")
@user_errors
def usage_command(month: str | None, subscription: str | None, every: bool) -> None:
    """Show month-to-date requests, tokens and spend from the live counters, against budgets,
    and how many streamed requests of the last 24 hours still wait for their usage from APIM's
    LLM logs (with a warning when streams came and no LLM-log record did for
    $CHARGEBACK_LLM_LOG_STALE_HOURS, default 6).

    Live spend is priced at ingest with the catalog then in force; `report` is the authority.
    Past 40 subscriptions (or cost centers), the 40 that spent the most are shown, and how many
    more there are; --all shows every one.

    Example: chargeback usage --month 2026-10 --subscription sub-search-prod
    """
    from pipeline.app import open_budgets, open_counters, open_store, warehouse_limits
    from pipeline.entrypoints.cli.output import LiveUsage, show_stream_status, show_usage
    from pipeline.lake.areas import LLM_USAGE, SNAPSHOTS
    from pipeline.lake.warehouse import query_errors
    from pipeline.stages.llm_usage import stream_status

    settings = Settings.from_env()
    chosen = month_option(month)
    budgets = open_budgets(settings)
    counters = open_counters(settings, budgets)
    try:
        live = LiveUsage(chosen, counters.month_to_date(chosen), counters.cost_center_spend(chosen),
                         counters.alerts(chosen), budgets)
    finally:
        counters.close()
    show_usage(console, live, subscription, every)
    catch_up(settings, notices)
    stale_after = settings.llm_log_stale_after
    with query_errors():
        status = stream_status(open_store(settings, SNAPSHOTS), open_store(settings, LLM_USAGE),
                               stale_after=stale_after, limits=warehouse_limits(settings))
    show_stream_status(console, status)
