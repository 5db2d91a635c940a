"""`chargeback doctor`: check a configuration end to end, one line per check with its fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from pipeline.domain.errors import ChargebackError, UserError
from pipeline.entrypoints.cli.options import EXIT_UNAVAILABLE, console, month_option, say
from pipeline.lake.numpy_probe import numpy_refused

if TYPE_CHECKING:
    from pipeline.domain.periods import Period
    from pipeline.settings import Settings
    from pipeline.stages.doctor import Check

STYLES = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}
UNREACHABLE_FIX = "is it running, and reachable from here (network rules, private endpoints)? then run doctor again"


@click.command("doctor", short_help="Check the settings, backends, reference files and data flow; print the fix "
                                    "for each problem.")
@click.option("--month", default=None,
              help="Check that every deployment is priced on every day of this month, YYYY-MM (default: today).")
@click.option("--strict", is_flag=True, help="Exit 1 on a warning too (e.g. no snapshot in the last hour).")
def doctor_command(month: str | None, strict: bool) -> None:
    """Check the settings, backends, reference files and data flow; print the fix for each problem.

    Opens the ledger, the live counters and the store the settings name (nothing is created),
    writes, reads back and removes a probe item in the ledger and a probe key in the counters,
    writes and reads back a probe object in the store's `doctor/` area, checks that the price
    catalog prices every deployment of the map today (or every day of --month), that none of this
    month's live spend is charged to `unassigned` (a subscription the cost-center map does not
    know), and that snapshots and APIM's LLM logs keep coming. Run it after `terraform apply`
    with the Function App's settings, and when a number looks wrong.

    Exit codes: 0 every check passed (warnings allowed unless --strict), 1 a check failed with a
    mistake to fix, 4 only backends that are unreachable now failed.

    Example: chargeback doctor --strict
    """
    with numpy_refused():  # as every other command (pipeline.lake.numpy_probe)
        doctor(month, strict)


def doctor(month: str | None, strict: bool) -> None:
    """`chargeback doctor`: the checks, shown, then the exit code."""
    from pipeline.domain.periods import Period
    from pipeline.settings import Settings
    from pipeline.stages.doctor import Status, failed

    period = Period.month(month_option(month)) if month else None
    try:
        settings = Settings.from_env()
    except UserError as error:
        checks = [failed("settings", error, "fix the variable, or unset it to take the default")]
    else:
        checks = run_checks(settings, period)
    for check in checks:
        show(check)
    counts = {status: sum(c.status is status for c in checks) for status in Status}
    say(f"{counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), {counts[Status.FAIL]} failed")
    if any(c.status is Status.FAIL and not c.unavailable for c in checks):
        raise SystemExit(1)
    if counts[Status.FAIL]:
        raise SystemExit(EXIT_UNAVAILABLE)
    if strict and counts[Status.WARN]:
        raise SystemExit(1)


def run_checks(settings: Settings, period: Period | None = None) -> list[Check]:
    """Every check, in the order data flows: settings, reference files, ledger, counters, store,
    snapshots, LLM logs. A check whose backend did not open is not run."""
    from datetime import UTC, datetime

    from pipeline import app
    from pipeline.domain.live import Budgets
    from pipeline.domain.urls import without_password
    from pipeline.lake.areas import LLM_USAGE, SNAPSHOTS
    from pipeline.lake.warehouse import query_errors
    from pipeline.settings import sqlite_path
    from pipeline.stages import doctor
    from pipeline.stages.llm_usage import stream_status

    now = datetime.now(UTC)
    counters_url = without_password(settings.counters)
    checks = [doctor.ok("settings", f"home {settings.home}; ledger {settings.ledger}; counters {counters_url}; "
                                    f"store {settings.store}")]

    def prices() -> Check:
        first, last = (period.start, period.last) if period else (now.date(), None)
        return doctor.check_coverage(app.settings_reference(settings), first, last)

    def ledger() -> Check:
        if not app.ledger_exists(settings):
            return doctor.ok("ledger", f"{settings.ledger}: not created yet (the first ingest creates it)")
        opened = app.open_ledger(settings)
        try:
            return doctor.check_ledger(settings.ledger, opened)
        finally:
            opened.close()

    def counters() -> Check:
        path = sqlite_path(settings.counters)
        if path is not None and not path.exists():
            return doctor.ok("counters", f"{counters_url}: not created yet (the first ingest creates it)")
        try:
            budgets = app.open_budgets(settings)
        except UserError:
            budgets = Budgets()  # the budgets check below says what is wrong with the file
        opened = app.open_counters(settings, budgets)
        try:
            return doctor.check_counters(counters_url, opened, now.strftime("%Y-%m"))
        finally:
            opened.close()

    def cost_centers() -> Check:
        path = sqlite_path(settings.counters)
        if path is not None and not path.exists():
            return doctor.ok("centers", "no live spend counted yet")
        opened = app.open_counters(settings, Budgets())
        try:
            return doctor.check_cost_centers(opened, app.settings_reference(settings), now.strftime("%Y-%m"),
                                             now.date())
        finally:
            opened.close()

    def budgets() -> Check:
        from pipeline.stages.budget_gate import check_currencies

        found = app.open_budgets(settings)
        if not settings.budgets_csv.is_file():
            return doctor.ok("budgets", f"{settings.budgets_csv}: none (no budget is enforced)")
        check_currencies(found, app.settings_reference(settings))  # another currency than the spend: a mistake
        blocking = sum(1 for budget in found if budget.action.value == "block")
        return doctor.ok("budgets", f"{settings.budgets_csv}: {len(found):,} budget(s), {blocking:,} blocking at the "
                         "gateway (chargeback budgets shows their state)")

    def store() -> Check:
        return doctor.check_store(app.open_store(settings, doctor.PROBE_AREA))

    def snapshots() -> Check:
        return doctor.check_snapshots(app.open_store(settings, SNAPSHOTS), now)

    def llm_logs() -> Check:
        with query_errors():
            return doctor.check_llm_logs(stream_status(
                app.open_store(settings, SNAPSHOTS), app.open_store(settings, LLM_USAGE), now=now,
                stale_after=settings.llm_log_stale_after, limits=app.warehouse_limits(settings)))

    priced = attempt("prices", prices, "fix the file it names (check a catalog with `chargeback prices check`)")
    checks += [priced, attempt("budgets", budgets, "fix the budgets file (CHARGEBACK_BUDGETS)"),
               attempt("ledger", ledger), attempt("counters", counters)]
    if doctor.Status.FAIL not in (priced.status, checks[-1].status):  # the reference and the counters open
        checks.append(attempt("centers", cost_centers))
    checks.append(attempt("store", store))
    if checks[-1].status != doctor.Status.FAIL:
        checks += [attempt("snapshots", snapshots), attempt("llm logs", llm_logs)]
    return checks


def attempt(name: str, check: Callable[[], Check], fix: str = "") -> Check:
    """Run one check; what it raises becomes a failed check with the adapter's one-line reason."""
    from pipeline.stages.doctor import Check, Status

    try:
        return check()
    except UserError as error:  # a setting, a file, a missing resource, refused credentials
        return Check(name, Status.FAIL, str(error), fix)
    except ChargebackError as error:  # unreachable or unavailable now
        return Check(name, Status.FAIL, str(error), UNREACHABLE_FIX, unavailable=True)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return Check(name, Status.FAIL, f"{where}{error.strerror or error}", fix)


def show(check: Check) -> None:
    from rich.text import Text

    line = Text(f"{check.status.value:<5} ", style=STYLES[check.status.value])
    line.append(f"{check.name:<10} {check.detail}")
    console.print(line, soft_wrap=True, highlight=False)
    if check.fix:
        say(f"{'':<16} fix: {check.fix}")
