"""The Ledger port's contract, held by the embedded SQLite ledger and by the Cosmos DB ledger on the
local stand-in (@vercel/cosmosdb-server, the `cosmos_endpoint` fixture of tests/servers.py: skipped
when not configured, failed under CI). Then Cosmos-only tests of throttling, transient errors and
lost responses, injected by wrapping the container's create_item."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosHttpResponseError

from pipeline.adapters.azure.cosmos_ledger import INDEXING_POLICY, CosmosLedger, open_cosmos_ledger
from pipeline.adapters.embedded.ledger import SqliteLedger
from pipeline.domain.events import Origin, Usage, UsageEvent
from pipeline.lake.usage import USAGE_SCHEMA, events_table
from pipeline.ports import AccessRefused, AppendResult, Ledger, LedgerUnavailable

if TYPE_CHECKING:  # imported by pytest as a plugin (pytest_plugins), not here: no assert-rewrite warning
    from tests.servers import CosmosEndpoint

pytest_plugins = ["tests.servers"]
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
T0 = datetime(2026, 10, 15, 12, 30, tzinfo=UTC)


def event(event_id: str, **changes: Any) -> UsageEvent:
    fields: dict[str, Any] = {"schema_version": 1, "event_id": event_id, "timestamp": T0, "subscription_id": "sub-a",
                              "deployment": "dep-alpha", "stream": False, "status_code": 200, "duration_ms": 420,
                              "usage_source": "response", "usage": Usage(1000, 200, 1200)}
    return UsageEvent(**(fields | changes))


FULL = event(
    "full/evt?#\\1", timestamp=datetime(2026, 10, 15, 14, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2))),
    product_id="product-a", api_id="azure-openai", operation_id="chat", caller_app_id="app-a",
    caller_tenant_id="tenant-a", caller_object_id="object-a", cost_center="CC-1", model="gpt-4o", region="westeurope",
    stream=True, status_code=429, duration_ms=1234, usage_source="stream", usage=Usage(5000, 700, 5700, 1024, 300),
    tags={"team": "search", "env": "prod"}, extra='{"newField":[1,2]}',
    origin=Origin("eventhub:ns/usage", "partition 3, sequence 42", "3", 42, "8589934592",
                  datetime(2026, 10, 15, 12, 30, 6, tzinfo=UTC)))


@dataclass
class Backend:
    name: str
    open: Callable[[], Ledger]  # one more handle on the same storage
    opened: list[Ledger] = field(default_factory=list)

    def ledger(self) -> Ledger:
        handle = self.open()
        self.opened.append(handle)
        return handle


@dataclass
class CosmosTarget:
    url: str  # cosmos://HOST:PORT/DATABASE/CONTAINER of a fresh container
    key: str
    container: ContainerProxy


@pytest.fixture
def cosmos(cosmos_endpoint: CosmosEndpoint) -> Iterator[CosmosTarget]:
    """A fresh container (partition key /id, the ledger's indexing policy) for one test."""
    endpoint, key = cosmos_endpoint
    client = CosmosClient(endpoint, credential=key)
    database = client.create_database_if_not_exists("ledger-contract")
    name = f"ledger-{uuid.uuid4().hex}"
    container = database.create_container_if_not_exists(name, partition_key=PartitionKey("/id"), default_ttl=-1,
                                                         indexing_policy=INDEXING_POLICY)
    try:
        yield CosmosTarget(f"cosmos://{urlparse(endpoint).netloc}/ledger-contract/{name}", key, container)
    finally:
        database.delete_container(name)
        client.close()


@pytest.fixture(params=["sqlite", "cosmos"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        made = Backend("sqlite", lambda: SqliteLedger(tmp_path / "ledger.sqlite3"))
    else:
        target: CosmosTarget = request.getfixturevalue("cosmos")
        made = Backend("cosmos", lambda: open_cosmos_ledger(target.url, key=target.key, create=True, settle_seconds=0))
    yield made
    for handle in made.opened:
        handle.close()


def read_all(ledger: Ledger, cursor: str | None = None, max_rows: int = 3) -> tuple[list[dict[str, Any]], str | None]:
    """Every row after cursor, in successive calls of at most max_rows; and the final cursor."""
    rows: list[dict[str, Any]] = []
    while True:
        changes = ledger.changes(cursor, max_rows)
        assert changes.table.schema.equals(USAGE_SCHEMA)
        assert changes.table.num_rows <= max_rows
        if changes.table.num_rows == 0:
            assert changes.cursor == cursor  # nothing new: the cursor given comes back
            return rows, cursor
        rows.extend(changes.table.to_pylist())
        cursor = changes.cursor


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["event_id"] for row in rows]


def test_append_counts_new_and_duplicates_exactly(backend: Backend) -> None:
    ledger = backend.ledger()
    assert ledger.count() == 0
    batch = [event(f"evt-{i}") for i in range(5)] + [event("evt-2")]
    assert ledger.append(batch) == AppendResult(new=5, duplicates=1)
    assert ledger.append(batch) == AppendResult(new=0, duplicates=6)  # a redelivery: all duplicates
    assert ledger.append([event("evt-9"), event("evt-0")]) == AppendResult(new=1, duplicates=1)
    assert ledger.append([]) == AppendResult(new=0, duplicates=0)
    assert ledger.count() == 6


def test_conflicting_duplicate_in_one_batch_keeps_the_first_copy(backend: Backend) -> None:
    ledger = backend.ledger()
    result = ledger.append([event("evt-b", status_code=500), event("evt-a"), event("evt-b", status_code=200)])
    assert (result.new, result.duplicates) == (2, 1)
    rows, _ = read_all(ledger)
    assert {row["event_id"]: row["status_code"] for row in rows} == {"evt-a": 200, "evt-b": 500}


def test_changes_returns_every_event_once_with_every_column(backend: Backend) -> None:
    ledger = backend.ledger()
    before = datetime.now(UTC)
    appended = [FULL, *(event(f"evt-{i:02d}", tags={"i": str(i)}) for i in range(9)), event("x" * 256)]
    assert ledger.append(appended).new == 11
    after = datetime.now(UTC)
    rows, cursor = read_all(ledger, max_rows=3)
    assert sorted(ids(rows)) == sorted(e.event_id for e in appended)  # each exactly once
    assert cursor is not None
    row = next(row for row in rows if row["event_id"] == FULL.event_id)
    assert before - timedelta(seconds=1) <= row.pop("ingested_at") <= after + timedelta(seconds=1)
    seq = row.pop("ledger_seq")
    assert seq is None if backend.name == "cosmos" else isinstance(seq, int)
    expected = events_table([FULL], [after]).to_pylist()[0]
    del expected["ingested_at"], expected["ledger_seq"]
    row["tags"], expected["tags"] = dict(row["tags"]), dict(expected["tags"])  # a map: order is not kept
    assert row == expected
    assert (row["timestamp"], row["tags"], row["extra"]) == (
        datetime(2026, 10, 15, 12, 30, 5, 123456, tzinfo=UTC), {"team": "search", "env": "prod"}, '{"newField":[1,2]}')
    assert (row["source"], row["eventhub_partition"], row["eventhub_sequence_number"], row["eventhub_offset"],
            row["eventhub_enqueued_time"]) == ("eventhub:ns/usage", "3", 42, "8589934592",
                                               datetime(2026, 10, 15, 12, 30, 6, tzinfo=UTC))


def test_a_cursor_returns_what_came_after_it_and_can_be_read_again(backend: Backend) -> None:
    ledger = backend.ledger()
    ledger.append([event(f"a-{i}") for i in range(4)])
    first, cursor = read_all(ledger, max_rows=3)
    assert sorted(ids(first)) == [f"a-{i}" for i in range(4)]
    ledger.append([event("b-0"), event("a-0"), event("0-b")])  # "0-b" sorts before every earlier id
    again, next_cursor = read_all(ledger, cursor, max_rows=3)
    assert sorted(ids(again)) == ["0-b", "b-0"]
    reread, reread_cursor = read_all(ledger, cursor, max_rows=2)  # the same cursor, read again
    assert sorted(ids(reread)) == ["0-b", "b-0"] and reread_cursor == next_cursor
    ledger.append([event("c-0")])
    assert sorted(ids(read_all(ledger, cursor, max_rows=100)[0])) == ["0-b", "b-0", "c-0"]
    assert ids(read_all(ledger, next_cursor)[0]) == ["c-0"]
    assert sorted(ids(read_all(ledger)[0])) == sorted([*ids(first), "0-b", "b-0", "c-0"])


def test_concurrent_overlapping_appends_count_each_event_once(backend: Backend) -> None:
    handles = [backend.ledger(), backend.ledger()]
    batches = [[event(f"evt-{i:02d}") for i in range(20)], [event(f"evt-{i:02d}") for i in range(29, 9, -1)]]
    results: list[Any] = [None, None]
    barrier = threading.Barrier(2)

    def run(n: int) -> None:
        barrier.wait()
        results[n] = handles[n].append(batches[n] + batches[n][:5])  # plus in-batch duplicates

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.new for r in results) == 30 and sum(r.duplicates for r in results) == 50 - 30
    assert handles[0].count() == 30
    assert sorted(ids(read_all(handles[1], max_rows=7)[0])) == [f"evt-{i:02d}" for i in range(30)]


def test_existing_tells_which_event_ids_the_ledger_holds(backend: Backend) -> None:
    ledger = backend.ledger()
    assert ledger.existing([]) == set() and ledger.existing(["evt-0"]) == set()
    held = [FULL, event("x" * 256), *(event(f"evt-{i:04d}") for i in range(0, 1100, 37))]
    ledger.append(held)
    asked = [f"evt-{i:04d}" for i in range(1100)] + [FULL.event_id, "x" * 256, "y" * 256, "evt-0000", "full/evt"]
    assert ledger.existing(asked) == {e.event_id for e in held}  # over several chunks, repeats and odd ids
    assert backend.ledger().existing([FULL.event_id, "evt-0037", "evt-0038"]) == {FULL.event_id, "evt-0037"}
    assert ledger.count() == len(held)  # a read: nothing written


def test_the_write_probe_leaves_nothing_a_reader_sees(backend: Backend) -> None:
    ledger = backend.ledger()
    ledger.append([event("evt-1"), event("evt-2")])
    ledger.probe()
    ledger.probe()
    assert ledger.count() == 2
    assert sorted(ids(read_all(backend.ledger())[0])) == ["evt-1", "evt-2"]  # created in parallel: any order
    assert ledger.append([event("evt-3")]) == AppendResult(new=1, duplicates=0)  # still writable


def test_a_sqlite_ledger_that_may_not_write_fails_the_probe_with_the_fix(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger._db.execute("PRAGMA query_only = ON")  # SQLite refuses writes as it does on a read-only file
    with pytest.raises(AccessRefused, match=r"ledger.sqlite3: SQLite may not write this database \(attempt to "
                                            r"write a readonly database\): give this user write access"):
        ledger.probe()
    assert ledger.count() == 0
    ledger.close()


# ---------------------------------------------------------------------------------------------- Cosmos only

class Faults:
    """Wraps create_item: `fail(call_number)` returns the error to raise instead, or None."""

    def __init__(self, container: ContainerProxy, fail: Callable[[int], Exception | None], *,
                 write_first: bool = False) -> None:
        self.real, self.fail, self.write_first = container.create_item, fail, write_first
        self.calls, self.lock = 0, threading.Lock()

    def __call__(self, body: dict[str, Any], **options: Any) -> Any:
        with self.lock:
            self.calls += 1
            error = self.fail(self.calls)
        if error is None:
            return self.real(body, **options)
        if self.write_first:
            self.real(body, **options)  # written, then the response is lost
        raise error


def http_error(status: int, retry_after_ms: int | None = None) -> CosmosHttpResponseError:
    error = CosmosHttpResponseError(status_code=status, message=f"injected {status}")  # type: ignore[no-untyped-call]
    error.headers = {} if retry_after_ms is None else {"x-ms-retry-after-ms": str(retry_after_ms)}
    return error


def test_throttling_is_retried_after_the_servers_delay(cosmos: CosmosTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    faults = Faults(cosmos.container, lambda n: http_error(429, 30) if n <= 5 else None)
    monkeypatch.setattr(cosmos.container, "create_item", faults)
    ledger = CosmosLedger(cosmos.container, settle_seconds=0, sleep=sleep)
    batch = [event(f"evt-{i}") for i in range(8)]
    assert (ledger.append(batch).new, ledger.count()) == (8, 8)
    assert waits == [0.03] * 5 and faults.calls == 13
    assert sorted(ids(read_all(ledger)[0])) == sorted(e.event_id for e in batch)
    ledger.close()


def test_persistent_503_raises_and_a_redelivery_gives_exact_totals(cosmos: CosmosTarget,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    batch = [event(f"evt-{i:02d}") for i in range(8)]
    with monkeypatch.context() as patch:
        patch.setattr(cosmos.container, "create_item", Faults(cosmos.container, lambda n: None if n <= 3 else
                                                              http_error(503)))
        broken = CosmosLedger(cosmos.container, settle_seconds=0, retry_budget_seconds=0.3)
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable, match="503"):
            broken.append(batch)
        assert time.monotonic() - started < 5  # the wait is bounded
        broken.close()
    ledger = CosmosLedger(cosmos.container, settle_seconds=0)
    assert (ledger.append(batch).new, ledger.append(batch).duplicates) == (5, 8)
    assert ledger.count() == 8 and sorted(ids(read_all(ledger)[0])) == [e.event_id for e in batch]
    ledger.close()


def test_a_write_whose_response_was_lost_counts_as_new(cosmos: CosmosTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = Faults(cosmos.container, lambda n: ServiceResponseError("connection reset") if n == 1 else None,
                    write_first=True)
    monkeypatch.setattr(cosmos.container, "create_item", faults)
    ledger = CosmosLedger(cosmos.container, settle_seconds=0)
    assert (ledger.append([event("evt-1")]).new, faults.calls) == (1, 2)  # the retry got 409, read back: ours
    assert ledger.append([event("evt-1")]).duplicates == 1
    assert ledger.count() == 1
    ledger.close()


class Calls:
    """Counts the container's calls of these names, each passed on to the real container."""

    def __init__(self, container: ContainerProxy, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
        self.counts = dict.fromkeys(names, 0)
        self.lock = threading.Lock()
        for name in names:
            monkeypatch.setattr(container, name, self._counting(name, getattr(container, name)))

    def _counting(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.counts[name] += 1
            return real(*args, **kwargs)
        return counted


def test_a_redelivered_batch_is_looked_up_not_created_again(cosmos: CosmosTarget,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = CosmosLedger(cosmos.container, settle_seconds=0)
    batch = [event(f"evt-{i:03d}") for i in range(300)]
    assert ledger.append(batch[:290]).new == 290
    calls = Calls(cosmos.container, monkeypatch, "create_item", "read_item", "query_items")
    result = ledger.append(batch)  # 290 redelivered, 10 new
    assert (result.new, result.duplicates) == (10, 290)
    # The head's 16 creates meet 409: the other 284 are looked up (256 + 28) and only the 10 new
    # created; then the 16 conflicts are looked up (ours or not).
    assert calls.counts == {"create_item": 26, "read_item": 0, "query_items": 3}
    assert ledger.count() == 300
    ledger.close()


def test_stored_copies_behind_a_new_head_are_met_by_409(cosmos: CosmosTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = CosmosLedger(cosmos.container, settle_seconds=0)
    batch = [event(f"evt-{i:03d}") for i in range(300)]
    first = ledger.append(batch[16:20] + batch[256:])  # copies just past the head, and the last 44
    assert (first.new, first.duplicates) == (48, 0)
    calls = Calls(cosmos.container, monkeypatch, "create_item", "read_item", "query_items")
    result = ledger.append([*batch, batch[0]])  # the head is new; 48 stored behind it; one copy twice
    assert (result.new, result.duplicates) == (252, 49)
    # The head created, then every other distinct id, and one lookup of the 48 conflicts.
    assert calls.counts == {"create_item": 300, "read_item": 0, "query_items": 1}
    assert ledger.count() == 300 and sorted(ids(read_all(ledger)[0])) == [e.event_id for e in batch]
    ledger.close()


def test_a_new_batch_costs_no_lookup(cosmos: CosmosTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = CosmosLedger(cosmos.container, settle_seconds=0)
    calls = Calls(cosmos.container, monkeypatch, "create_item", "query_items")
    assert ledger.append([event(f"evt-{i:03d}") for i in range(500)]).new == 500
    assert calls.counts == {"create_item": 500, "query_items": 0}
    ledger.close()


def test_fresh_events_wait_for_the_settle_time(cosmos: CosmosTarget) -> None:
    ledger = CosmosLedger(cosmos.container, settle_seconds=3600)
    ledger.append([event("evt-1")])
    changes = ledger.changes(None, 10)
    assert changes.table.num_rows == 0 and changes.cursor is None
    ledger.close()


def test_open_cosmos_ledger_turns_the_sdk_throttle_retries_off(cosmos: CosmosTarget) -> None:
    ledger = open_cosmos_ledger(cosmos.url, key=cosmos.key)
    assert ledger._client is not None
    assert ledger._client.client_connection.connection_policy.RetryOptions.MaxRetryAttemptCount == 0
    ledger.close()
    for bad in ("cosmos://host/only-database", "https://host/db/container", "cosmos:///db/container"):
        with pytest.raises(ValueError, match="expected cosmos://"):
            open_cosmos_ledger(bad, key="a2V5")
