"""`chargeback reconcile-azure`: the ledger's numbers against Azure Monitor's and Cost Management's."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.entrypoints.cli.options import (
    capacity_options,
    catch_up,
    console,
    month_option,
    notices,
    reference_of,
    reference_options,
    say,
    user_errors,
)
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.stages.azure_reconcile import Reconciliation
    from pipeline.stages.cost_reconcile import CostReconciliation

EXIT_GAP = 3  # a gap over the tolerance: scripts and alerts can tell


@click.command("reconcile-azure", short_help="Compare the ledger with Azure Monitor's counts and the billed cost.")
@click.option("--month", default=None, help="Month, YYYY-MM (default: this month, UTC).")
@click.option("--metrics", "metrics_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Azure Monitor Metrics REST response JSON (`az monitor metrics list -o json`), any interval up "
                   "to a day; repeat for more accounts or metrics. Without it, the metrics of the deployment map's "
                   "accounts are fetched (DefaultAzureCredential).")
@click.option("--cost-export", "cost_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Cost Management FOCUS export (CSV or Parquet, gzip CSV too); repeat for more files.")
@click.option("--tolerance", default="1", show_default=True, metavar="PCT",
              help="Largest gap, in percent of Azure's count, that is not reported as a gap.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for reconciliation-YYYY-MM.csv (default: $CHARGEBACK_HOME/reports).")
@reference_options
@capacity_options
@user_errors
def reconcile_azure_command(month: str | None, metrics_files: tuple[Path, ...], cost_files: tuple[Path, ...],
                            tolerance: str, out: Path | None, prices: Path | None, deployments: Path | None,
                            cost_centers: Path | None, capacity: Path | None, ptu_weights: Path | None,
                            ptu_idle_owner: str | None) -> None:
    """Compare each UTC day and deployment of a month: the requests and tokens the ledger metered
    against what Azure Monitor counted (AzureOpenAIRequests, ProcessedPromptTokens,
    GeneratedTokens split by ModelDeploymentName), the gap and its cost at the deployment's
    prices; with --cost-export, the cost Azure billed per account and day against the metered
    cost. Writes reconciliation-YYYY-MM.csv (and cost-reconciliation-YYYY-MM.csv). Exit code 3
    when a gap is over the tolerance: lost events, missing LLM logs, or traffic around APIM.

    Example: chargeback reconcile-azure --month 2026-10 --metrics metrics-weu.json --cost-export focus.csv
    """
    from pipeline.app import fetch_azure_metrics, folder_store, report_stores, warehouse_limits
    from pipeline.domain.periods import Period
    from pipeline.inputs.azure_metrics import MetricsError, read_metrics_files, read_responses
    from pipeline.inputs.cost_exports import read_cost_exports
    from pipeline.lake.warehouse import open_warehouse, query_errors
    from pipeline.stages.azure_reconcile import check_accounts, reconcile_azure
    from pipeline.stages.cost_reconcile import reconcile_costs
    from pipeline.stages.report.build import build_report

    period = Period.month(month_option(month))
    limit = _tolerance(tolerance)
    settings = Settings.from_env()
    reference = reference_of(settings, prices, deployments, cost_centers, capacity, ptu_weights, ptu_idle_owner)
    billed = read_cost_exports(cost_files, period.start, period.end) if cost_files else None
    if metrics_files:
        metrics = read_metrics_files(metrics_files, period.start, period.end)
    else:
        accounts = reference.deployments.accounts()
        if not accounts:
            raise MetricsError("no --metrics file, and no deployment of the deployment map names its account "
                               "(column account, a resource id) to fetch Azure Monitor's metrics for")
        metrics = read_responses(fetch_azure_metrics(accounts, period), period.start, period.end)
    check_accounts(reference, metrics)
    catch_up(settings, notices)
    stores = report_stores(settings)
    with query_errors():
        warehouse = open_warehouse(stores.snapshots, None, (period.start, period.end), llm_usage=stores.llm_usage,
                                   limits=warehouse_limits(settings))
        try:
            reconciliation = reconcile_azure(warehouse, reference, period, metrics, limit)
            costs = None
            if billed is not None:
                from pipeline.stages.correct import load_corrections

                report = build_report(warehouse, reference, period, load_corrections(stores.corrections))
                costs = reconcile_costs(report, reference, billed, limit)
        finally:
            warehouse.connection.close()
    folder = out or settings.reports_dir
    store = folder_store(folder)
    store.put(reconciliation.file_name, reconciliation.csv(), overwrite=True)
    show_reconciliation(reconciliation)
    say(f"wrote {folder / reconciliation.file_name}")
    if costs is not None:
        store.put(costs.file_name, costs.csv(), overwrite=True)
        show_costs(costs)
        say(f"wrote {folder / costs.file_name}")
    if reconciliation.gaps or (costs is not None and costs.gaps):
        click.get_current_context().exit(EXIT_GAP)


def _tolerance(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not a number of percent", param_hint="--tolerance") from None
    if not value.is_finite() or value < 0:
        raise click.BadParameter(f"{text!r} must be a percentage >= 0", param_hint="--tolerance")
    return value


def show_reconciliation(reconciliation: Reconciliation) -> None:
    from rich.table import Table

    from pipeline.stages.azure_reconcile import OK
    from pipeline.stages.report.reconciled import deployment_totals

    table = Table("deployment", "account", "metered requests", "Azure requests", "gap", "prompt tokens gap",
                  "completion tokens gap", "worst day", "gap cost",
                  title=f"Metered vs Azure Monitor, {reconciliation.period.title} (gap = Azure - metered)",
                  title_justify="left")
    for total in deployment_totals(row.values() for row in reconciliation.rows):
        cost = f"{total.gap_cost:,.2f} {total.currency}" if total.gap_cost is not None else "-"
        table.add_row(total.deployment, total.account.rsplit("/", 1)[-1] or "-", f"{total.metered_requests:,}",
                      f"{total.azure_requests:,}", f"{total.azure_requests - total.metered_requests:+,}",
                      f"{total.prompt_tokens_gap:+,}", f"{total.completion_tokens_gap:+,}", f"{total.worst_pct}%",
                      cost)
    console.print(table)
    for note in reconciliation.notes:
        say(f"note: {note}")
    gaps = reconciliation.gaps
    if not gaps:
        say(f"every deployment-day within {reconciliation.tolerance}% of Azure's counts "
            f"({sum(1 for row in reconciliation.rows if row.status == OK):,} compared)")
        return
    say(f"{len(gaps):,} deployment-day(s) over the tolerance of {reconciliation.tolerance}%:")
    for row in gaps[:20]:
        requests_gap, prompt_gap, completion_gap = row.gaps
        say(f"  {row.day} {row.deployment}: {row.status}, requests {requests_gap:+,}, prompt tokens "
            f"{prompt_gap:+,}, completion tokens {completion_gap:+,} ({row.gap_pct}%)")
    if len(gaps) > 20:
        say(f"  ... and {len(gaps) - 20:,} more (in the CSV)")


def show_costs(costs: CostReconciliation) -> None:
    from rich.table import Table

    table = Table("account", "billed", "metered", "gap", "gap %",
                  title=f"Billed (Cost Management) vs metered cost, {costs.period.title}", title_justify="left")
    for account, currency, billed, metered in costs.per_account():
        gap = billed - metered
        share = f"{gap * 100 / billed:.2f}%" if billed else "-"
        table.add_row(account.rsplit("/", 1)[-1], f"{billed:,.2f} {currency}", f"{metered:,.2f} {currency}",
                      f"{gap:+,.2f} {currency}", share)
    console.print(table)
    for note in costs.notes:
        say(f"note: {note}")
