"""The ledger on Azure Cosmos DB (NoSQL API): one item per event, create-if-absent by eventId.

Container layout (Terraform creates it in production; `open_cosmos_ledger(create=True)` locally):
- `id` = eventId, partition key path `/id`. A duplicate delivery must land in the same logical
  partition as the first copy to be refused with 409 Conflict, whatever its other fields say, and
  only the eventId is the same for both. Random ids (APIM request ids) also spread writes evenly
  over physical partitions, and nothing reads by partition: snapshots read the change query below.
  An eventId Cosmos cannot take as an id (over 255 characters, or with / \\ ? #) is escaped, see
  `item_id`; the item keeps the original in `eventId`.
- The item is the event's wire JSON (camelCase, `__extra__`, `__origin__`), plus `ingestedAt`.
  `ttl` is never set per item: the container's default TTL decides (-1 keeps items forever; the
  raw ledger may expire once snapshotted and past the restatement window, e.g. 400 days).
- `INDEXING_POLICY` indexes only `ingestedAt` plus the composite index (ingestedAt, id) that the
  change query needs (a multi-property ORDER BY requires it on real Cosmos); every other path is
  left out of the index, which keeps the RU cost of each write low.

Change feed. `changes()` does not use Cosmos' change feed: the local stand-in's feed ignores
continuation tokens (verified), and on real Cosmos an updated item shows up in it again. It runs
`SELECT TOP @n * ... ORDER BY c.ingestedAt, c.id` from a cursor (ingestedAt, id), which both
servers answer. Not `_ts`: last-modified, in whole seconds. `ingestedAt` is stamped once
(microseconds, fixed-width UTC text) right before each create attempt; only items stamped before
`now - settle_seconds` are read, so an attempt in flight or a writer with a slightly slow clock is
never passed over. `settle_seconds` must exceed clock skew plus the longest create attempt
(`retry_budget_seconds`: default 120 s > 60 s). One call returns at most `max_rows_per_call` rows.

Retries. 429 and the transient 408, 449, 503 and connection errors are retried here, waiting the
server's `x-ms-retry-after-ms` when given, within `retry_budget_seconds` per item written (from
when its write starts: a large batch on a slow but healthy server takes as long as it needs) and
per read call; after that the call raises `LedgerUnavailable`, and the host redelivers the batch
(safe: create is idempotent).
`open_cosmos_ledger` turns the SDK's own 429 retries off so the wait stays bounded here; with a
client whose SDK retries are on, the SDK's waits happen inside each of these attempts.
A create that fails with a transient error may still have been written (by this loop's retry or the
SDK's own 503 retry); so the items of an append that met 409 are looked up afterwards, one query
per 256 ids (not one read per item), and each counts as new when its stored `writeId` is one of
the attempts this call sent: the new/duplicate counts stay exact.

Redeliveries. An append creates its first 16 items before the rest. A 409 among them marks a
redelivery (its copies lead the batch): the rest is looked up, only what is missing created. A new
batch pays no request more; a copy past the head meets its 409 (docs/benchmarks.md, 25th pass).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlparse

import msgspec
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos._retry_options import RetryOptions  # not re-exported; ConnectionPolicy uses it
from azure.cosmos.documents import ConnectionPolicy
from azure.cosmos.exceptions import (
    CosmosClientTimeoutError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from pipeline.adapters.azure.identity import shared_credential
from pipeline.adapters.azure.transport import PooledTransport
from pipeline.domain.events import UsageEvent
from pipeline.lake.usage import USAGE_SCHEMA, events_table
from pipeline.ports import (
    AccessRefused,
    AppendResult,
    Changes,
    LedgerUnavailable,
    MissingResource,
    Pending,
    UserError,
)

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429, 449, 503})
INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent", "automatic": True,
    "includedPaths": [{"path": "/ingestedAt/?"}, {"path": "/id/?"}], "excludedPaths": [{"path": "/*"}],
    "compositeIndexes": [[{"path": "/ingestedAt", "order": "ascending"}, {"path": "/id", "order": "ascending"}]],
}
_CHANGES = ("SELECT TOP @n * FROM c WHERE (c.ingestedAt > @at OR (c.ingestedAt = @at AND c.id > @id))"
            " AND c.ingestedAt < @horizon ORDER BY c.ingestedAt ASC, c.id ASC")
_LOOKUP = "SELECT c.id, c.writeId FROM c WHERE ARRAY_CONTAINS(@ids, c.id)"
_PENDING_COUNT = "SELECT VALUE COUNT(1) FROM c WHERE c.ingestedAt >= @horizon"
_PENDING_LATEST = "SELECT VALUE MAX(c.ingestedAt) FROM c WHERE c.ingestedAt >= @horizon"
LOOKUP_CHUNK = 256  # item ids per lookup query (`existing`, and the 409s of an append)
REDELIVERY_PROBE = 16  # the head of a batch created before the rest (see "Redeliveries" above)
_EVENT_FIELDS = tuple(field.encode_name for field in msgspec.structs.fields(UsageEvent))
_UNSAFE_ID = str.maketrans({"%": "%25", "/": "%2F", "\\": "%5C", "?": "%3F", "#": "%23"})
_cursor_decoder = msgspec.json.Decoder(tuple[str, str])


class _Abandoned(LedgerUnavailable):
    """Another create of the same append failed for good: this one stops retrying."""


def item_id(event_id: str) -> str:
    """The Cosmos id of an eventId: itself when allowed, else %-escaped; hashed past 255 characters.
    Injective: an escaped id never holds '%s', so it cannot equal a hashed one."""
    escaped = event_id.translate(_UNSAFE_ID)
    return escaped if len(escaped) <= 255 else "%sha256-" + hashlib.sha256(event_id.encode()).hexdigest()


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CosmosLedger:
    def __init__(self, container: ContainerProxy, *, settle_seconds: float = 120.0, workers: int = 16,
                 retry_budget_seconds: float = 60.0, max_rows_per_call: int = 100_000,
                 sleep: Callable[[float], None] = time.sleep, client: CosmosClient | None = None,
                 url: str = "", with_key: bool = False) -> None:
        self._container = container
        self._url, self._with_key = url or container.container_link, with_key
        self._settle = timedelta(seconds=settle_seconds)
        self._budget = retry_budget_seconds
        self._max_rows = max_rows_per_call
        self._sleep = sleep
        self._client = client  # closed with the ledger when given
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cosmos-ledger")

    def append(self, events: Sequence[UsageEvent]) -> AppendResult:
        first: dict[str, UsageEvent] = {}
        for event in events:  # the first copy of an eventId in the batch wins
            first.setdefault(event.event_id, event)
        batch, abort = list(first.values()), threading.Event()
        outcomes = self._create_each(batch[:REDELIVERY_PROBE], abort)
        rest = batch[REDELIVERY_PROBE:]
        if rest and any(outcome is not None for outcome in outcomes):  # a 409 in the head: a redelivery
            with self._errors():
                stored = self._lookup([item_id(event.event_id) for event in rest])
            rest = [event for event in rest if item_id(event.event_id) not in stored]
        outcomes += self._create_each(rest, abort)
        conflicts = [outcome for outcome in outcomes if outcome is not None]
        new = len(outcomes) - len(conflicts)
        if conflicts:  # a 409 is ours when the stored writeId is one our attempts sent
            with self._errors():
                stored = self._lookup([item for item, _ in conflicts])
            new += sum(1 for item, sent in conflicts if stored.get(item) in sent)
        return AppendResult(new=new, duplicates=len(events) - new)

    def _create_each(self, events: list[UsageEvent], abort: threading.Event) -> list[tuple[str, list[str]] | None]:
        """`_create` of every event, on the pool; the first error is raised once all are done."""
        futures = [self._pool.submit(self._create, event, abort) for event in events]
        errors = [error for future in futures if (error := future.exception()) is not None]
        if errors:
            with self._errors():  # a refused role or key, as one line with the fix
                raise next((error for error in errors if not isinstance(error, _Abandoned)), errors[0])
        return [future.result() for future in futures]

    def changes(self, cursor: str | None, max_rows: int) -> Changes:
        try:
            after_at, after_id = _cursor_decoder.decode(cursor) if cursor else ("", "")
        except msgspec.DecodeError as error:
            raise UserError(f"cursor {cursor!r} was not written by the Cosmos DB ledger") from error
        rows = max(1, min(max_rows, self._max_rows))
        deadline = time.monotonic() + self._budget
        parameters: list[dict[str, object]] = [
            {"name": "@n", "value": rows}, {"name": "@at", "value": after_at},
            {"name": "@id", "value": after_id}, {"name": "@horizon", "value": stamp(datetime.now(UTC) - self._settle)}]
        items = self._call(lambda: list(self._container.query_items(
            _CHANGES, parameters=parameters, enable_cross_partition_query=True, max_item_count=min(rows, 1000),
            timeout=_remaining(deadline))), deadline, threading.Event())
        if not items:
            return Changes(USAGE_SCHEMA.empty_table(), cursor)
        events = [msgspec.convert({k: item[k] for k in _EVENT_FIELDS if k in item}, UsageEvent) for item in items]
        ingested = [datetime.fromisoformat(item["ingestedAt"]) for item in items]
        last = items[-1]
        return Changes(events_table(events, ingested), msgspec.json.encode((last["ingestedAt"], last["id"])).decode())

    def existing(self, event_ids: Sequence[str]) -> set[str]:
        by_item = {item_id(event_id): event_id for event_id in event_ids}
        return {by_item[found] for found in self._lookup(list(by_item)) if found in by_item}

    def _lookup(self, ids: list[str]) -> dict[str, str | None]:
        """The stored writeId of each of these item ids that exists: one parameterised query per
        chunk of ids, the chunks in parallel. Not point reads: one round trip per 256 ids, and the
        local stand-in answers a read of a missing item with 500, which looks like a server error."""
        deadline, abort = time.monotonic() + self._budget, threading.Event()

        def lookup(chunk: list[str]) -> list[dict[str, Any]]:
            parameters: list[dict[str, object]] = [{"name": "@ids", "value": chunk}]
            return self._call(lambda: list(self._container.query_items(
                _LOOKUP, parameters=parameters, enable_cross_partition_query=True, max_item_count=len(chunk),
                timeout=_remaining(deadline))), deadline, abort)

        futures = [self._pool.submit(lookup, ids[i:i + LOOKUP_CHUNK]) for i in range(0, len(ids), LOOKUP_CHUNK)]
        errors = [error for future in futures if (error := future.exception()) is not None]
        if errors:
            raise next((error for error in errors if not isinstance(error, _Abandoned)), errors[0])
        return {str(row["id"]): row.get("writeId") for future in futures for row in future.result()}

    def pending(self) -> Pending:
        """The items stamped within the settle window: `changes` reads them once they are older."""
        deadline = time.monotonic() + self._budget
        parameters: list[dict[str, object]] = [{"name": "@horizon", "value": stamp(datetime.now(UTC) - self._settle)}]

        def first(rows: list[Any]) -> Any:
            return rows[0] if rows else None

        events = int(first(self._call(lambda: list(self._container.query_items(
            _PENDING_COUNT, parameters=parameters, enable_cross_partition_query=True,
            timeout=_remaining(deadline))), deadline, threading.Event())) or 0)
        if not events:
            return Pending()
        latest = first(self._call(lambda: list(self._container.query_items(
            _PENDING_LATEST, parameters=parameters, enable_cross_partition_query=True,
            timeout=_remaining(deadline))), deadline, threading.Event()))
        return Pending(events, datetime.fromisoformat(latest) + self._settle if latest else None)

    def count(self) -> int:
        deadline = time.monotonic() + self._budget
        rows: list[Any] = self._call(lambda: list(self._container.query_items(
            "SELECT VALUE COUNT(1) FROM c", enable_cross_partition_query=True, timeout=_remaining(deadline))),
            deadline, threading.Event())
        return int(rows[0]) if rows else 0

    def probe(self) -> None:
        """Create an item the change query never returns (it has no ingestedAt), read it, delete
        it. The item also expires within a minute where the container has a TTL."""
        deadline = time.monotonic() + self._budget
        probe_id = f"chargeback-doctor-probe-{secrets.token_hex(8)}"
        with self._errors():
            self._call(lambda: self._container.create_item({"id": probe_id, "probe": True, "ttl": 60},
                                                           timeout=_remaining(deadline)), deadline, threading.Event())
            found = self._call(lambda: self._container.read_item(probe_id, partition_key=probe_id,
                                                                 timeout=_remaining(deadline)),
                               deadline, threading.Event())
            self._call(lambda: self._container.delete_item(probe_id, partition_key=probe_id,
                                                           timeout=_remaining(deadline)), deadline, threading.Event())
        if found.get("id") != probe_id:
            raise LedgerUnavailable(f"{self._url}: wrote a probe item but read back {found.get('id')!r}")

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        _, database, _, container = [*self._container.container_link.split("/"), "", "", "", ""][:4]
        return _sdk_errors(self._url, database, container, self._with_key)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()

    def _create(self, event: UsageEvent, abort: threading.Event) -> tuple[str, list[str]] | None:
        """None when this call wrote the item; on 409 the item id and the writeId of every attempt,
        which `append` resolves for the whole batch at once (an earlier attempt of this call that
        failed in transit may have written it). The retry budget is this item's, from when its
        write starts: a batch waits as long as its size needs on a slow but healthy server, and
        fails only when one item keeps failing."""
        deadline = time.monotonic() + self._budget
        base = {k: v for k, v in msgspec.to_builtins(event).items() if v is not None}
        base["id"] = item_id(event.event_id)
        sent: list[str] = []  # the writeId of every attempt

        def attempt() -> tuple[str, list[str]] | None:
            sent.append(secrets.token_hex(8))
            try:
                self._container.create_item({**base, "ingestedAt": stamp(datetime.now(UTC)), "writeId": sent[-1]},
                                            no_response=True, timeout=_remaining(deadline))
            except CosmosResourceExistsError:
                return base["id"], sent
            return None

        return self._call(attempt, deadline, abort)

    def _call(self, operation: Callable[[], T], deadline: float, abort: threading.Event) -> T:
        attempts = 0
        while True:
            if abort.is_set():
                raise _Abandoned("another create of this append failed; the whole append is retried")
            try:
                return operation()
            except CosmosHttpResponseError as error:
                if error.status_code not in RETRYABLE_STATUS:
                    raise
                failure: Exception = error
                after_ms = (error.headers or {}).get("x-ms-retry-after-ms")
                wait = float(after_ms) / 1000 if after_ms else _backoff(attempts)
            except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
                failure, wait = error, _backoff(attempts)
            attempts += 1
            if abort.is_set() or time.monotonic() + wait > deadline:
                abort.set()  # the whole call fails: the other workers stop retrying too
                raise LedgerUnavailable(f"Cosmos DB ledger still failing after {attempts} attempt(s) within "
                                        f"{self._budget:g} s: {failure}") from failure
            self._sleep(wait)


def _remaining(deadline: float) -> float:
    """The SDK's timeout for one request: what is left of the budget (at least 1 s)."""
    return max(1.0, deadline - time.monotonic())


def _backoff(attempts: int) -> float:
    return min(5.0, 0.05 * 2.0**attempts) * random.uniform(0.5, 1.0)  # jitter


def open_cosmos_ledger(url: str, key: str | None = None, *, create: bool = False,
                       default_ttl: int = -1, workers: int = 16, **options: Any) -> CosmosLedger:
    """`cosmos://HOST[:PORT]/DATABASE/CONTAINER` over https. `key` is for the local stand-in only;
    otherwise DefaultAzureCredential (managed identity in Azure). The database and container are
    created only with create=True (local and test use: CHARGEBACK_CREATE_RESOURCES=1), with
    `default_ttl` (-1: never expire; e.g. 34560000: 400 days). `settle_seconds` (option,
    CHARGEBACK_COSMOS_SETTLE_SECONDS) may be 0 for a single local writer that snapshots right
    after ingesting."""
    parsed = urlparse(url)
    names = [part for part in parsed.path.split("/") if part]
    if parsed.scheme != "cosmos" or not parsed.netloc or len(names) != 2:
        raise UserError(f"{url!r}: expected cosmos://HOST[:PORT]/DATABASE/CONTAINER")
    if key is not None:
        try:
            base64.b64decode(key, validate=True)
        except binascii.Error:
            raise UserError("CHARGEBACK_COSMOS_KEY is not a Cosmos DB account key (base64 text): copy the "
                            "emulator's key, or unset it to sign in with the managed identity") from None
    credential: Any = key if key is not None else shared_credential()
    policy = ConnectionPolicy()
    policy.RetryOptions = RetryOptions(max_retry_attempt_count=0)  # 429 is retried by CosmosLedger
    with _sdk_errors(url, names[0], names[1], key is not None):
        client = CosmosClient(f"https://{parsed.netloc}/", credential=credential, connection_policy=policy,
                              transport=PooledTransport(workers))  # a connection per append worker
        database = client.get_database_client(names[0])
        if create:
            database = client.create_database_if_not_exists(names[0])
            database.create_container_if_not_exists(names[1], partition_key=PartitionKey("/id"),
                                                    default_ttl=default_ttl, indexing_policy=INDEXING_POLICY)
        container = database.get_container_client(names[1])
        try:
            properties = container.read()
        except CosmosResourceNotFoundError:
            try:
                database.read()
            except CosmosResourceNotFoundError:
                raise MissingResource(f"{url}: Cosmos DB database {names[0]!r} does not exist: create it "
                                      f"(terraform apply does), or set CHARGEBACK_CREATE_RESOURCES=1 for the local "
                                      "emulator") from None
            raise MissingResource(f"{url}: Cosmos DB container {names[1]!r} does not exist in {names[0]!r}: create "
                                  "it (terraform apply does), or set CHARGEBACK_CREATE_RESOURCES=1 for the local "
                                  "emulator") from None
    problem = layout_problem(properties)
    if problem:
        client.close()
        raise MissingResource(f"{url}: {problem}")
    return CosmosLedger(container, workers=workers, client=client, url=url, with_key=key is not None, **options)


def layout_problem(properties: dict[str, Any]) -> str | None:
    """What is wrong with a container's layout for this ledger (its partition key, the composite
    index the change query orders by), or None."""
    paths = (properties.get("partitionKey") or {}).get("paths") or []
    if paths and paths != ["/id"]:
        return (f"the container is partitioned by {', '.join(paths)}, not /id: a redelivered event would not be "
                "refused; create the container with partition key /id (terraform/modules/cosmos)")
    wanted = [[(i["path"], i["order"].lower()) for i in index] for index in INDEXING_POLICY["compositeIndexes"]]
    present = [[(i.get("path"), str(i.get("order", "ascending")).lower()) for i in index]
               for index in (properties.get("indexingPolicy") or {}).get("compositeIndexes") or []]
    if properties.get("indexingPolicy") is not None and not all(index in present for index in wanted):
        return ("the container's indexing policy lacks the composite index (ingestedAt, id) that the snapshot query "
                "orders by: apply the adapter's INDEXING_POLICY (terraform/modules/cosmos does)")
    return None


@contextmanager
def _sdk_errors(url: str, database: str, container: str, with_key: bool) -> Iterator[None]:
    """The SDK's errors while opening the ledger (or when a write is refused), as one line naming the
    account and the fix."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as error:
        raise LedgerUnavailable(f"{url}: cannot reach Cosmos DB ({_first_line(error)}): check the account in "
                                "CHARGEBACK_LEDGER and that this machine can reach it") from None
    except ClientAuthenticationError as error:
        raise AccessRefused(f"{url}: no Microsoft Entra ID credential for Cosmos DB ({_first_line(error)}): sign in "
                            "(az login) or run with a managed identity") from None
    except CosmosHttpResponseError as error:
        if error.status_code == 401:
            fix = ("check CHARGEBACK_COSMOS_KEY (the emulator's key)" if with_key else
                   "the identity's token was refused: check the tenant")
            raise AccessRefused(f"{url}: Cosmos DB refused the credentials (401): {fix}") from None
        if error.status_code == 403:
            raise AccessRefused(f"{url}: the identity may not use {database}/{container} (403): grant it the "
                                "Cosmos DB Built-in Data Contributor role on the account (terraform/modules/access "
                                "does)") from None
        raise


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
