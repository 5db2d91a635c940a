"""`chargeback prices check FILE`: check a price catalog before any report uses it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from pipeline.entrypoints.cli.options import (
    capacity_options,
    catch_up,
    console,
    month_option,
    notices,
    reference_of,
    user_errors,
)
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.domain.pricing import PriceCatalog
    from pipeline.inputs.catalog import CatalogCheck
    from pipeline.stages.report.model import Report


@click.group("prices")
def prices_group() -> None:
    """Price catalogs (CSV, prices per 1M tokens): check one, or import one from the Retail Prices API.

    Example: chargeback prices check my-prices.csv
    """


@prices_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--month", default=None,
              help="Also price this month's traffic with FILE and list the models it leaves unpriced.")
@click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path),
              help="Deployment map whose deployments must have a price (default: $CHARGEBACK_DEPLOYMENTS, else "
                   "$CHARGEBACK_HOME/deployments.csv).")
@click.option("--cost-centers", type=click.Path(dir_okay=False, path_type=Path),
              help="Cost-center map, for --month (default: $CHARGEBACK_COST_CENTERS, else "
                   "$CHARGEBACK_HOME/cost-centers.csv).")
@capacity_options
@user_errors
def check_command(file: Path, month: str | None, deployments: Path | None, cost_centers: Path | None,
                  capacity: Path | None, ptu_weights: Path | None, ptu_idle_owner: str | None) -> None:
    """Check a price catalog: overlapping effective ranges, negative or malformed prices, unknown
    currencies, per-1K vs per-1M unit mistakes (a `unit` column, per-1K columns, or prices 100x
    away from the shipped catalog's), and which deployments (and, with --month, which traffic)
    it leaves without a price. Exit code 1 when the catalog cannot be used.

    Example: chargeback prices check my-prices.csv --month 2026-10
    """
    from pipeline.inputs.catalog import check_price_catalog

    if not file.exists():
        raise click.ClickException(f"{file}: no such file")
    settings = Settings.from_env().replace(deployments=deployments)
    if month is not None:
        month_option(month)
    check = check_price_catalog(file)
    show_check(check)
    if not check.ok:
        raise click.ClickException(f"{len(check.errors)} problem(s) in {file}: fix them before using this catalog")
    catalog = check.catalog()
    show_deployment_coverage(catalog, settings, datetime.now(UTC).date())
    if month is not None:
        from pipeline.app import report_stores, warehouse_limits
        from pipeline.domain.periods import Period
        from pipeline.lake.warehouse import query_errors
        from pipeline.stages.report.build import period_report

        reference = reference_of(settings, file, deployments, cost_centers, capacity, ptu_weights, ptu_idle_owner)
        catch_up(settings, notices)
        with query_errors():
            show_traffic_without_prices(period_report(report_stores(settings), reference, Period.month(month),
                                                      limits=warehouse_limits(settings)))


def show_check(check: CatalogCheck) -> None:
    for error in check.errors:
        for line in error.splitlines():
            notices.print(f"error: {line}", style="red", markup=False, highlight=False, soft_wrap=True)
    if not check.prices:
        return
    models = sorted({p.model for p in check.prices})
    types = sorted({p.deployment_type.lower() for p in check.prices})
    currencies = sorted({p.currency for p in check.prices})
    first = min(p.effective_from for p in check.prices)
    tiers = sorted({p.service_tier for p in check.prices})
    audio = sum(1 for p in check.prices if p.audio_input_per_1m is not None or p.audio_output_per_1m is not None)
    console.print(f"{check.path}: catalog {check.version}, {len(check.prices)} price(s) for {len(models)} model(s); "
                  f"deployment types {', '.join(types)}; service tiers {', '.join(tiers)}; currencies "
                  f"{', '.join(currencies)}; effective from {first}; prices per 1M tokens"
                  + (f"; {audio} with audio prices" if audio else ""), markup=False, highlight=False, soft_wrap=True)
    named = {word for line in check.comments for word in ("source", "date") if line.lower().startswith(word)}
    for line in check.comments:
        if line.lower().startswith(("source", "date")):
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    for word in ("source", "date"):
        if word not in named:
            console.print(f"note: the file names no {word} (a `# {word}: ...` comment line): finance will ask "
                          "where these prices come from", style="yellow", markup=False, soft_wrap=True)
    for note in check.notes:
        console.print(f"note: {note}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if check.ok:
        console.print("ok: no overlapping ranges, negative prices, unknown currencies or unit mistakes found",
                      style="green", markup=False, soft_wrap=True)


def show_deployment_coverage(catalog: PriceCatalog, settings: Settings, today: date) -> None:
    """Deployments of the map that this catalog cannot price today."""
    from pipeline.domain.mappings import is_provisioned_type
    from pipeline.inputs.maps import load_deployments

    path = settings.deployments_csv
    if not path.is_file():
        return
    missing = []
    for deployment in load_deployments(path):
        if is_provisioned_type(deployment.deployment_type):
            continue  # priced per PTU-hour from the capacity file, not per token
        if deployment.model is None or catalog.find(deployment.model, deployment.deployment_type,
                                                     deployment.region, today) is None:
            missing.append(deployment)
    if not missing:
        console.print(f"every deployment of {path} has a price today ({today})", markup=False, highlight=False,
                      soft_wrap=True)
        return
    table = Table("deployment", "model", "deployment type", "region",
                  title=f"Deployments of {path} without a price today ({today})", title_justify="left")
    for deployment in missing:
        table.add_row(deployment.name, deployment.model or "(none)", deployment.deployment_type,
                      deployment.region or "*")
    console.print(table)


def show_traffic_without_prices(report: Report) -> None:
    """The models of the month's traffic this catalog (or the capacity file) does not price."""
    from pipeline.entrypoints.cli.output import show_unpriced_models, unpriced_models

    if not unpriced_models(report):
        console.print(f"{report.period.title}: every model of its traffic has a price", markup=False)
        return
    show_unpriced_models(console, report)


@prices_group.command("import")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--fetch", is_flag=True, help="GET the pages from https://prices.azure.com instead of FILEs.")
@click.option("--region", default=None, help="Give every row this region (default: each item's armRegionName).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("prices.csv"),
              show_default=True, help="Catalog CSV to write (overwritten).")
@click.option("--overrides", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CSV meter,model,token_class,deployment_type,service_tier (or meter,skip): wins over the rules.")
@user_errors
def import_command(files: tuple[Path, ...], fetch: bool, region: str | None, out: Path,
                   overrides: Path | None) -> None:
    """Turn saved Azure Retail Prices API pages (`serviceName eq 'Foundry Models'`) into a price
    catalog: per-1K prices x 1000, one row per model, deployment type, region, tier and start date.
    Meters the rules cannot read are listed, not guessed; PTU, reservation, dev/test and volume-tier
    meters are listed as skipped. Nothing is written when a page is bad or no meter maps.

    Example: chargeback prices import page-1.json page-2.json --region eastus2 --out prices.csv
    (or: chargeback prices import --fetch --region eastus2)
    """
    from pipeline.inputs.catalog import check_price_catalog
    from pipeline.inputs.retail_prices import (
        RetailPricesError,
        catalog_text,
        import_pages,
        read_overrides,
        read_page,
    )

    if fetch == bool(files):
        raise click.UsageError("give FILE(s) or --fetch, not both")
    if fetch:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from pipeline.app import retail_price_pages

        pages = []
        with Progress(SpinnerColumn(), TextColumn("Retail Prices API: {task.completed} page(s), "
                                                  "{task.fields[items]:,} item(s)"),
                      TimeElapsedColumn(), console=notices, transient=False) as progress:
            task = progress.add_task("fetch", total=None, items=0)
            for url, body in retail_price_pages(region):
                pages.append(read_page(Path(url), body))
                progress.update(task, advance=1, items=sum(len(page) for page in pages))
        source = "https://prices.azure.com/api/retail/prices, serviceName eq 'Foundry Models'"
    else:
        pages = [read_page(path, path.read_bytes()) for path in files]
        source = ", ".join(p.name for p in files)
    mapped = read_overrides(overrides, overrides.read_bytes()) if overrides else None
    result = import_pages(pages, region, mapped)
    for line in result.skipped:
        notices.print(f"skipped: {line}", markup=False, highlight=False, soft_wrap=True)
    for line in result.unmapped:
        notices.print(f"unmapped: {line}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    for line in result.incomplete:
        notices.print(f"not written: {line}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if not result.rows:
        raise RetailPricesError(f"no meter of {result.items} item(s) maps to a catalog row: nothing written "
                                "(map them with --overrides)")
    text = catalog_text(result, source, datetime.now(UTC).date().isoformat())
    partial = out.with_name(out.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    check = check_price_catalog(partial)
    if not check.ok:
        partial.unlink()
        raise RetailPricesError(f"the imported catalog does not load: {check.errors[0]}")
    partial.replace(out)
    console.print(f"{out}: {len(result.rows)} row(s) from {result.items} item(s); {len(result.unmapped)} unmapped, "
                  f"{len(result.skipped)} skipped, {len(result.incomplete)} incomplete", markup=False,
                  highlight=False, soft_wrap=True)
