"""What the `chargeback` commands share: the consoles, the user-error boundary, the options
for the reference files and periods, and snapshotting what the ledger holds before a report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click
from rich.console import Console

from pipeline.domain.errors import ChargebackError, UserError
from pipeline.domain.periods import Period, PeriodError, parse_day
from pipeline.lake.numpy_probe import numpy_refused
from pipeline.settings import Settings

if TYPE_CHECKING:  # the composition root is imported when a command runs, not for its --help
    from pipeline.app import Pipeline
    from pipeline.domain.costing import Reference
    from pipeline.ports import ObjectStore

P = ParamSpec("P")
R = TypeVar("R")
# Exit codes: 0 done; 1 a mistake to fix (a setting, a file, an option, a missing database or
# container, refused credentials); 2 a usage error (click's); 3 reconcile found drift; 4 a backend
# is unreachable or unavailable now (nothing was lost: run it again later).
EXIT_UNAVAILABLE = 4


class Unavailable(click.ClickException):
    exit_code = EXIT_UNAVAILABLE
# No markup unless a line asks for it: paths, file names and keys are printed as they are (a
# folder `team [finance]` would lose `[finance]` as a style tag).
console = Console(markup=False)
notices = Console(stderr=True, markup=False)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into click errors (one line, exit 1), and an unavailable
    backend into one line and exit 4."""
    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with numpy_refused():  # pyarrow without NumPy, which no command uses (80-130 ms a start)
                return command(*args, **kwargs)
        except UserError as error:
            raise click.ClickException(str(error)) from None
        except ChargebackError as error:  # BackendUnavailable, or another error raised on purpose
            raise Unavailable(str(error)) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(f"{where}{error.strerror or error}") from None
    return run


@contextmanager
def pipeline_of(settings: Settings) -> Iterator[Pipeline]:
    """The settings' wired pipeline, closed at the end of the block."""
    from pipeline.app import open_pipeline
    from pipeline.lake.pandas_probe import skip_pandas_probe

    skip_pandas_probe()  # this process never hands pyarrow a pandas object
    opened = open_pipeline(settings)
    try:
        yield opened
    finally:
        opened.close()


def reference_options(command: Callable[P, R]) -> Callable[P, R]:
    """--prices, --deployments and --cost-centers: they take the place of the settings' files."""
    options = [
        click.option("--prices", type=click.Path(dir_okay=False, path_type=Path),
                     help="Price catalog CSV (default: $CHARGEBACK_PRICES, else the shipped catalog)."),
        click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path),
                     help="Deployment map CSV (default: $CHARGEBACK_DEPLOYMENTS, else "
                          "$CHARGEBACK_HOME/deployments.csv)."),
        click.option("--cost-centers", type=click.Path(dir_okay=False, path_type=Path),
                     help="Cost-center map CSV (default: $CHARGEBACK_COST_CENTERS, else "
                          "$CHARGEBACK_HOME/cost-centers.csv)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def capacity_options(command: Callable[P, R]) -> Callable[P, R]:
    """--capacity, --ptu-weights and --ptu-idle-owner: provisioned (PTU) capacity and its allocation."""
    options = [
        click.option("--capacity", type=click.Path(dir_okay=False, path_type=Path),
                     help="Provisioned-capacity CSV: deployment,ptu,price_per_ptu_hour,currency,effective_from,"
                          "effective_to[,idle_owner] (default: $CHARGEBACK_CAPACITY, else "
                          "$CHARGEBACK_HOME/capacity.csv if present)."),
        click.option("--ptu-weights", type=click.Path(dir_okay=False, path_type=Path),
                     help="PTU weights CSV: model,input_weight,cached_input_weight,output_weight"
                          "[,input_tpm_per_ptu] (default: $CHARGEBACK_PTU_WEIGHTS, else the shipped weights)."),
        click.option("--ptu-idle-owner", metavar="COST_CENTER",
                     help="Charge idle PTU capacity to this cost center (default: $CHARGEBACK_PTU_IDLE_OWNER, "
                          "else spread it over the users in proportion; a capacity row's idle_owner wins)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def reference_of(settings: Settings, prices: Path | None = None, deployments: Path | None = None,
                 cost_centers: Path | None = None, capacity: Path | None = None, ptu_weights: Path | None = None,
                 ptu_idle_owner: str | None = None) -> Reference:
    """The reference files the options name, else the settings' ones."""
    from pipeline.app import settings_reference

    return settings_reference(settings.replace(prices=prices, deployments=deployments, cost_centers=cost_centers,
                                               capacity=capacity, ptu_weights=ptu_weights,
                                               ptu_idle_owner=ptu_idle_owner))


def catch_up(settings: Settings, out: Console) -> None:
    """Publish ledger events not yet in the snapshots, so reports and queries see all of them;
    warn of the events the ledger cannot hand over yet (they are left out)."""
    from pipeline.app import snapshot_pending
    from pipeline.entrypoints.cli.output import pending_text, show_snapshot

    result = snapshot_pending(settings)
    if result is not None:
        if result.rows:
            show_snapshot(out, result)
        if result.pending.events:
            out.print(f"warning: {pending_text(result)}; they are not in what follows: run `chargeback snapshot "
                      "--wait`, then this command again", style="yellow", markup=False)


def explain_no_usage(out: Console, snapshots: ObjectStore, period: Period | None = None) -> None:
    """Say why a command found no usage: the store holds no committed snapshot (so that a wrong
    CHARGEBACK_STORE is not read as a month without traffic), or, for `period`, which days the
    snapshots do hold."""
    from pipeline.lake.manifests import committed_days

    held = committed_days(snapshots)
    if held is None:
        out.print(f"warning: {snapshots.url} holds no committed snapshot, so there is no usage to read: check "
                  "CHARGEBACK_STORE (`chargeback doctor` checks it), or ingest events (`chargeback ingest FILE`) "
                  "and run `chargeback snapshot`", style="yellow", markup=False, highlight=False, soft_wrap=True)
    elif period is not None:
        out.print(f"note: no usage in {period.title}; the committed snapshots hold {held[0]} to {held[1]}",
                  markup=False, highlight=False, soft_wrap=True)


def month_option(month: str | None) -> str:
    """`--month YYYY-MM` checked; this month (UTC) when not given."""
    chosen = month or datetime.now(UTC).strftime("%Y-%m")
    try:
        Period.month(chosen)
    except PeriodError as error:
        raise click.ClickException(str(error)) from None
    return chosen


def choose_period(month: str | None, first: str | None, last: str | None) -> Period:
    """The period a command names: `--month YYYY-MM`, or `--from YYYY-MM-DD --to YYYY-MM-DD`
    (both days included)."""
    try:
        if month is not None:
            if first is not None or last is not None:
                raise click.ClickException("give either --month or --from/--to, not both")
            return Period.month(month)
        if first is None or last is None:
            raise click.ClickException("give --month YYYY-MM, or a range of days with --from YYYY-MM-DD "
                                       "--to YYYY-MM-DD")
        return Period.days(parse_day(first, "--from"), parse_day(last, "--to"))
    except PeriodError as error:
        raise click.ClickException(str(error)) from None


def say(text: str) -> None:
    """One line as it is (no markup, no highlighting, wrapped only by the terminal)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)
