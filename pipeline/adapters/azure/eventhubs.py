"""Event Hubs with the azure-eventhub SDK: the consumer behind `chargeback consume`, the producer
behind `chargeback send`, and the reader behind `chargeback replay eventhub://...`.

SDK documentation this follows (azure-eventhub 5.x, learn.microsoft.com/python/api/azure-eventhub):
- `EventHubConsumerClient.receive_batch(on_event_batch, max_batch_size, max_wait_time,
  starting_position, starting_position_inclusive, partition_id)`: with a checkpoint store and no
  partition_id the clients of one consumer group balance the partitions among themselves by
  claiming ownership blobs; `on_event_batch` is called with an empty list when max_wait_time
  passes without events; `PartitionContext.update_checkpoint(event)` writes the checkpoint.
- `BlobCheckpointStore` (azure-eventhub-checkpointstoreblob): ownership and checkpoints as blobs
  `{namespace}/{hub}/{consumer group}/ownership|checkpoint/{partition}` in one container, from
  an account URL with a credential or `from_connection_string`.
- `EventData`: body, sequence_number, offset, enqueued_time, partition_key, properties.
- `EventHubProducerClient.create_batch(partition_key=...)`, `EventDataBatch.add` (ValueError
  when full), `send_batch`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from azure.eventhub import EventData, EventDataBatch, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

from pipeline.adapters.azure.blob_store import parse_blob_url
from pipeline.adapters.azure.identity import shared_credential
from pipeline.domain.decode import RawMessage
from pipeline.domain.errors import UserError
from pipeline.domain.eventhubs import EventHubAddress, event_message

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[RawMessage]], object]  # writes the batch to the ledger, or raises
MAX_BATCH_SIZE = 500
MAX_WAIT_SECONDS = 5.0
QUEUED_EVENTS = 10_000  # replay: events read ahead of ingest


class EventHubSettingsError(UserError):
    """A consumer, producer or checkpoint store that cannot be opened from the settings given."""


def open_checkpoint_store(url: str, *, account_url: str | None, connection_string: str | None) -> BlobCheckpointStore:
    """The checkpoint store in Blob container `az://CONTAINER`. The store names its blobs itself
    (by namespace, hub and consumer group), so the URL names a container and no prefix."""
    container, prefix = parse_blob_url(url)
    if prefix:
        raise EventHubSettingsError(f"{url!r}: the checkpoint store takes a container only (az://CONTAINER); "
                                    "its blobs are named by namespace, hub and consumer group")
    if connection_string:
        return BlobCheckpointStore.from_connection_string(connection_string, container)
    if not account_url:
        raise EventHubSettingsError(f"{url}: set CHARGEBACK_STORAGE_ACCOUNT_URL (signed in with "
                                    "DefaultAzureCredential) or AZURE_STORAGE_CONNECTION_STRING")
    return BlobCheckpointStore(account_url, container, credential=shared_credential())


def consumer_client(address: EventHubAddress, consumer_group: str, *, connection_string: str | None,
                    checkpoint_store: BlobCheckpointStore | None = None) -> EventHubConsumerClient:
    """A consumer of the hub: by connection string (local and dev) or by the namespace with
    DefaultAzureCredential (the identity needs Azure Event Hubs Data Receiver)."""
    if connection_string:
        return EventHubConsumerClient.from_connection_string(
            connection_string, consumer_group, eventhub_name=address.hub, checkpoint_store=checkpoint_store)
    return EventHubConsumerClient(address.namespace, address.hub, consumer_group, shared_credential(),
                                  checkpoint_store=checkpoint_store)


def producer_client(address: EventHubAddress, *, connection_string: str | None) -> EventHubProducerClient:
    """A producer to the hub (the identity needs Azure Event Hubs Data Sender)."""
    if connection_string:
        return EventHubProducerClient.from_connection_string(connection_string, eventhub_name=address.hub)
    return EventHubProducerClient(address.namespace, address.hub, shared_credential())


def event_body(event: EventData) -> bytes:
    """The event's bytes: APIM sends one data section; a multi-section body is joined."""
    if event.body_type == AmqpMessageBodyType.DATA:
        body: Any = event.body
        return body if isinstance(body, bytes) else b"".join(body)
    return event.body_as_str().encode("utf-8")


def event_messages(events: Sequence[EventData], partition: str | None, source: str) -> list[RawMessage]:
    """The received events as RawMessages, exactly as the Functions trigger builds them."""
    return [event_message(event_body(e), source, partition, e.sequence_number, e.offset, e.enqueued_time)
            for e in events]


class Consumer:
    """Receives batches of the usage hub and hands each to `handler`; a partition's checkpoint is
    written only after `handler` returned (the ledger holds the batch). If it raises, the SDK
    calls on_error and gives up the partition; whichever instance claims it next resumes at the
    last checkpoint, so the batch is received again (every write is idempotent by eventId)."""

    def __init__(self, client: EventHubConsumerClient, handler: BatchHandler, source: str, *,
                 max_batch_size: int = MAX_BATCH_SIZE, max_wait_time: float = MAX_WAIT_SECONDS) -> None:
        self.client = client
        self.handler = handler
        self.source = source
        self.max_batch_size = max_batch_size
        self.max_wait_time = max_wait_time
        self.batches = 0
        self._stopping = threading.Event()

    def on_event_batch(self, context: Any, events: list[EventData]) -> None:
        """The SDK's callback for one partition's batch (`context` is its PartitionContext)."""
        if not events:
            return
        self.handler(event_messages(events, context.partition_id, self.source))
        context.update_checkpoint(events[-1])  # after the ledger write, never before
        self.batches += 1

    def on_error(self, context: Any, error: Exception) -> None:
        partition = getattr(context, "partition_id", None) if context is not None else None
        log.error("event hub partition %s: %s: %s", partition or "-", type(error).__name__, error)

    def stop(self, signum: int | None = None, frame: object = None) -> None:
        """The SIGTERM/SIGINT handler: ask `run` to close the client and return."""
        self._stopping.set()

    def run(self) -> None:
        """Receive until `stop`: the SDK's loop runs on a thread of its own, so that a signal
        only sets a flag; then `close()` stops the partition workers, each after its current batch."""
        worker = threading.Thread(target=self._receive, name="eventhub-receive", daemon=True)
        worker.start()
        while worker.is_alive() and not self._stopping.wait(0.5):
            pass
        self.client.close()
        worker.join()

    def _receive(self) -> None:
        self.client.receive_batch(on_event_batch=self.on_event_batch, on_error=self.on_error,
                                  max_batch_size=self.max_batch_size, max_wait_time=self.max_wait_time,
                                  starting_position="-1")


def fill_batches(new_batch: Callable[[str | None], EventDataBatch],
                 events: Iterable[tuple[bytes, str | None]]) -> Iterator[EventDataBatch]:
    """Events (body, partition key) in batches of one partition key each, every batch as full
    as its size limit allows. The APIM policy keys every event by its own eventId, so with
    such keys each event is a batch of its own, as it is when APIM sends it."""
    batch: EventDataBatch | None = None
    key: str | None = None
    for body, partition_key in events:
        if batch is not None and partition_key != key:
            yield batch
            batch = None
        if batch is None:
            batch, key = new_batch(partition_key), partition_key
        try:
            batch.add(EventData(body))
        except ValueError:  # full
            if len(batch) == 0:
                raise EventHubSettingsError(f"an event of {len(body)} bytes does not fit in a batch") from None
            yield batch
            batch = new_batch(partition_key)
            batch.add(EventData(body))
    if batch is not None and len(batch):
        yield batch


def send_events(client: EventHubProducerClient, events: Iterable[tuple[bytes, str | None]]) -> int:
    """Send the events; the number sent."""
    sent = 0
    with client:
        for batch in fill_batches(lambda key: client.create_batch(partition_key=key), events):
            client.send_batch(batch)
            sent += len(batch)
    return sent


def read_events(open_client: Callable[[], EventHubConsumerClient], source: str, start: datetime | None,
                end: datetime | None, partitions: Sequence[str] = (),
                max_wait_time: float = MAX_WAIT_SECONDS) -> Iterator[RawMessage]:
    """Every event of the partitions (default: all) enqueued from `start` (inclusive) until
    `end` (exclusive) or until the partition is caught up (the last sequence number it had when
    the read began, or no event within max_wait_time). A client without a checkpoint store:
    nothing is checkpointed. Events are yielded as they arrive (a bounded queue, not a list)."""
    with open_client() as client:
        wanted = list(partitions) or client.get_partition_ids()
        lasts = {p: int(client.get_partition_properties(p)["last_enqueued_sequence_number"]) for p in wanted}
    for partition in wanted:
        if lasts[partition] >= 0:  # -1: an empty partition
            yield from _read_partition(open_client(), source, partition, start, end, lasts[partition], max_wait_time)


_END = None


def _read_partition(client: EventHubConsumerClient, source: str, partition: str, start: datetime | None,
                    end: datetime | None, last: int, max_wait_time: float) -> Iterator[RawMessage]:
    received: queue.Queue[RawMessage | None] = queue.Queue(maxsize=QUEUED_EVENTS)
    done = threading.Event()

    def on_event_batch(context: Any, events: list[EventData]) -> None:
        for event in events:
            if done.is_set():
                return
            enqueued, sequence = event.enqueued_time, event.sequence_number
            if (end is not None and enqueued is not None and enqueued >= end) or (sequence or 0) > last:
                break
            received.put(event_messages([event], partition, source)[0])
            if (sequence or 0) >= last:
                break
        else:
            if events:
                return
        if not done.is_set():  # past --to, at the last event or no event within max_wait_time
            done.set()
            received.put(_END)

    worker = threading.Thread(target=client.receive_batch, name=f"eventhub-replay-{partition}", daemon=True,
                              kwargs={"on_event_batch": on_event_batch, "partition_id": partition,
                                      "max_wait_time": max_wait_time,
                                      "starting_position": start if start is not None else "-1",
                                      "starting_position_inclusive": True})
    worker.start()
    try:
        while (message := received.get()) is not _END:
            assert message is not None
            yield message
    finally:
        done.set()
        client.close()
        worker.join()
