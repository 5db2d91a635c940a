"""The composition root: the one place that turns Settings into wired ports, choosing each adapter
by the scheme of its URL (`sqlite:///`, `cosmos://`, `redis://`, `rediss://`, `file://`, `az://`).
Each adapter is imported when a setting names it (the Azure SDKs only for an Azure backend), so
that a command loads only what it uses. Entry points call these functions and hand what they
return to the stages; nothing else opens an adapter.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pipeline.domain.costing import Reference
from pipeline.domain.periods import ALL_TIME, Period, TimeRange, midnight
from pipeline.domain.urls import without_password
from pipeline.inputs.reference import load_reference
from pipeline.lake.areas import CORRECTIONS, DEAD_LETTERS, LLM_USAGE, SNAPSHOTS, ReportStores
from pipeline.ports import Counters, Ledger, ObjectStore, SourceError
from pipeline.settings import Settings, SettingsError, sqlite_path

# What ingest, replay and the Event Hub commands take (the decoder, the live pricer, the sources,
# the dead letters) is imported where they are opened: a report or a query loads none of it.
if TYPE_CHECKING:
    from pipeline.adapters.azure.eventhubs import BatchHandler, Consumer
    from pipeline.domain.decode import RawMessage
    from pipeline.domain.eventhubs import EventHubAddress
    from pipeline.domain.live import Budgets, LivePricer
    from pipeline.lake.dead_letters import DeadLetterFiles
    from pipeline.lake.warehouse import Limits
    from pipeline.stages.budget_gate import BudgetBoard, Published
    from pipeline.stages.replay import Source
    from pipeline.stages.report.focus import FocusContext
    from pipeline.stages.snapshot import SnapshotResult

DEAD_LETTERS_SOURCE = "dead-letters"
JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")  # gzip is read decompressed (inputs.event_files)
SOURCES_HELP = ("dead-letters, a .jsonl/.json file (or .jsonl.gz/.json.gz), - (stdin), a Capture folder, "
                "az://CONTAINER/PREFIX or eventhub://NAMESPACE/HUB")
REPLAY_CONSUMER_GROUP = "chargeback-replay"  # never the live consumer's group: replay moves no checkpoint


@dataclass(slots=True)
class Pipeline:
    """The ports the ingest, snapshot, replay and reconcile stages run on."""

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
    (default: the catalog and maps the settings name)."""
    from pipeline.domain.live import LivePricer
    from pipeline.lake.dead_letters import DeadLetterFiles

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
    """The catalog, maps and provisioned capacity the settings name (defaults under the home);
    a file the settings name explicitly must exist."""
    for named in (settings.prices, settings.deployments, settings.cost_centers, settings.capacity,
                  settings.ptu_weights):
        if named is not None and not named.is_file():
            raise SettingsError(f"{named}: no such file")
    return load_reference(settings.prices, settings.deployments_csv, settings.cost_centers_csv,
                          settings.capacity_csv, settings.ptu_weights, settings.ptu_idle_owner)


def open_budgets(settings: Settings) -> Budgets:
    """The budgets file, if any; one named by CHARGEBACK_BUDGETS must exist."""
    from pipeline.domain.live import Budgets
    from pipeline.inputs.maps import load_budgets

    if settings.budgets is not None and not settings.budgets.is_file():
        raise SettingsError(f"CHARGEBACK_BUDGETS {settings.budgets}: no such file")
    return load_budgets(settings.budgets_csv) if settings.budgets_csv.is_file() else Budgets()


def open_ledger(settings: Settings) -> Ledger:
    url = settings.ledger
    path = sqlite_path(url)
    if path is not None:
        from pipeline.adapters.embedded.ledger import SqliteLedger

        return SqliteLedger(path)
    if url.startswith("cosmos://"):
        from pipeline.adapters.azure.cosmos_ledger import open_cosmos_ledger

        options: dict[str, Any] = {}
        if settings.cosmos_settle_seconds is not None:
            options["settle_seconds"] = settings.cosmos_settle_seconds
        return open_cosmos_ledger(url, key=settings.cosmos_key, create=settings.create_resources, **options)
    raise SettingsError(f"CHARGEBACK_LEDGER {url!r}: expected sqlite:///PATH or cosmos://HOST/DATABASE/CONTAINER")


def ledger_exists(settings: Settings) -> bool:
    """False only for an embedded ledger whose file is not there yet (nothing was ingested)."""
    path = sqlite_path(settings.ledger)
    return path is None or path.exists()


def open_counters(settings: Settings, budgets: Budgets) -> Counters:
    url = settings.counters
    path = sqlite_path(url)
    if path is not None:
        from pipeline.adapters.embedded.counters import SqliteCounters

        return SqliteCounters(path, budgets)
    if url.startswith(("redis://", "rediss://")):
        from pipeline.adapters.azure.redis_counters import open_redis_counters

        return open_redis_counters(url, budgets, username=settings.redis_username)
    raise SettingsError(f"CHARGEBACK_COUNTERS {without_password(url)!r}: expected sqlite:///PATH, "
                        "redis://HOST:PORT/DB or rediss://HOST:PORT/DB")


def open_store(settings: Settings, area: str) -> ObjectStore:
    """The object store for one area (pipeline.lake.areas) under CHARGEBACK_STORE."""
    url = f"{settings.store.rstrip('/')}/{area}"
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return folder_store(Path(unquote(parsed.path)))
    if parsed.scheme == "az":
        from pipeline.adapters.azure.blob_store import open_blob_store

        return open_blob_store(url, account_url=settings.storage_account_url,
                               connection_string=settings.storage_connection_string,
                               create_container=settings.create_resources, client_id=settings.azure_client_id)
    raise SettingsError(f"CHARGEBACK_STORE {settings.store!r}: expected file:///PATH or az://CONTAINER/PREFIX")


def folder_store(folder: Path) -> ObjectStore:
    """A local folder as an object store (`chargeback report --out`): files are written to a
    temporary name and renamed into place."""
    from pipeline.adapters.embedded.local_store import LocalObjectStore

    return LocalObjectStore(folder)


def report_stores(settings: Settings) -> ReportStores:
    """Where a report reads from: the snapshots, the LLM-log usage and the corrections log."""
    return ReportStores(open_store(settings, SNAPSHOTS), open_store(settings, LLM_USAGE),
                        open_store(settings, CORRECTIONS))


def warehouse_limits(settings: Settings) -> Limits:
    """DuckDB's memory limit and spill folder for the settings."""
    from pipeline.lake.warehouse import Limits

    default = Limits()
    return Limits(settings.duckdb_temp_directory or default.temp_directory, settings.duckdb_memory_limit)


def focus_context(settings: Settings) -> FocusContext:
    """The billing account the FOCUS rows name (the defaults when the settings name none)."""
    from pipeline.stages.report.focus import FocusContext

    default = FocusContext()
    return FocusContext(settings.focus_billing_account_id or default.billing_account_id,
                        settings.focus_billing_account_name or default.billing_account_name)


def open_sources(names: Sequence[str], settings: Settings, when: TimeRange = ALL_TIME,
                 partitions: Collection[str] = (), consumer_group: str = REPLAY_CONSUMER_GROUP) -> list[Source]:
    """Every replay source, checked and listed before anything is replayed. `when` selects
    Capture records and Event Hub events by enqueued time and dead letters by when they were
    rejected; JSON-lines files are replayed whole. Partitions select Capture files and Event Hub
    partitions; an Event Hub is read through `consumer_group` with no checkpoint store."""
    return [_open_source(name, settings, when, partitions, consumer_group) for name in names]


def _open_source(name: str, settings: Settings, when: TimeRange, partitions: Collection[str],
                 consumer_group: str = REPLAY_CONSUMER_GROUP) -> Source:
    from pipeline.domain.eventhubs import parse_eventhub_url
    from pipeline.inputs.event_files import STDIN, json_lines
    from pipeline.lake.dead_letters import dead_letter_messages
    from pipeline.stages.replay import Source  # replays only: not paid by every command's start-up

    if name.startswith("eventhub://"):
        return Source(name, _eventhub_messages(settings, parse_eventhub_url(name), when, partitions, consumer_group))
    if name == DEAD_LETTERS_SOURCE:
        return Source(name, dead_letter_messages(open_store(settings, DEAD_LETTERS), when), from_dead_letters=True)
    if name == STDIN:
        return Source(name, json_lines(name))
    if name.startswith("az://"):
        from pipeline.adapters.azure.blob_store import open_blob_store

        store: ObjectStore = open_blob_store(name, account_url=settings.storage_account_url,
                                             connection_string=settings.storage_connection_string,
                                             client_id=settings.azure_client_id)
    elif Path(name).is_dir():
        store = folder_store(Path(name))
    elif Path(name).is_file():
        if not name.endswith(JSON_SUFFIXES):
            raise SourceError(f"{name}: not a source replay knows ({SOURCES_HELP})")
        return Source(name, json_lines(name))
    else:
        raise SourceError(f"{name}: no such file or folder (a source is {SOURCES_HELP})")
    from pipeline.adapters.azure.capture import capture_files, capture_messages

    try:
        files = capture_files(store, partitions, when)
    except SourceError:
        raise
    except Exception as error:  # the Blob service refused (no such container, no access)
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SourceError(f"{name}: cannot list Capture files: {message}") from None
    return Source(name, capture_messages(store, files, when),
                  note=None if files else _no_capture_files(store, when, partitions))


def _no_capture_files(store: ObjectStore, when: TimeRange, partitions: Collection[str]) -> str:
    """Why a Capture source yields nothing: no Capture file under it at all (most likely the wrong
    folder or prefix), or none of the partitions and times asked for."""
    from pipeline.adapters.azure.capture import capture_files

    if (partitions or when != ALL_TIME) and capture_files(store):
        return "no Capture file under it of the partitions and times asked for (--partition, --from, --to)"
    return ("no Event Hubs Capture file (.avro) under it: name the folder or az://CONTAINER/PREFIX above "
            "{Namespace}/{EventHub}/{PartitionId}/{Year}/... (where Capture writes)")


def fetch_azure_metrics(accounts: list[str], period: Period) -> Iterator[tuple[str, dict[str, Any]]]:
    """Azure Monitor's metrics of the accounts over the period (hourly, by deployment), as
    Metrics REST responses (pipeline.adapters.azure.monitor_metrics), as DefaultAzureCredential."""
    from pipeline.adapters.azure.monitor_metrics import fetch_metrics

    return fetch_metrics(accounts, midnight(period.start), midnight(period.end))


def budget_board_of(settings: Settings, month: str, now: datetime) -> BudgetBoard:
    """Every budget's status for the month and the gate of every subscription it covers, from the
    live counters (and, for product budgets, the products the month's snapshots name)."""
    from pipeline.domain.live import BudgetScope
    from pipeline.lake.warehouse import open_warehouse
    from pipeline.stages.budget_gate import budget_board, product_members

    budgets = open_budgets(settings)
    reference = settings_reference(settings)
    products: dict[str, frozenset[str]] = {}
    if any(b.scope is BudgetScope.PRODUCT for b in budgets):
        period = Period.month(month)
        warehouse = open_warehouse(report_stores(settings).snapshots, None, (period.start, period.end),
                                   limits=warehouse_limits(settings))
        try:
            products = product_members(warehouse, period)
        finally:
            warehouse.connection.close()
    counters = open_counters(settings, budgets)
    try:
        return budget_board(budgets, counters, reference, month, now, products)
    finally:
        counters.close()


def publish_budgets(settings: Settings, now: datetime) -> Published:
    """This month's budget states into the store's `gateway` area, where APIM reads them."""
    from pipeline.lake.areas import GATEWAY
    from pipeline.stages.budget_gate import publish_gates

    board = budget_board_of(settings, f"{now:%Y-%m}", now)
    return publish_gates(open_store(settings, GATEWAY), board, now)


def retail_price_pages(region: str | None) -> Iterator[tuple[str, bytes]]:
    """The Retail Prices API's Foundry Models pages (url, body), over HTTP."""
    from pipeline.adapters.azure.retail_prices_api import fetch_pages

    return fetch_pages(region)


def eventhub_address(settings: Settings, url: str | None) -> EventHubAddress:
    """The hub `eventhub://NAMESPACE/HUB` names, or by default the Functions app's usage hub
    (EVENTHUB__fullyQualifiedNamespace and CHARGEBACK_EVENTHUB_NAME)."""
    from pipeline.domain.eventhubs import endpoint_host, parse_eventhub_url

    if url:
        return parse_eventhub_url(url)
    namespace = settings.eventhub_namespace or endpoint_host(settings.eventhub_connection or "")
    if not namespace or not settings.eventhub_name:
        raise SettingsError("name the hub (eventhub://NAMESPACE/HUB) or set EVENTHUB__fullyQualifiedNamespace "
                            "and CHARGEBACK_EVENTHUB_NAME")
    return parse_eventhub_url(f"eventhub://{namespace}/{settings.eventhub_name}")


def _connection_string(settings: Settings, address: EventHubAddress) -> str | None:
    # EVENTHUB (a connection string, local and dev only) when it is for this namespace.
    from pipeline.domain.eventhubs import endpoint_host

    connection = settings.eventhub_connection
    return connection if connection and endpoint_host(connection) == address.namespace else None


def open_consumer(settings: Settings, address: EventHubAddress, handler: BatchHandler, *,
                  consumer_group: str | None = None, checkpoints: str | None = None) -> Consumer:
    """A consumer of the hub whose instances share its partitions through the checkpoint store
    (`az://CONTAINER`, default CHARGEBACK_CHECKPOINTS); `handler` writes each batch."""
    from pipeline.adapters.azure.eventhubs import Consumer, consumer_client, open_checkpoint_store

    url = checkpoints or settings.checkpoints
    if not url:
        raise SettingsError("name the checkpoint container: --checkpoints az://CONTAINER or CHARGEBACK_CHECKPOINTS")
    store = open_checkpoint_store(url, account_url=settings.storage_account_url,
                                  connection_string=settings.storage_connection_string)
    client = consumer_client(address, consumer_group or settings.consumer_group,
                             connection_string=_connection_string(settings, address), checkpoint_store=store)
    return Consumer(client, handler, address.source)


def send_to_eventhub(settings: Settings, address: EventHubAddress, events: Iterator[tuple[bytes, str | None]]) -> int:
    """Send (body, partition key) events to the hub; how many were sent."""
    from pipeline.adapters.azure.eventhubs import producer_client, send_events

    return send_events(producer_client(address, connection_string=_connection_string(settings, address)), events)


def _eventhub_messages(settings: Settings, address: EventHubAddress, when: TimeRange, partitions: Collection[str],
                       consumer_group: str) -> Iterator[RawMessage]:
    from pipeline.adapters.azure.eventhubs import consumer_client, read_events

    connection = _connection_string(settings, address)
    yield from read_events(lambda: consumer_client(address, consumer_group, connection_string=connection),
                           address.source, when.start, when.end, sorted(partitions))


def snapshot_pending(settings: Settings) -> SnapshotResult | None:
    """Publish the ledger's events not yet in the snapshots (what `report`, `query` and the
    finance API do first, so that they see every event); None when there is no ledger yet.
    Only the ledger and the snapshot store are opened: a report never needs the live counters
    (Redis may be down) nor the ingest's modules (pyarrow.compute: 90 ms of every start)."""
    if not ledger_exists(settings):
        return None
    from pipeline.stages.snapshot import snapshot  # here: a report from the store alone does not load it

    ledger = open_ledger(settings)
    try:
        return snapshot(ledger, open_store(settings, SNAPSHOTS))
    finally:
        ledger.close()
