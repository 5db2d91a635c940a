"""Event Hub trigger: each batch of APIM usage events goes through `ingest_batch` once.

No `from __future__ import annotations` here: the Functions worker reads the trigger's
parameter annotations at indexing time and expects real types, not strings.

App settings: CHARGEBACK_EVENTHUB_NAME (the hub), CHARGEBACK_CONSUMER_GROUP (a consumer group
of this app's own, `chargeback` by convention), and the identity-based connection
`EVENTHUB__fullyQualifiedNamespace` (NAMESPACE.servicebus.windows.net; the app's identity needs
"Azure Event Hubs Data Receiver"). See docs/functions.md.
"""

import functools
import json
import logging
import threading
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from opentelemetry.metrics import MeterProvider

from pipeline.app import Pipeline, open_budgets, open_pipeline, publish_budgets
from pipeline.domain.budget_gate import crosses_block
from pipeline.domain.decode import RawMessage
from pipeline.domain.eventhubs import CHECKS_DUPLICATE_KEYS, endpoint_host, event_message, source_name
from pipeline.entrypoints.functions.metrics import configure_metrics, record_ingest
from pipeline.settings import Settings
from pipeline.stages.ingest import IngestResult, ingest_batch

# Binding expressions the Functions host resolves from app settings (the pipeline never reads them).
EVENTHUB_NAME_SETTING = "CHARGEBACK_EVENTHUB_NAME"
CONSUMER_GROUP_SETTING = "CHARGEBACK_CONSUMER_GROUP"
CONNECTION = "EVENTHUB"  # app settings EVENTHUB__fullyQualifiedNamespace (+ __credential, __clientId)
# The hub's events are built by the APIM policy as a JObject, which cannot name a key twice, and
# only APIM's managed identity may send to the hub (terraform/modules/access: Data Sender for APIM
# alone; local auth is off). So the duplicate-key check, an untyped second decode of every event, is skipped
# here; files, stdin and replays (Capture, dead letters) keep it. docs/guarantees.md.
EVENTHUB_CHECKS_DUPLICATE_KEYS = CHECKS_DUPLICATE_KEYS

bp = func.Blueprint()  # type: ignore[no-untyped-call]

Handler = typing.Callable[[typing.List[func.EventHubEvent], func.Context], None]  # noqa: UP006


def batch_trigger(blueprint: func.Blueprint, name: str, connection: str, hub_setting: str,
                  group_setting: str) -> typing.Callable[[Handler], typing.Any]:
    """Register a function for Event Hub batches (cardinality many, bytes) that no batch can skip.

    An exception does NOT stop the host from checkpointing a batch: without a retry policy the
    pointer moves past a failed batch. With this policy the host re-runs the same batch in place
    and writes no checkpoint until the policy is done, so the partition waits while the stores
    are down. The count is unbounded (-1) because a batch abandoned after the last retry would be
    checkpointed past, i.e. lost; the backoff is bounded (5 s doubling to 5 min) so a long outage
    costs one attempt per 5 minutes per partition. Every failure is logged with its partition and
    sequence range, and the lag metric grows."""
    def register(handler: Handler) -> typing.Any:
        trigger = blueprint.event_hub_message_trigger(
            arg_name="events", connection=connection, event_hub_name=f"%{hub_setting}%",
            consumer_group=f"%{group_setting}%", cardinality=func.Cardinality.MANY,
            data_type=func.DataType.BINARY)
        retry = blueprint.retry(strategy="exponential_backoff", max_retry_count="-1",
                                minimum_interval="00:00:05", maximum_interval="00:05:00")
        return blueprint.function_name(name)(retry(trigger(handler)))
    return register


@batch_trigger(bp, "ingest_usage_events", CONNECTION, EVENTHUB_NAME_SETTING, CONSUMER_GROUP_SETTING)
def ingest_usage_events(events: typing.List[func.EventHubEvent], context: func.Context) -> None:  # noqa: UP006
    settings = Settings.from_env()
    try:
        with worker_pipeline(settings) as pipeline:
            result = ingest_events(events, pipeline, eventhub_source(settings),
                                   meter_provider=worker_meter_provider(settings))
    except Exception:
        logging.exception("ingest of %s failed (retry %s); the host retries it before checkpointing",
                          describe_batch(events), getattr(context.retry_context, "retry_count", "?"))
        raise
    logging.info("ingest of %s: received %d, ingested %d, duplicates %d, dead-lettered %d in %.3f s",
                 describe_batch(events), result.received, result.ingested, result.duplicates,
                 result.dead_lettered, result.seconds)
    now = datetime.now(UTC)
    if result.alerts and crosses_block(result.alerts, open_budgets(settings), f"{now:%Y-%m}"):
        try:  # at once, rather than at the next minute's publish_budgets run
            published = publish_budgets(settings, now)
            logging.info("budgets: a block budget reached 100%%: %s", ", ".join(published.written) or "unchanged")
        except Exception:  # the batch is in the ledger and counted: the minute timer publishes it
            logging.exception("budgets: publishing the gateway state failed; publish_budgets retries within a minute")


def ingest_events(events: Sequence[func.EventHubEvent], pipeline: Pipeline, source: str, *,
                  meter_provider: MeterProvider | None = None, now: datetime | None = None) -> IngestResult:
    """Ingest one trigger batch: every event keeps its origin (partition, sequence number,
    offset, enqueued time). Any failure propagates, so that the host retries the whole batch;
    every write is idempotent by eventId, so a retried or redelivered batch counts once."""
    messages = raw_messages(events, source)
    result = ingest_batch(messages, pipeline.ledger, pipeline.counters, pipeline.dead_letters, pipeline.pricer, now,
                          check_duplicate_keys=EVENTHUB_CHECKS_DUPLICATE_KEYS)
    if meter_provider is not None:
        processed = now or datetime.now(UTC)
        lags = [(processed - m.enqueued_time).total_seconds() for m in messages if m.enqueued_time is not None]
        record_ingest(result, lags, meter_provider=meter_provider)
    return result


def raw_messages(events: Sequence[func.EventHubEvent], source: str) -> list[RawMessage]:
    """The events as RawMessages. For cardinality many the partition id is not on the events:
    it is in the trigger metadata every event of the batch shares, `PartitionContext`
    (`{"PartitionId": "3", "EventHubName": ..., "ConsumerGroup": ..., ...}`)."""
    metadata = _trigger_metadata(events)
    partition = _partition_id(metadata)
    system = metadata.get("SystemPropertiesArray")
    # One dict per event, in the order of the events; only trusted when the lengths agree.
    properties = system if isinstance(system, list) and len(system) == len(events) else [{}] * len(events)
    messages = []
    for event, props in zip(events, properties, strict=True):
        # The host sends EnqueuedTimeUtc as UTC clock time without an offset, which
        # azure.functions parses as a naive datetime: event_message reads it as UTC.
        messages.append(event_message(
            event.get_body(), source, partition, event.sequence_number,
            _offset(event, props if isinstance(props, Mapping) else {}), event.enqueued_time))
    return messages


def describe_batch(events: Sequence[func.EventHubEvent]) -> str:
    """`partition 3, sequences 100..149 (50 events)`: enough for ops to find a batch again."""
    sequences = [e.sequence_number for e in events if e.sequence_number is not None]
    span = f"sequences {min(sequences)}..{max(sequences)}" if sequences else "no sequence numbers"
    return f"partition {_partition_id(_trigger_metadata(events)) or '?'}, {span} ({len(events)} events)"


def eventhub_source(settings: Settings) -> str:
    """`eventhub:<namespace>/<hub>` from the app settings of the trigger."""
    namespace = settings.eventhub_namespace or endpoint_host(settings.eventhub_connection or "")
    return source_name(namespace, settings.eventhub_name)


@contextmanager
def worker_pipeline(settings: Settings) -> Iterator[Pipeline]:
    """The worker process's Pipeline for these settings, opened on first use and kept for the
    life of the worker, used by one invocation at a time.

    The worker runs synchronous invocations on a thread pool (one per partition batch in
    flight). The embedded SQLite adapters must not interleave two threads' transactions, and the
    Azure adapters fan out inside a call already (16 Cosmos DB writers, one Redis pipeline), so
    batches of one worker process take turns; more throughput comes from more instances."""
    with _opening:
        pipeline, turn = _open_once(settings)
    with turn:
        yield pipeline


_opening = threading.Lock()  # so that two first invocations do not both open the adapters


@functools.cache
def _open_once(settings: Settings) -> tuple[Pipeline, threading.Lock]:
    return open_pipeline(settings), threading.Lock()


@functools.cache
def worker_meter_provider(settings: Settings) -> MeterProvider:
    """The process's meter provider (one exporter per worker process), configured on first use."""
    return configure_metrics(settings)


def _trigger_metadata(events: Sequence[func.EventHubEvent]) -> Mapping[str, Any]:
    # For cardinality many every event points to the same metadata of the whole batch.
    metadata = events[0].metadata if events else None
    return metadata or {}


def _partition_id(metadata: Mapping[str, Any]) -> str | None:
    context = metadata.get("PartitionContext") or metadata.get("TriggerPartitionContext")
    if isinstance(context, str):
        try:
            context = json.loads(context)
        except ValueError:
            return None
    partition = context.get("PartitionId") if isinstance(context, Mapping) else None
    return None if partition is None else str(partition)


def _offset(event: func.EventHubEvent, properties: Mapping[str, Any]) -> str | None:
    # Newer extensions send OffsetString (geo-replicated namespaces have non-numeric offsets)
    # and then Offset -1 when it is not a number; azure.functions turns Offset into an int.
    text = properties.get("OffsetString")
    if text:
        return str(text)
    offset = event.offset
    return None if offset is None or str(offset) == "-1" else str(offset)
