"""What every `chargeback` command shares: the consoles, the user-error boundary, the options
for the reference files, and opening the pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
import duckdb
from rich.console import Console

from pipeline.bootstrap import Pipeline, SettingsError, has_embedded_ledger_data, open_pipeline
from pipeline.domain.costing import Reference
from pipeline.domain.pricing import CatalogError
from pipeline.presentation import show_snapshot
from pipeline.reference_files import load_reference
from pipeline.settings import Settings
from pipeline.stages.report import ReportError
from pipeline.stages.snapshot import snapshot

P = ParamSpec("P")
R = TypeVar("R")
console = Console()
notices = Console(stderr=True)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into click errors (one line, exit 1)."""
    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (CatalogError, ReportError, SettingsError) as error:
            raise click.ClickException(str(error)) from None
        except duckdb.Error as error:
            raise click.ClickException(f"query failed: {str(error).splitlines()[0]}") from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(f"{where}{error.strerror or error}") from None
    return run


@contextmanager
def pipeline(settings: Settings) -> Iterator[Pipeline]:
    opened = open_pipeline(settings)
    try:
        yield opened
    finally:
        opened.close()


def reference_options(command: Callable[P, R]) -> Callable[P, R]:
    options = [
        click.option("--prices", type=click.Path(dir_okay=False, path_type=Path), envvar="CHARGEBACK_PRICES",
                     help="Price catalog CSV (default: the shipped catalog)."),
        click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path),
                     envvar="CHARGEBACK_DEPLOYMENTS",
                     help="Deployment map CSV (default: $CHARGEBACK_HOME/deployments.csv)."),
        click.option("--cost-centers", type=click.Path(dir_okay=False, path_type=Path),
                     envvar="CHARGEBACK_COST_CENTERS",
                     help="Cost-center map CSV (default: $CHARGEBACK_HOME/cost-centers.csv)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def capacity_options(command: Callable[P, R]) -> Callable[P, R]:
    """--capacity, --ptu-weights and --ptu-idle-owner: provisioned (PTU) capacity and its allocation."""
    options = [
        click.option("--capacity", type=click.Path(dir_okay=False, path_type=Path), envvar="CHARGEBACK_CAPACITY",
                     help="Provisioned-capacity CSV: deployment,ptu,price_per_ptu_hour,currency,effective_from,"
                          "effective_to[,idle_owner] (default: $CHARGEBACK_HOME/capacity.csv if present)."),
        click.option("--ptu-weights", type=click.Path(dir_okay=False, path_type=Path),
                     envvar="CHARGEBACK_PTU_WEIGHTS",
                     help="PTU weights CSV: model,input_weight,cached_input_weight,output_weight"
                          "[,input_tpm_per_ptu] (default: the shipped weights)."),
        click.option("--ptu-idle-owner", envvar="CHARGEBACK_PTU_IDLE_OWNER", metavar="COST_CENTER",
                     help="Charge idle PTU capacity to this cost center (default: spread it over the users "
                          "in proportion; a capacity row's idle_owner wins)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def load_reference_files(settings: Settings, prices: Path | None, deployments: Path | None,
                         cost_centers: Path | None, capacity: Path | None = None, ptu_weights: Path | None = None,
                         ptu_idle_owner: str | None = None) -> Reference:
    for given in (prices, deployments, cost_centers, capacity, ptu_weights):
        if given is not None and not given.exists():
            raise click.ClickException(f"{given}: no such file")
    return load_reference(prices, deployments or settings.deployments_csv,
                          cost_centers or settings.cost_centers_csv, capacity or settings.capacity_csv,
                          ptu_weights or settings.ptu_weights, ptu_idle_owner or settings.ptu_idle_owner)


def catch_up(settings: Settings, out: Console) -> None:
    """Publish ledger events not yet in the snapshots, so reports and queries see all of them."""
    if not has_embedded_ledger_data(settings):
        return
    with pipeline(settings) as p:
        result = snapshot(p.ledger, p.snapshots)
        if result.rows:
            show_snapshot(out, result)
