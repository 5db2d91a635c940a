"""Timer triggers: Parquet snapshots every 15 minutes, the budgets' gateway state every minute,
the daily chargeback reports and the daily reconciliation with Azure Monitor.

No `from __future__ import annotations` here: the Functions worker reads the triggers'
parameter annotations at indexing time and expects real types, not strings.

Both open their adapters per run and close them (a run every 15 minutes or every day does not
need a long-lived client), and both are safe to run twice: a snapshot commits by a
create-if-absent manifest, and a report is re-derived and replaces the previous one.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import azure.functions as func
from opentelemetry.metrics import MeterProvider

from pipeline.app import (
    fetch_azure_metrics,
    focus_context,
    open_ledger,
    open_store,
    publish_budgets,
    report_stores,
    settings_reference,
    warehouse_limits,
)
from pipeline.domain.periods import Period
from pipeline.entrypoints.functions.eventhub import worker_meter_provider
from pipeline.entrypoints.functions.metrics import record_reconciliation, record_stream_status
from pipeline.inputs.azure_metrics import read_responses
from pipeline.lake.areas import LLM_USAGE, REPORTS, SNAPSHOTS, ReportStores
from pipeline.lake.warehouse import open_warehouse
from pipeline.ports import SourceError
from pipeline.settings import Settings, SettingsError
from pipeline.stages.azure_reconcile import Reconciliation, reconcile_azure
from pipeline.stages.backfill import BackfillResult, backfill_rollups
from pipeline.stages.compaction import RETAIN, CompactionResult, compact_recent_days
from pipeline.stages.day_rollups import DayRollupResult, roll_up_recent_days
from pipeline.stages.llm_compaction import LlmCompactionResult, compact_recent_llm_days
from pipeline.stages.llm_usage import StreamStatus, stream_status
from pipeline.stages.report.build import period_report
from pipeline.stages.report.model import FORMATS, Report, ReportError, formats_of
from pipeline.stages.report.publish import publish_report
from pipeline.stages.report.reconciled import attach_reconciliation
from pipeline.stages.snapshot import SnapshotConflict, SnapshotResult, snapshot

SNAPSHOT_SCHEDULE = "0 */15 * * * *"
REPORT_SCHEDULE = "0 30 1 * * *"  # 01:30 UTC (WEBSITE_TIME_ZONE unset), after the 01:15 snapshot
# Last month's report is refreshed on the first LATE_DAYS days of a month: usage of its last
# hours keeps arriving after midnight (Event Hub backlog, retried batches, the 15-minute snapshot
# cadence, streamed usage joined later), and maps or prices fixed in those days must reach it
# before finance closes the month. Later on it is left as published (`chargeback report`
# re-derives any month on demand).
LATE_DAYS = 5
# Files given a rollup after each snapshot, in a store whose earlier files have none (upgraded in
# place): a year of 15-minute files in about a week of runs, each run reading at most 50 files.
# `chargeback snapshot --rollups` does up to 10,000 at once.
BACKFILL_FILES_PER_RUN = 50

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("snapshot_usage")
@bp.timer_trigger(arg_name="timer", schedule=SNAPSHOT_SCHEDULE, run_on_startup=False, use_monitor=True)
def snapshot_timer(timer: func.TimerRequest) -> None:
    settings = Settings.from_env()
    try:
        result = snapshot_ledger(settings)
    except SnapshotConflict:
        logging.warning("snapshot: another run committed first; the next run continues from it")
        return
    logging.info("snapshot: %d events -> %d new file(s), cursor %s", result.rows, len(result.files), result.cursor)
    check_llm_logs(settings, worker_meter_provider(settings))
    backfill_snapshots(settings)
    compact_settled_days(settings)
    roll_up_settled_days(settings)
    compact_llm_usage(settings)


def backfill_snapshots(settings: Settings) -> BackfillResult | None:
    """Roll up a few of the files committed before rollups (pipeline.stages.backfill), so that an
    upgraded store's reports come to sum rollups without anyone running `snapshot --rollups`;
    one read a run once none is left. What fails here is logged: the snapshot is committed, and
    the next run tries again."""
    try:
        done = backfill_rollups(open_store(settings, SNAPSHOTS), BACKFILL_FILES_PER_RUN, unless_complete=True)
    except SnapshotConflict:
        logging.warning("rollups: a snapshot committed first; the next run rolls up the files again")
        return None
    except SourceError as error:  # a committed file that is gone or damaged: reports of its day fail too
        logging.error("rollups: %s", error)
        return None
    if done.files or done.unrolled:
        logging.info("rollups: %d earlier file(s) rolled up (manifest %s), %d left, %d summed from events",
                     done.files, done.manifest, done.left, done.unrolled)
    return done


def compact_settled_days(settings: Settings, now: datetime | None = None) -> CompactionResult | None:
    """Rewrite the small files of each of the last settled days that has many (a day of
    15-minute runs has 96), and of the oldest such day before them, as one (compact_recent_days),
    so that whatever reads the day's events opens one file. What fails here is logged: the
    snapshot is committed, and the next run tries again."""
    try:
        done = compact_recent_days(open_store(settings, SNAPSHOTS), now)
    except SnapshotConflict:
        logging.warning("compaction: a snapshot committed first; the next run compacts the days again")
        return None
    _log_compaction("compaction", done, f" ({done.rows} events, manifest {done.manifest})")
    return done


def compact_llm_usage(settings: Settings, now: datetime | None = None) -> LlmCompactionResult:
    """Rewrite the LLM-log usage files of each of the last settled days that has many (one per
    host batch), and of the oldest such day before them, as one (compact_recent_llm_days)."""
    done = compact_recent_llm_days(open_store(settings, LLM_USAGE), now)
    _log_compaction("llm usage", done)
    return done


def _log_compaction(area: str, done: CompactionResult | LlmCompactionResult, detail: str = "") -> None:
    if done.days:
        logging.info("%s: %d settled day(s), %d file(s) rewritten as %d%s", area, done.days, done.replaced,
                     done.written, detail)
    if done.unreadable:
        logging.error("%s: days left as they are, a file of theirs unreadable: %s", area, ", ".join(done.unreadable))
    if done.deleted:
        logging.info("%s: %d file(s) replaced over %d days ago deleted", area, done.deleted, RETAIN.days)


def roll_up_settled_days(settings: Settings, now: datetime | None = None) -> DayRollupResult | None:
    """Sum the files' rollups of each of the last settled days (roll_up_recent_days) into one, so
    that a report reads one rollup a day instead of one per 15-minute file; a day done before is
    only looked at. What fails here is logged: the snapshot is committed, and the next run tries
    again."""
    try:
        done = roll_up_recent_days(open_store(settings, SNAPSHOTS), now)
    except SnapshotConflict:
        logging.warning("day rollups: a snapshot committed first; the next run sums the days again")
        return None
    if done.days:
        logging.info("day rollups: %d settled day(s) given one rollup of %d file(s) (manifest %s)",
                     done.days, done.files, done.manifest)
    return done


def check_llm_logs(settings: Settings, meter_provider: MeterProvider, now: datetime | None = None) -> StreamStatus:
    """After a snapshot: how many streamed requests wait for LLM-log usage and how fresh the LLM
    logs are, as metrics, and a warning in the log when they stopped coming."""
    stale_after = settings.llm_log_stale_after
    status = stream_status(open_store(settings, SNAPSHOTS), open_store(settings, LLM_USAGE), now, stale_after,
                           warehouse_limits(settings))
    record_stream_status(status, meter_provider=meter_provider)
    if status.stale:
        logging.warning("LLM logs: %d streamed request(s) in the last %s but no GatewayLlmLogs record since %s; "
                        "check the APIM diagnostic setting and ingest_llm_logs", status.recent_streams, stale_after,
                        status.last_record.isoformat() if status.last_record else "ever")
    return status


# The next scheduled run is a day away, so a failed run is retried a few times (it is
# idempotent); timer retries stay on the instance that ran it.
@bp.function_name("refresh_reports")
@bp.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:10:00")
@bp.timer_trigger(arg_name="timer", schedule=REPORT_SCHEDULE, run_on_startup=False, use_monitor=True)
def report_timer(timer: func.TimerRequest) -> None:
    keys = refresh_reports(Settings.from_env(), datetime.now(UTC).date())
    logging.info("reports published: %s", ", ".join(keys))


# Azure Monitor's metrics are minutes late and Cost Management's hours: at 03:00 UTC yesterday is
# whole in the metrics. The month so far is reconciled, so a late fix shows the next day.
RECONCILE_SCHEDULE = "0 0 3 * * *"


@bp.function_name("reconcile_azure")
@bp.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:15:00")
@bp.timer_trigger(arg_name="timer", schedule=RECONCILE_SCHEDULE, run_on_startup=False, use_monitor=True)
def reconcile_timer(timer: func.TimerRequest) -> None:
    settings = Settings.from_env()
    reconcile_month(settings, datetime.now(UTC).date(), fetch_azure_metrics, worker_meter_provider(settings))


MetricsSource = Callable[[list[str], Period], Iterable[tuple[str, dict[str, Any]]]]


def reconcile_month(settings: Settings, today: date, fetch: MetricsSource,
                    meter_provider: MeterProvider) -> Reconciliation | None:
    """Reconcile the month of yesterday, up to yesterday, against Azure Monitor's metrics of the
    deployment map's accounts; publish `reconciliation-YYYY-MM.csv` into the `reports` area,
    record the gap metrics and log a warning naming each gap. None (and a warning) when no
    deployment names its account."""
    reference = settings_reference(settings)
    accounts = reference.deployments.accounts()
    if not accounts:
        logging.warning("reconcile: no deployment of the deployment map names its account (column account): "
                        "nothing to compare with Azure Monitor")
        return None
    yesterday = today - timedelta(days=1)
    period = Period.month(f"{yesterday:%Y-%m}")
    metrics = read_responses(fetch(accounts, period), period.start, period.end)
    stores = report_stores(settings)
    warehouse = open_warehouse(stores.snapshots, None, (period.start, period.end), llm_usage=stores.llm_usage,
                               limits=warehouse_limits(settings))
    try:
        reconciliation = reconcile_azure(warehouse, reference, period, metrics, settings.reconcile_tolerance)
    finally:
        warehouse.connection.close()
    reconciliation.rows = [row for row in reconciliation.rows if row.day <= yesterday]
    open_store(settings, REPORTS).put(reconciliation.file_name, reconciliation.csv(), overwrite=True)
    record_reconciliation(reconciliation, meter_provider=meter_provider)
    for row in reconciliation.gaps:
        requests_gap, prompt_gap, completion_gap = row.gaps
        logging.warning("reconcile: %s %s %s: requests %+d, prompt tokens %+d, completion tokens %+d (%s%%): lost "
                        "events, missing LLM logs or traffic around APIM", row.day, row.deployment, row.status,
                        requests_gap, prompt_gap, completion_gap, row.gap_pct)
    logging.info("reconcile: %d deployment-day(s) compared, %d over %s%%", len(reconciliation.rows),
                 len(reconciliation.gaps), settings.reconcile_tolerance)
    return reconciliation


# Budgets become gateway state every minute: with the fragment's 60-second cache, a subscription
# is refused within about two minutes of crossing a block budget (docs/budgets.md).
BUDGET_SCHEDULE = "0 * * * * *"


@bp.function_name("publish_budgets")
@bp.timer_trigger(arg_name="timer", schedule=BUDGET_SCHEDULE, run_on_startup=False, use_monitor=True)
def budget_timer(timer: func.TimerRequest) -> None:
    published = publish_budgets(Settings.from_env(), datetime.now(UTC))
    if published.written or published.removed:
        logging.warning("budgets: gateway state written for %s; removed for %s", ", ".join(published.written) or "none",
                        ", ".join(published.removed) or "none")


def snapshot_ledger(settings: Settings) -> SnapshotResult:
    """Copy the ledger events not yet snapshotted into Parquet (the `snapshot` stage)."""
    ledger = open_ledger(settings)
    try:
        return snapshot(ledger, open_store(settings, SNAPSHOTS))
    finally:
        ledger.close()


def refresh_reports(settings: Settings, today: date) -> list[str]:
    """Build the reports of `report_months(today)` from the committed snapshots, priced with
    the settings' catalog and maps (as `chargeback report`), and publish them into the
    `reports` area of the store in every format (CHARGEBACK_REPORT_FORMATS to choose): the CSV,
    daily CSV and Parquet, the FOCUS 1.2 export in the FinOps hubs layout and the HTML report;
    returns the keys written."""
    formats = report_formats(settings)
    reference = settings_reference(settings)
    reports, stores, focus = open_store(settings, REPORTS), report_stores(settings), focus_context(settings)
    keys = []
    for month in report_months(today):
        report = period_report(stores, reference, Period.month(month), limits=warehouse_limits(settings))
        if report.rollups_warning:
            logging.warning("report %s: %s", month, report.rollups_warning)
        _warn_of_unbilled(month, report, stores)
        attach_reconciliation(report, reports)  # the HTML shows the daily reconciliation, when there is one
        keys.extend(publish_report(report, reports, formats, today=today, focus=focus).keys)
    return keys


def _warn_of_unbilled(month: str, report: Report, stores: ReportStores) -> None:
    """What a reader of the published files would not see: a store without any committed
    snapshot (the wrong CHARGEBACK_STORE, or a snapshot timer that never ran) publishes empty
    reports; usage charged to `unassigned` is billed to no one."""
    from pipeline.lake.manifests import committed_days
    from pipeline.stages.report.unassigned import unassigned_usage

    if not report.requests and committed_days(stores.snapshots) is None:
        logging.warning("report %s: %s holds no committed snapshot, so the report is empty: check CHARGEBACK_STORE "
                        "and the snapshot_usage timer's runs", month, stores.snapshots.url)
    unassigned = unassigned_usage(report)
    if unassigned is not None:
        logging.warning("report %s: %s; map them in the cost-center file (CHARGEBACK_COST_CENTERS)", month,
                        unassigned.describe())


def report_formats(settings: Settings) -> list[str]:
    """CHARGEBACK_REPORT_FORMATS, checked; every format when unset."""
    if not settings.report_formats:
        return list(FORMATS)
    try:
        return formats_of(settings.report_formats)
    except ReportError:
        raise SettingsError(f"CHARGEBACK_REPORT_FORMATS {settings.report_formats!r}: choose from "
                            f"{', '.join(FORMATS)}") from None


def report_months(today: date, late_days: int = LATE_DAYS) -> list[str]:
    """`2026-11-03` -> ['2026-11', '2026-10']; `2026-11-20` -> ['2026-11']."""
    months = [f"{today:%Y-%m}"]
    if today.day <= late_days:
        last_of_previous = today.replace(day=1) - timedelta(days=1)
        months.append(f"{last_of_previous:%Y-%m}")
    return months

