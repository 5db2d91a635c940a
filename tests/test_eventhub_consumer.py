"""`chargeback consume`, `send` and `replay eventhub://` without an Event Hubs namespace (no
emulator runs here: it is a container image). What is real: BlobCheckpointStore on Azurite, the
SDK's EventData (built as its receive path builds them, from an AMQP message with the service's
annotations) and EventDataBatch; the ledger is the embedded SQLite one."""

from __future__ import annotations

import signal
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub._constants import PROP_OFFSET, PROP_SEQ_NUMBER, PROP_TIMESTAMP
from azure.eventhub._pyamqp.message import Message
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
from azure.storage.blob import BlobServiceClient
from click.testing import CliRunner

from pipeline.adapters.azure.eventhubs import Consumer, event_messages, fill_batches
from pipeline.app import Pipeline, eventhub_address
from pipeline.domain.decode import RawMessage
from pipeline.domain.eventhubs import parse_eventhub_url, partition_key
from pipeline.entrypoints.cli import main
from pipeline.entrypoints.functions.eventhub import raw_messages
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest_batch
from tests.factories import event, line

NAMESPACE = "evhns-test.servicebus.windows.net"
HUB = "usage"
SOURCE = f"eventhub:{NAMESPACE}/{HUB}"
ENQUEUED = datetime(2026, 12, 3, 10, 0, 0, 123000, tzinfo=UTC)


def received(body: bytes, sequence: int, offset: int, enqueued: datetime = ENQUEUED) -> EventData:
    """An EventData as the SDK's receiver makes one: `_from_message` of an AMQP message that
    carries the service's annotations (enqueued time in milliseconds since the epoch)."""
    annotations: dict[str | bytes, Any] = {PROP_SEQ_NUMBER: sequence, PROP_OFFSET: str(offset).encode(),
                   PROP_TIMESTAMP: int(enqueued.timestamp() * 1000)}
    return EventData._from_message(Message(data=[body], message_annotations=annotations))


class Context:
    """The PartitionContext the SDK hands on_event_batch, on a real checkpoint store."""

    def __init__(self, store: BlobCheckpointStore | None, partition_id: str, group: str = "chargeback") -> None:
        self.store, self.partition_id, self.group = store, partition_id, group

    def update_checkpoint(self, event: EventData) -> None:
        assert self.store is not None
        self.store.update_checkpoint({
            "fully_qualified_namespace": NAMESPACE, "eventhub_name": HUB, "consumer_group": self.group,
            "partition_id": self.partition_id, "offset": event.offset or "",
            "sequence_number": event.sequence_number or 0})


def ids(n: int) -> list[bytes]:
    return [line(event(eventId=str(uuid.uuid4()))) for _ in range(n)]


def ingest_into(pipeline: Pipeline) -> Any:
    def write(messages: list[RawMessage]) -> None:
        ingest_batch(messages, pipeline.ledger, pipeline.counters, pipeline.dead_letters, pipeline.pricer,
                     check_duplicate_keys=False)
    return write


def ledger_rows(pipeline: Pipeline) -> list[tuple[Any, ...]]:
    rows = pipeline.ledger.changes(None, 100).table.to_pylist()
    keys = ("source", "eventhub_partition", "eventhub_sequence_number", "eventhub_offset", "eventhub_enqueued_time")
    return sorted(tuple(row.get(k) for k in keys) for row in rows)


@pytest.fixture
def checkpoints(azurite_connection_string: str) -> BlobCheckpointStore:
    container = f"checkpoints-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azurite_connection_string).create_container(container)
    return BlobCheckpointStore.from_connection_string(azurite_connection_string, container)


def same_batch(monkeypatch: pytest.MonkeyPatch, bodies: list[bytes]) -> tuple[list[EventData], list[Any]]:
    """The same events as the SDK receives them and as the Functions host hands them over
    (tests.test_functions.host_batch: partition 3, sequences from 100, offsets from 2**32)."""
    from tests import test_functions

    monkeypatch.setattr(test_functions, "ENQUEUED", ENQUEUED)  # the service's time: milliseconds
    sdk = [received(b, 100 + n, 4_294_967_296 + 1000 * n, ENQUEUED + timedelta(seconds=n))
           for n, b in enumerate(bodies)]
    return sdk, test_functions.host_batch(bodies)


def test_an_event_becomes_the_same_message_as_through_the_functions_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    sdk, host = same_batch(monkeypatch, ids(2))
    consumed = event_messages(sdk, "3", SOURCE)
    assert consumed == raw_messages(host, SOURCE)
    assert (consumed[1].partition, consumed[1].sequence_number, consumed[1].offset, consumed[1].enqueued_time) == (
        "3", 101, "4294968296", ENQUEUED + timedelta(seconds=1))


def test_consumed_events_make_the_ledger_rows_the_trigger_makes(pipeline: Pipeline, settings: Settings,
                                                                  reference_files: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.app import open_pipeline

    sdk, host = same_batch(monkeypatch, ids(3))
    consumer = Consumer(SimpleNamespace(), ingest_into(pipeline), SOURCE)  # type: ignore[arg-type]
    consumer.on_event_batch(SimpleNamespace(partition_id="3", update_checkpoint=lambda e: None), sdk)
    other = open_pipeline(Settings(settings.home.parent / "other"), reference_files.load())
    try:
        ingest_into(other)(raw_messages(host, SOURCE))
        assert ledger_rows(pipeline) == ledger_rows(other)
        assert len(ledger_rows(pipeline)) == 3 and ledger_rows(pipeline)[0][:3] == (SOURCE, "3", 100)
    finally:
        other.close()


def test_a_checkpoint_moves_only_after_the_ledger_write(pipeline: Pipeline, checkpoints: BlobCheckpointStore) -> None:
    bodies = ids(4)
    first = [received(b, i, 10 * i) for i, b in enumerate(bodies[:2])]
    consumer = Consumer(SimpleNamespace(), ingest_into(pipeline), SOURCE)  # type: ignore[arg-type]
    consumer.on_event_batch(Context(checkpoints, "0"), first)
    [checkpoint] = checkpoints.list_checkpoints(NAMESPACE, HUB, "chargeback")
    assert (checkpoint["partition_id"], checkpoint["sequence_number"], checkpoint["offset"]) == ("0", 1, "10")

    def down(messages: list[RawMessage]) -> None:
        raise ConnectionError("ledger unavailable")

    failing = Consumer(SimpleNamespace(), down, SOURCE)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        failing.on_event_batch(Context(checkpoints, "0"), [received(b, 2 + i, 20 + 10 * i)
                                                           for i, b in enumerate(bodies[2:])])
    [unchanged] = checkpoints.list_checkpoints(NAMESPACE, HUB, "chargeback")
    assert unchanged["sequence_number"] == 1 and pipeline.ledger.count() == 2


def test_two_instances_share_the_partitions_through_ownership(checkpoints: BlobCheckpointStore) -> None:
    def claim(owner: str, partitions: list[str]) -> list[str]:
        claimed = checkpoints.claim_ownership([
            {"fully_qualified_namespace": NAMESPACE, "eventhub_name": HUB, "consumer_group": "chargeback",
             "partition_id": p, "owner_id": owner} for p in partitions])
        return sorted(o["partition_id"] for o in claimed)

    assert claim("instance-a", ["0", "1"]) == ["0", "1"]
    assert claim("instance-b", ["2", "3"]) == ["2", "3"]
    owners = {o["partition_id"]: o["owner_id"]
              for o in checkpoints.list_ownership(NAMESPACE, HUB, "chargeback")}
    assert owners == {"0": "instance-a", "1": "instance-a", "2": "instance-b", "3": "instance-b"}
    # b's view of partition 0 goes stale when a renews its claim: b's claim with the old etag is refused.
    stale = [o for o in checkpoints.list_ownership(NAMESPACE, HUB, "chargeback") if o["partition_id"] == "0"]
    checkpoints.claim_ownership(stale)  # a renews (same owner, current etag)
    assert checkpoints.claim_ownership([{**stale[0], "owner_id": "instance-b"}]) == []
    owners = {o["partition_id"]: o["owner_id"]
              for o in checkpoints.list_ownership(NAMESPACE, HUB, "chargeback")}
    assert owners["0"] == "instance-a"


def test_the_stop_handler_closes_the_client_and_run_returns() -> None:
    closed = threading.Event()

    class Client:
        def receive_batch(self, **kwargs: Any) -> None:
            closed.wait(5)

        def close(self) -> None:
            closed.set()

    consumer = Consumer(Client(), lambda messages: None, SOURCE)  # type: ignore[arg-type]
    threading.Timer(0.2, consumer.stop, args=(signal.SIGTERM, None)).start()
    consumer.run()
    assert closed.is_set()


def test_send_batches_keep_one_partition_key_each() -> None:
    bodies = ids(3)
    events = [(b, partition_key(b)) for b in bodies] + [(b"not json", None), (b"{}", None)]
    batches = list(fill_batches(lambda key: EventDataBatch(partition_key=key), events))
    assert [len(b) for b in batches] == [1, 1, 1, 2]
    assert sum(len(b) for b in batches) == 5


def test_a_full_batch_is_sent_and_another_started() -> None:
    body = b"x" * 400
    batches = list(fill_batches(lambda key: EventDataBatch(max_size_in_bytes=1024, partition_key=key),
                                [(body, None)] * 5))
    assert len(batches) > 1 and sum(len(b) for b in batches) == 5


@pytest.mark.parametrize("url", ["eventhub://", "eventhub://ns", "eventhub://ns/a/b", "az://x/y", "ns/hub"])
def test_a_bad_url_is_a_one_line_error(home: Any, url: str) -> None:
    result = CliRunner().invoke(main, ["send", "--synthetic", "1", url])
    assert result.exit_code in (1, 2), result.output
    assert result.output.startswith("Error:") or "Usage:" in result.output
    assert "Traceback" not in result.output


def test_consume_without_a_checkpoint_container_is_a_one_line_error(home: Any) -> None:
    result = CliRunner().invoke(main, ["consume", "eventhub://ns/usage"])
    assert result.exit_code == 1, result.output
    assert "checkpoint" in result.output and "Traceback" not in result.output


def test_addresses() -> None:
    assert parse_eventhub_url("eventhub://evhns-test/usage").source == SOURCE
    assert parse_eventhub_url(f"eventhub://{NAMESPACE}/usage").namespace == NAMESPACE
    settings = Settings(eventhub_namespace=NAMESPACE, eventhub_name=HUB)
    assert eventhub_address(settings, None).source == SOURCE


def test_a_replay_reads_from_the_start_and_stops_at_to_or_caught_up() -> None:
    """read_events' stopping rules, on the SDK's EventData; the client is a stand-in that calls
    on_event_batch as receive_batch does (a batch, then an empty one when nothing more comes)."""
    from pipeline.adapters.azure.eventhubs import read_events

    bodies = ids(5)
    events = [received(b, n, 10 * n, ENQUEUED + timedelta(minutes=n)) for n, b in enumerate(bodies)]
    asked: list[dict[str, Any]] = []

    class Client:
        def __enter__(self) -> Client:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def get_partition_ids(self) -> list[str]:
            return ["0"]

        def get_partition_properties(self, partition: str) -> dict[str, Any]:
            return {"last_enqueued_sequence_number": 4}

        def receive_batch(self, on_event_batch: Any, **kwargs: Any) -> None:
            asked.append(kwargs)
            on_event_batch(None, events[:3])
            on_event_batch(None, events[3:])
            on_event_batch(None, [])

        def close(self) -> None:
            pass

    until = list(read_events(Client, SOURCE, ENQUEUED, ENQUEUED + timedelta(minutes=2)))  # type: ignore[arg-type]
    assert [m.sequence_number for m in until] == [0, 1]
    assert asked[0]["starting_position"] == ENQUEUED and asked[0]["starting_position_inclusive"] is True
    assert asked[0]["partition_id"] == "0"
    everything = list(read_events(Client, SOURCE, None, None))  # type: ignore[arg-type]
    assert [m.sequence_number for m in everything] == [0, 1, 2, 3, 4]
    assert {m.source for m in everything} == {SOURCE}
