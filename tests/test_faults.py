"""Fault injection on the real local servers, each test ending with exact totals: a consumer
killed with SIGKILL between the ledger write and its checkpoint, Redis stopped mid-run, the Cosmos
DB stand-in answering 429/503 through a fault-injecting HTTPS proxy, a snapshot upload failing
halfway (local folder and Azurite). docs/guarantees.md names each test."""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest
import redis
from azure.cosmos import CosmosClient
from azure.storage.blob import BlobServiceClient
from click.testing import CliRunner
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from pipeline.adapters.azure.blob_store import BlobObjectStore
from pipeline.adapters.azure.cosmos_ledger import open_cosmos_ledger
from pipeline.adapters.azure.redis_counters import RedisCounters
from pipeline.adapters.embedded.counters import SqliteCounters
from pipeline.adapters.embedded.ledger import SqliteLedger
from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import Pipeline, open_pipeline
from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import LiveCharge, LivePricer, SubscriptionMonth
from pipeline.entrypoints.cli import main
from pipeline.entrypoints.functions.eventhub import ingest_events
from pipeline.lake.dead_letters import DeadLetterFiles
from pipeline.lake.event_columns import event_columns
from pipeline.lake.manifests import manifests, published_files
from pipeline.lake.warehouse import open_warehouse
from pipeline.ports import AccessRefused, CountersUnavailable, LedgerUnavailable, ObjectStore
from pipeline.settings import Settings
from pipeline.stages.ingest import IngestResult, ingest_batch
from pipeline.stages.reconcile import reconcile
from pipeline.stages.snapshot import snapshot
from tests.conftest import ReferenceFiles
from tests.factories import event, line, usage
from tests.fault_tools import FailingStore, Fault, FaultProxy, RedisServer, free_port, run_consumer
from tests.servers import CosmosEndpoint, in_ci

MONTH = "2026-10"


def traffic(count: int, tag: str) -> list[bytes]:
    """`count` valid events over two subscriptions and two priced deployments, then a repeat of
    the first three (conflicting or not) and two bad lines."""
    bodies = [line(event(eventId=f"{tag}-{n:04d}", subscriptionId=f"sub-{'ab'[n % 2]}",
                         deployment=("dep-alpha", "dep-beta")[n % 3 == 0], model=None,
                         timestamp=f"2026-10-{1 + n % 28:02d}T{n % 24:02d}:05:00Z",
                         usage=usage(100 + 7 * n, 10 + n % 13, cached=n % 5))) for n in range(count)]
    return [*bodies, *bodies[:2], line(event(eventId=f"{tag}-0002", usage=usage(9, 9))), b"not json", b""]


def expected(lines: list[bytes], reference: ReferenceFiles) -> list[SubscriptionMonth]:
    """Month-to-date rows when every valid event counts exactly once (first copy wins)."""
    first: dict[str, UsageEvent] = {}
    for decoded in decode_batch([RawMessage(body, "oracle", str(n)) for n, body in enumerate(lines)]).events:
        first.setdefault(decoded.event_id, decoded)
    oracle = SqliteCounters(Path(":memory:"))
    oracle.add(list(first.values()), LivePricer(reference.load()).charges(list(first.values())))
    rows = oracle.month_to_date(MONTH)
    oracle.close()
    assert sum(row.requests for row in rows) == len(first)
    return rows


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (stopped and started by PID); persistent across restarts."""
    try:
        server = RedisServer(tmp_path / "redis", persist=True)
    except FileNotFoundError as error:
        if in_ci():
            pytest.fail(str(error))
        pytest.skip(str(error))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cosmos_database(cosmos_endpoint: CosmosEndpoint) -> Iterator[str]:
    """A fresh database name on the stand-in, deleted afterwards."""
    name = f"faults-{uuid.uuid4().hex[:12]}"
    yield name
    client = CosmosClient(cosmos_endpoint.url, credential=cosmos_endpoint.key)
    client.delete_database(name)
    client.close()


def cosmos_url(endpoint: str, database: str) -> str:
    return f"cosmos://{endpoint.removeprefix('https://').rstrip('/')}/{database}/ledger"


@pytest.fixture
def env(tmp_path: Path, reference_files: ReferenceFiles, cosmos_endpoint: CosmosEndpoint, cosmos_database: str,
        private_redis: RedisServer) -> dict[str, str]:
    """Settings variables for the Cosmos stand-in ledger and the private Redis counters."""
    return {"CHARGEBACK_HOME": str(tmp_path / "home"),
            "CHARGEBACK_LEDGER": cosmos_url(cosmos_endpoint.url, cosmos_database),
            "CHARGEBACK_COSMOS_KEY": cosmos_endpoint.key, "CHARGEBACK_COSMOS_SETTLE_SECONDS": "0",
            "CHARGEBACK_CREATE_RESOURCES": "1", "CHARGEBACK_COUNTERS": private_redis.url,
            "CHARGEBACK_PRICES": str(reference_files.prices),
            "CHARGEBACK_DEPLOYMENTS": str(reference_files.deployments),
            "CHARGEBACK_COST_CENTERS": str(reference_files.cost_centers)}


# ---------------------------------------------------------------------------------------------- SIGKILL

def test_sigkill_between_ledger_and_checkpoint_then_redelivery_counts_every_event_once(
        env: dict[str, str], tmp_path: Path, reference_files: ReferenceFiles) -> None:
    lines = traffic(40, "kill")  # 45 lines: 5 batches of 10 (the last one shorter)
    data = tmp_path / "hub" / "partition-0.jsonl"
    data.parent.mkdir()
    data.write_bytes(b"\n".join(lines) + b"\n")
    opened = open_pipeline(Settings.from_env(env), reference_files.load())

    def state() -> tuple[int, int, str]:
        """(ledger events, counted requests, checkpoint): what the kill left behind."""
        checkpoint = data.parent / "checkpoint"
        return (opened.ledger.count(), sum(row.requests for row in opened.counters.month_to_date(MONTH)),
                checkpoint.read_text() if checkpoint.exists() else "-")

    try:
        assert run_consumer(data, env, "ledger:1") == "ledger 1"
        assert state() == (20, 10, "0")  # batch 1 is in the ledger, not counted, not acknowledged
        assert run_consumer(data, env, "counters:2") == "counters 2"  # redelivered from batch 1
        assert state() == (30, 30, "1")  # batch 2 written and counted, not acknowledged
        run_consumer(data, env, kill_after=random.uniform(0.05, 1.5))  # wherever the kill lands
        assert run_consumer(data, env) == "done"  # restarted from its checkpoint, to the end
        assert state() == (40, 40, "4")
        # and Event Hub redelivers everything once more (a rebalance back to an old checkpoint)
        again = ingest_batch([RawMessage(b, str(data), str(n)) for n, b in enumerate(lines)], opened.ledger,
                             opened.counters, opened.dead_letters, opened.pricer)
        assert (again.ingested, again.duplicates, again.dead_lettered, again.counted) == (0, 43, 2, 0)
        assert opened.ledger.count() == 40
        assert opened.counters.month_to_date(MONTH) == expected(lines, reference_files)
    finally:
        opened.close()


# ---------------------------------------------------------------------------------------------- Redis down

def ingest_lines(opened: Pipeline, lines: list[bytes], source: str = "test") -> IngestResult:
    return ingest_batch([RawMessage(b, source, str(n)) for n, b in enumerate(lines)], opened.ledger,
                        opened.counters, opened.dead_letters, opened.pricer)


def test_redis_stopped_mid_run_degrades_and_reconcile_repairs_the_counters(
        env: dict[str, str], private_redis: RedisServer, reference_files: ReferenceFiles) -> None:
    lines = traffic(48, "down")[:48]
    batches = [lines[i:i + 12] for i in range(0, 48, 12)]
    opened = open_pipeline(Settings.from_env(env), reference_files.load())
    try:
        assert not ingest_lines(opened, batches[0]).counters_degraded
        private_redis.stop()  # by PID; it saves its data set on the way down
        for batch in batches[1:3]:
            result = ingest_lines(opened, batch)
            assert (result.ingested, result.counted, result.counters_degraded, result.uncounted) == (12, 0, True, 12)
            assert result.counters_error and "ConnectionError" in result.counters_error
            assert result.uncounted_months == {MONTH}
        assert opened.ledger.count() == 36  # the ledger kept every event while Redis was down
        private_redis.start()  # back, with the counts of batch 0 only
        assert ingest_lines(opened, batches[3]).counted == 12
        drift = reconcile(opened.ledger, opened.counters, opened.pricer, MONTH)
        assert {(d.key, d.counted, d.expected) for d in drift.drift if d.measure == "requests"} >= {
            ("subscription sub-a", 12, 24), ("subscription sub-b", 12, 24)}
        repaired = reconcile(opened.ledger, opened.counters, opened.pricer, MONTH, apply=True)
        assert (repaired.events, repaired.applied, repaired.drift_after) == (48, True, [])
        assert opened.counters.month_to_date(MONTH) == expected(lines, reference_files)
    finally:
        opened.close()


def test_cli_ingest_warns_when_the_counters_are_unreachable(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    data.write_bytes(b"\n".join(traffic(3, "cli")[:3]) + b"\n")
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(main, ["ingest", str(data)], env={"CHARGEBACK_COUNTERS": nobody})
    output = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 0, output
    assert "ingested 3" in output and "warning: the live counters were unavailable" in output
    assert "3 event(s) are in the ledger but not counted" in output
    assert f"chargeback reconcile --apply --month {MONTH}" in output


def test_a_degraded_batch_is_logged_and_counted_in_the_metrics(pipeline: Pipeline, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: object) -> None:  # what the Redis adapter raises on a timeout
        cause = redis.exceptions.TimeoutError("Timeout reading from 127.0.0.1:6380")
        raise CountersUnavailable(f"Redis: TimeoutError: {cause}") from cause

    for name in ("add", "add_columns"):  # objects, or Arrow columns (the embedded counters take those)
        monkeypatch.setattr(pipeline.counters, name, unavailable)
    reader = InMemoryMetricReader()
    bodies = traffic(4, "metric")[:4]
    result = ingest_events([func.EventHubEvent(body=b, sequence_number=n) for n, b in enumerate(bodies)], pipeline,
                           "eventhub:test/usage", meter_provider=SdkMeterProvider(metric_readers=[reader]))
    assert (result.ingested, result.counters_degraded, pipeline.ledger.count()) == (4, True, 4)
    data = reader.get_metrics_data()
    assert data is not None
    points = [getattr(point, "value", None) for resource in data.resource_metrics for scope in resource.scope_metrics
              for metric in scope.metrics if metric.name == "chargeback.counters.degraded"
              for point in metric.data.data_points]
    assert points == [1]
    [record] = [r for r in caplog.records if r.name == "pipeline.stages.ingest"]
    assert record.levelname == "WARNING" and "reconcile --apply --month M" in record.getMessage()
    assert "TimeoutError" in record.getMessage() and "2026-10" in record.getMessage()
    for name in ("add", "add_columns"):  # a bug is not an outage: it fails the batch
        monkeypatch.setattr(pipeline.counters, name, lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ingest_lines(pipeline, bodies)


def test_the_embedded_counters_report_a_store_they_cannot_write_as_unavailable(tmp_path: Path) -> None:
    counters = SqliteCounters(tmp_path / "counters.sqlite3")
    try:
        events = decode_batch([RawMessage(line(event()), "test", "1")]).events
        counters._db.execute("PRAGMA query_only = ON")  # every write now fails as on a read-only disk
        charges = [LiveCharge("CC", 0, "USD", True)]
        with pytest.raises(CountersUnavailable, match="readonly") as raised:
            counters.add(events, charges)
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(CountersUnavailable, match="readonly"):
            counters.add_columns(event_columns(events, charges))
    finally:
        counters.close()


# ---------------------------------------------------------------------------------------------- Cosmos 429/503

@pytest.fixture
def proxy(cosmos_endpoint: CosmosEndpoint) -> Iterator[FaultProxy]:
    started = FaultProxy(cosmos_endpoint.url)
    started.start()
    yield started
    started.stop()


def through(proxy: FaultProxy, env: dict[str, str], reference_files: ReferenceFiles, tmp_path: Path,
            retry_budget_seconds: float = 60.0, workers: int = 16) -> Pipeline:
    """The pipeline of `env`, its Cosmos DB ledger reached through the proxy."""
    database = env["CHARGEBACK_LEDGER"].split("/")[-2]
    ledger = open_cosmos_ledger(cosmos_url(proxy.url, database), key=env["CHARGEBACK_COSMOS_KEY"], create=True,
                                settle_seconds=0, retry_budget_seconds=retry_budget_seconds, workers=workers)
    counters = RedisCounters(redis.Redis.from_url(env["CHARGEBACK_COUNTERS"]))
    return Pipeline(ledger, counters, DeadLetterFiles(LocalObjectStore(tmp_path / "dead-letters")),
                    LocalObjectStore(tmp_path / "snapshots"), LivePricer(reference_files.load()))


def test_cosmos_throttling_and_lost_answers_are_retried_after_the_servers_delay(
        proxy: FaultProxy, env: dict[str, str], reference_files: ReferenceFiles, tmp_path: Path) -> None:
    lines = traffic(24, "throttle")[:24]
    seen: dict[str, int] = {}

    def plan(n: int, item_id: str) -> Fault | None:
        seen[item_id] = attempt = seen.get(item_id, 0) + 1
        number = int(item_id.rsplit("-", 1)[1])
        if number % 3 == 0 and attempt <= 2:
            return Fault(429, retry_after_ms=150)
        if number % 5 == 1 and attempt == 1:  # 1, 6, 11, 16 (21 is throttled)
            return Fault(503, forward_first=True)  # written, but the answer never arrives
        return None

    proxy.plan = plan
    opened = through(proxy, env, reference_files, tmp_path)
    try:
        result = ingest_lines(opened, lines)
        assert (result.received, result.ingested, result.duplicates, result.counted) == (24, 24, 0, 24)
        assert opened.ledger.count() == 24
        assert opened.counters.month_to_date(MONTH) == expected(lines, reference_files)
    finally:
        opened.close()
    by_item: dict[str, list[tuple[float, int]]] = {}
    for attempt in proxy.attempts:
        by_item.setdefault(attempt.item_id, []).append((attempt.at, attempt.status))
    throttled = [item for item in by_item if int(item.rsplit("-", 1)[1]) % 3 == 0]
    assert len(throttled) == 8
    for item in throttled:
        (first, s1), (second, s2), (third, s3) = sorted(by_item[item])
        assert (s1, s2, s3) == (429, 429, 201)
        assert second - first >= 0.149 and third - second >= 0.149  # x-ms-retry-after-ms honoured
    lost = [item for item in by_item if int(item.rsplit("-", 1)[1]) % 15 in (1, 11)]  # 1, 11, 16: not throttled
    assert {item: [status for _, status in sorted(by_item[item])] for item in lost} == {i: [503, 409] for i in lost}
    assert len(lost) == 3  # each counted as new: its read-back found this append's writeId


def test_a_slow_healthy_cosmos_never_fails_a_batch(proxy: FaultProxy, env: dict[str, str],
                                                   reference_files: ReferenceFiles, tmp_path: Path) -> None:
    """Every create takes 1.2 s and two workers write: 8 creates take about 5 s, more than the
    2 s retry budget. The budget is each item's, from when its own write starts, so a server that
    is slow but answering never fails the batch (with one budget for the whole batch, the later
    creates would time out and be abandoned)."""
    lines = traffic(8, "slow")[:8]
    proxy.plan = lambda n, item_id: Fault(201, delay=1.2)
    opened = through(proxy, env, reference_files, tmp_path, retry_budget_seconds=2.0, workers=2)
    try:
        started = time.monotonic()
        result = ingest_lines(opened, lines)
        assert time.monotonic() - started > 4.0  # longer than the budget: it applies per item
        assert (result.ingested, result.counted) == (8, 8) and opened.ledger.count() == 8
    finally:
        opened.close()


def test_cosmos_failing_past_the_retry_budget_fails_the_batch_and_redelivery_is_exact(
        proxy: FaultProxy, env: dict[str, str], reference_files: ReferenceFiles, tmp_path: Path) -> None:
    lines = traffic(20, "outage")[:20]
    proxy.plan = lambda n, item_id: None if n <= 6 else Fault(503)  # then down for good
    broken = through(proxy, env, reference_files, tmp_path, retry_budget_seconds=3.0)
    try:
        with pytest.raises(LedgerUnavailable, match="still failing"):
            ingest_lines(broken, lines)
        written = broken.ledger.count()
        assert 6 <= written < 20
        assert broken.counters.month_to_date(MONTH) == []  # never counted what the ledger did not confirm
    finally:
        broken.close()
    proxy.plan = lambda n, item_id: None  # Cosmos DB is back; the host redelivers the batch
    opened = through(proxy, env, reference_files, tmp_path)
    try:
        again = ingest_lines(opened, lines)
        assert (again.ingested, again.duplicates, again.counted) == (20 - written, written, 20)
        assert opened.ledger.count() == 20
        assert opened.counters.month_to_date(MONTH) == expected(lines, reference_files)
    finally:
        opened.close()


# ---------------------------------------------------------------------------------------------- snapshot

@pytest.fixture(params=["local", "azurite"])
def snapshot_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "snapshots")
        return
    connection_string: str = request.getfixturevalue("azurite_connection_string")
    container = BlobServiceClient.from_connection_string(connection_string).get_container_client(
        f"faults-{uuid.uuid4().hex[:12]}")
    container.create_container()
    yield BlobObjectStore(container, "chargeback/snapshots")
    container.delete_container()


def visible(store: ObjectStore) -> tuple[int, int, int]:
    """What readers see: (rows, distinct eventIds, prompt tokens) of the `usage` view."""
    rows = open_warehouse(store).connection.execute(
        "SELECT count(*), count(DISTINCT event_id), coalesce(sum(prompt_tokens), 0) FROM usage").fetchone()
    assert rows is not None
    return int(rows[0]), int(rows[1]), int(rows[2])


@pytest.mark.parametrize(("fail_at", "partial"), [(2, True), (4, False)], ids=["file 2 of 3, half uploaded",
                                                                                "the manifest"])
def test_a_snapshot_upload_failing_halfway_is_never_visible_and_the_next_run_completes_it(
        snapshot_store: ObjectStore, tmp_path: Path, fail_at: int, partial: bool) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    first: dict[str, UsageEvent] = {}
    for decoded in decode_batch([RawMessage(b, "t", "1") for b in traffic(84, "snap")]).events:
        if decoded.timestamp.day in (3, 4, 5):  # three days: three files, then the manifest
            first.setdefault(decoded.event_id, decoded)
    ledger.append(list(first.values()))
    count, tokens = len(first), sum(e.usage.prompt_tokens for e in first.values() if e.usage)
    failing = FailingStore(snapshot_store, fail_at, partial)
    with pytest.raises(OSError, match="halfway"):
        snapshot(ledger, failing)
    assert (manifests(snapshot_store), published_files(snapshot_store), visible(snapshot_store)) == ([], [], (0, 0, 0))
    assert snapshot_store.get(failing.failed_key) is None
    assert failing.failed_key not in snapshot_store.list("")
    resumed = snapshot(ledger, snapshot_store)
    assert (resumed.rows, resumed.manifests, count) == (count, [1], 9)
    assert visible(snapshot_store) == (count, count, tokens)  # every event exactly once
    ledger.close()


def test_a_cosmos_role_that_may_not_write_is_named_with_the_fix(proxy: FaultProxy, env: dict[str, str],
                                                                reference_files: ReferenceFiles,
                                                                tmp_path: Path) -> None:
    """Real Cosmos DB answers 403 to a create by an identity without a data-plane write role (the
    stand-in checks no role: the proxy answers for it). The doctor's probe and an append both say
    which role to grant, in one line."""
    proxy.plan = lambda n, item_id: Fault(403)
    opened = through(proxy, env, reference_files, tmp_path)
    database = env["CHARGEBACK_LEDGER"].split("/")[-2]
    try:
        with pytest.raises(AccessRefused, match=rf"the identity may not use {database}/ledger \(403\): grant it "
                                                r"the Cosmos DB Built-in Data Contributor role"):
            opened.ledger.probe()
        with pytest.raises(AccessRefused, match=r"\(403\): grant it the Cosmos DB Built-in Data Contributor"):
            ingest_lines(opened, traffic(3, "refused")[:3])
        assert opened.ledger.count() == 0
    finally:
        opened.close()
