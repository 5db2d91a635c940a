"""`chargeback budgets`: every budget's spend, share, forecast and state; --publish writes the
gateway state APIM enforces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pipeline.entrypoints.cli.options import console, month_option, say, user_errors
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.stages.budget_gate import BudgetBoard, Published


@click.command("budgets", short_help="Show every budget's spend, forecast and state; --publish sets the gateway's.")
@click.option("--month", default=None, help="Month, YYYY-MM (default: this month, UTC).")
@click.option("--publish", is_flag=True,
              help="Write the state APIM enforces: gateway/budgets/<subscriptionId>.json in the store for each "
                   "subscription that is not ok, and remove the files of those back to ok.")
@user_errors
def budgets_command(month: str | None, publish: bool) -> None:
    """Show every budget of budgets.csv with its month-to-date spend (the live counters), its
    share, the forecast to the month's end at the pace so far and its state: `ok`, `warn`
    (from warn_at percent, default 80) or `block` (a budget with action block, at 100%), then
    the subscriptions it covers (their own budget, their cost center's, their product's).
    With --publish, write that state where the APIM budget-gate fragment reads it (the
    Functions app does it every minute).

    Example: chargeback budgets --publish
    """
    from pipeline.app import budget_board_of, open_store
    from pipeline.lake.areas import GATEWAY
    from pipeline.lake.warehouse import query_errors
    from pipeline.stages.budget_gate import publish_gates

    settings = Settings.from_env()
    chosen = month_option(month)
    if not settings.budgets_csv.is_file():
        raise click.ClickException(f"no budgets: write {settings.budgets_csv} "
                                   "(scope,key,monthly_budget,currency[,action,warn_at])")
    now = datetime.now(UTC)
    with query_errors():
        board = budget_board_of(settings, chosen, now)
    show_board(board)
    if publish:
        store = open_store(settings, GATEWAY)
        show_published(publish_gates(store, board, now), store.url)


def show_board(board: BudgetBoard) -> None:
    from rich.table import Table

    table = Table("scope", "key", "action", "budget", "spend", "share", "forecast", "state",
                  title=f"Budgets {board.month} (live spend, priced at ingest)", title_justify="left")
    for status in board.statuses:
        budget = status.budget
        table.add_row(budget.scope.value, budget.key, budget.action.value, f"{status.amount:,} {budget.currency}",
                      f"{status.spend:,.2f}", f"{status.share}%", f"{status.forecast:,.2f}", status.state.label)
    console.print(table)
    for gate in board.not_ok:
        budget = gate.status.budget
        say(f"{gate.state.label} {gate.subscription_id}: {budget.scope.value} {budget.key} at {gate.status.share}%")
    if not board.not_ok:
        say("every subscription is ok")
    for note in board.notes:
        say(f"note: {note}")


def show_published(published: Published, url: str) -> None:
    say(f"gateway state in {url}: {len(published.written):,} written, {len(published.kept):,} unchanged, "
        f"{len(published.removed):,} removed")
    for key in published.written:
        say(f"  wrote {key}")
    for key in published.removed:
        say(f"  removed {key}")
