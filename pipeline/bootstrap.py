"""The composition root: the one place that picks adapters for the settings, by URL scheme."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from pipeline.adapters.dead_letter_files import DeadLetterFiles
from pipeline.adapters.local_store import LocalObjectStore
from pipeline.adapters.sqlite_counters import SqliteCounters
from pipeline.adapters.sqlite_ledger import SqliteLedger
from pipeline.domain.costing import Reference
from pipeline.domain.live import Budgets, LivePricer
from pipeline.domain.periods import Period
from pipeline.ports import Counters, Ledger, ObjectStore
from pipeline.reference_files import load_budgets, load_reference
from pipeline.settings import Settings, sqlite_path
from pipeline.stages.correct import CORRECTIONS, load_corrections
from pipeline.stages.report import Report, build_report
from pipeline.warehouse import USAGE_WINDOW, open_warehouse

SNAPSHOTS = "snapshots"
DEAD_LETTERS = "dead-letters"
REPORTS = "reports"
LLM_USAGE = "llm-usage"  # usage records from APIM's LLM logs (pipeline.stages.llm_usage)


class SettingsError(ValueError):
    """A setting that names no usable backend."""


@dataclass(slots=True)
class Pipeline:
    ledger: Ledger
    counters: Counters
    dead_letters: DeadLetterFiles
    snapshots: ObjectStore
    pricer: LivePricer

    def close(self) -> None:
        self.ledger.close()
        self.counters.close()


def open_pipeline(settings: Settings, reference: Reference | None = None) -> Pipeline:
    """Every adapter the ingest and snapshot stages need. `reference` prices live spend
    (default: the shipped catalog and the maps under the home)."""
    if reference is None:
        reference = settings_reference(settings)
    budgets = open_budgets(settings)
    dead_letters, snapshots = open_store(settings, DEAD_LETTERS), open_store(settings, SNAPSHOTS)
    ledger = open_ledger(settings)
    try:
        counters = open_counters(settings, budgets)
    except BaseException:
        ledger.close()
        raise
    return Pipeline(ledger, counters, DeadLetterFiles(dead_letters), snapshots, LivePricer(reference))


def settings_reference(settings: Settings) -> Reference:
    """The catalog, maps and provisioned capacity the settings name (defaults under the home)."""
    if settings.capacity is not None and not settings.capacity.is_file():
        raise SettingsError(f"CHARGEBACK_CAPACITY {settings.capacity}: no such file")
    return load_reference(settings.prices, settings.deployments_csv, settings.cost_centers_csv,
                          settings.capacity_csv, settings.ptu_weights, settings.ptu_idle_owner)


def open_budgets(settings: Settings) -> Budgets:
    """The budgets file, if any; one named by CHARGEBACK_BUDGETS must exist."""
    if settings.budgets is not None and not settings.budgets.is_file():
        raise SettingsError(f"CHARGEBACK_BUDGETS {settings.budgets}: no such file")
    return load_budgets(settings.budgets_csv) if settings.budgets_csv.is_file() else Budgets()


def open_ledger(settings: Settings) -> Ledger:
    url = settings.ledger
    path = sqlite_path(url)
    if path is not None:
        return SqliteLedger(path)
    if url.startswith("cosmos://"):
        from pipeline.adapters.cosmos_ledger import open_cosmos_ledger

        options: dict[str, Any] = {}
        if settings.cosmos_settle_seconds is not None:
            options["settle_seconds"] = settings.cosmos_settle_seconds
        return open_cosmos_ledger(url, key=settings.cosmos_key, create=settings.create_resources, **options)
    raise SettingsError(f"CHARGEBACK_LEDGER {url!r}: expected sqlite:///PATH or cosmos://HOST/DATABASE/CONTAINER")


def open_counters(settings: Settings, budgets: Budgets) -> Counters:
    url = settings.counters
    path = sqlite_path(url)
    if path is not None:
        return SqliteCounters(path, budgets)
    if url.startswith(("redis://", "rediss://")):
        from pipeline.adapters.redis_counters import open_redis_counters

        return open_redis_counters(url, budgets, username=settings.redis_username)
    raise SettingsError(f"CHARGEBACK_COUNTERS {url!r}: expected sqlite:///PATH, redis://HOST:PORT/DB or "
                        "rediss://HOST:PORT/DB")


def open_store(settings: Settings, area: str) -> ObjectStore:
    """The object store for one area (snapshots, dead letters, reports, llm-usage) under CHARGEBACK_STORE."""
    url = f"{settings.store.rstrip('/')}/{area}"
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalObjectStore(Path(url2pathname(parsed.path)))
    if parsed.scheme == "az":
        from pipeline.adapters.blob_store import open_blob_store

        return open_blob_store(url, account_url=settings.storage_account_url,
                               connection_string=settings.storage_connection_string,
                               create_container=settings.create_resources)
    raise SettingsError(f"CHARGEBACK_STORE {settings.store!r}: expected file:///PATH or az://CONTAINER/PREFIX")


def monthly_report(settings: Settings, reference: Reference, month: str,
                   usage_window: timedelta = USAGE_WINDOW) -> Report:
    """The month's report from the committed snapshots and the LLM-log usage, with every recorded
    correction applied: what `chargeback report`, the demo and the daily Functions timer all publish."""
    return period_report(settings, reference, Period.month(month), usage_window)


def period_report(settings: Settings, reference: Reference, period: Period,
                  usage_window: timedelta = USAGE_WINDOW) -> Report:
    """The report of a month or of any range of days (`chargeback report --from/--to`)."""
    # No reference: the report prices its own groups; the per-event `costs` view would only
    # cost time (docs/benchmarks.md).
    warehouse = open_warehouse(open_store(settings, SNAPSHOTS), None, (period.start, period.end),
                               llm_usage=open_store(settings, LLM_USAGE), usage_window=usage_window)
    try:
        corrections = load_corrections(open_store(settings, CORRECTIONS))
        return build_report(warehouse, reference, period, corrections=corrections)
    finally:
        warehouse.connection.close()


def has_embedded_ledger_data(settings: Settings) -> bool:
    path = sqlite_path(settings.ledger)
    return path is None or path.exists()

