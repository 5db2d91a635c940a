"""APIM's LLM logs (GatewayLlmLogs) filling the usage of streamed events: parsing the envelopes
(tests/fixtures/apim/llm-logs/, matched by id to tests/fixtures/apim/events/), storing the
counts and never a message, and the join at read time in every arrival order.

Prices: the shipped catalog, gpt-4o global 2.50 / 1.25 / 10.00 USD per 1M tokens; deployments:
tests/fixtures/apim/deployments.csv (gpt-4o-prod -> gpt-4o, global).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from pipeline.adapters.azure.blob_store import open_blob_store
from pipeline.app import Pipeline, open_store
from pipeline.domain.decode import RawMessage
from pipeline.domain.llm_logs import parse_envelope
from pipeline.entrypoints.cli import main
from pipeline.entrypoints.functions import llm_logs
from pipeline.entrypoints.functions.llm_logs import ingest_llm_events
from pipeline.entrypoints.functions.timers import check_llm_logs
from pipeline.inputs.event_files import llm_log_messages
from pipeline.inputs.reference import load_reference
from pipeline.lake.areas import LLM_USAGE
from pipeline.lake.llm_usage import LLM_USAGE_SCHEMA
from pipeline.lake.warehouse import open_warehouse
from pipeline.ports import ObjectStore
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest
from pipeline.stages.llm_usage import LlmIngestResult, ingest_llm_logs, stream_status
from pipeline.stages.report.build import build_report
from pipeline.stages.report.model import Report
from pipeline.stages.snapshot import snapshot
from tests.conftest import local
from tests.test_cli import run
from tests.test_functions import collected, host_batch

FIXTURES = Path(__file__).parent / "fixtures" / "apim"
LOGS = FIXTURES / "llm-logs"
MARKER = b"MESSAGE-TEXT"  # in every prompt, completion and body of the fixtures
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # the usage window (24 h) runs back to 2026-11-19T12:00Z
STREAMED, CHAT = "7c9e6679-7425-40de-944b-e07fc1f90ae7", "0f8fad5b-d9cb-469f-a165-70867728950e"
LOGGED, ORPHAN = "5b2c6d1e-8f90-4a1b-9c2d-3e4f5a6b7c8d", "e4d3c2b1-a098-4765-8321-0fedcba98765"
EXPIRED, PENDING = "9a8b7c6d-0000-4000-8000-00000000000e", "9a8b7c6d-0000-4000-8000-00000000000f"
# STREAMED (log: 1200 prompt, 200 of them cached, 300 completion): (1000 * 2.50 + 200 * 1.25 + 300 * 10) / 1e6
# LOGGED (log: 800 / 100, no cached count: priced uncached): (800 * 2.50 + 100 * 10) / 1e6
# CHAT keeps its response usage (1200 / 300): (1200 * 2.50 + 300 * 10) / 1e6
COSTS = {STREAMED: Decimal("0.00575"), LOGGED: Decimal("0.003"), CHAT: Decimal("0.006")}
ORIGINS = {STREAMED: "llm-log", LOGGED: "llm-log", CHAT: "response", EXPIRED: "none", PENDING: "none"}
STATES = {STREAMED: "measured", LOGGED: "measured", CHAT: "measured", EXPIRED: "expired", PENDING: "pending"}


def streamed_event(event_id: str, timestamp: str) -> bytes:
    body: dict[str, Any] = json.loads((FIXTURES / "events" / "chat-streamed.json").read_bytes())
    return json.dumps(body | {"eventId": event_id, "timestamp": timestamp}).encode()


EVENTS = [(FIXTURES / "events" / "chat-streamed.json").read_bytes().strip(),
          (FIXTURES / "events" / "chat.json").read_bytes().strip(),
          streamed_event(LOGGED, "2026-11-03T10:02:11.5230000Z"),
          streamed_event(EXPIRED, "2026-11-03T10:30:00Z"),  # its log entry never comes
          streamed_event(PENDING, "2026-11-20T11:30:00Z")]  # half an hour old: may still come
LOG_FILES = [LOGS / "chat-streamed.json", LOGS / "eventhub-messages.jsonl"]


@pytest.fixture
def llm_store(settings: Settings) -> ObjectStore:
    return open_store(settings, LLM_USAGE)


def send_events(pipeline: Pipeline) -> None:
    ingest([RawMessage(body, "apim-fixture", f"line {n}") for n, body in enumerate(EVENTS, 1)], pipeline.ledger,
           pipeline.counters, pipeline.dead_letters, pipeline.pricer)
    snapshot(pipeline.ledger, pipeline.snapshots)


def send_logs(store: ObjectStore) -> LlmIngestResult:
    total = LlmIngestResult()
    for path in LOG_FILES:
        total.add(ingest_llm_logs(llm_log_messages(str(path)), store))
    return total


def read(pipeline: Pipeline, store: ObjectStore) -> tuple[dict[str, tuple[Any, ...]], Report, Decimal]:
    """Per event (origin, state, prompt, cached, completion, cost, unpriced reason), the November
    report, and the sum of the `costs` view (whose log records have no event: `llm_usage_unmatched`)."""
    reference = load_reference(None, FIXTURES / "deployments.csv", None)
    warehouse = open_warehouse(local(pipeline.snapshots), reference, llm_usage=store, now=NOW)
    rows = warehouse.connection.execute(
        "SELECT event_id, usage_origin, usage_state, prompt_tokens, cached_tokens, completion_tokens, cost, "
        "unpriced_reason FROM costs").fetchall()
    [(total,)] = warehouse.connection.execute("SELECT sum(cost) FROM costs WHERE month = '2026-11'").fetchall()
    unmatched = warehouse.connection.execute("SELECT join_id FROM llm_usage_unmatched").fetchall()
    assert set(unmatched) <= {(STREAMED,), (CHAT,), (LOGGED,), (ORPHAN,)}
    if rows:  # once the events are in, only the request that never sent one is left
        assert unmatched == [(ORPHAN,)]
    return {row[0]: row[1:] for row in rows}, build_report(warehouse, reference, "2026-11"), total


def test_an_envelope_keeps_the_counts_and_discards_everything_else() -> None:
    parsed = parse_envelope((LOGS / "chat-streamed.json").read_bytes(), "chat-streamed.json")
    assert (parsed.records, len(parsed.kept), dict(parsed.discarded), parsed.rejected) == (
        4, 1, {"other-category": 1, "no-tokens": 2}, [])  # GatewayLogs; two message chunks (one all zero)
    [usage] = parsed.kept
    assert (usage.join_id, usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, usage.total_tokens,
            usage.is_stream, usage.sequence_number, usage.model) == (
        STREAMED, 1200, 200, 300, 1500, True, 0, "gpt-4o-2024-11-20")
    assert usage.time == datetime(2026, 11, 3, 9, 15, 2, 1938, UTC)  # 7 fractional digits, cut to microseconds
    assert MARKER.decode() not in repr(usage)


def test_bad_input_is_rejected_with_a_reason_and_never_quoted() -> None:
    parsed = [parse_envelope(line, f"line {n}") for n, line in
              enumerate((LOGS / "rejects.jsonl").read_bytes().splitlines(), 1)]
    assert [[r.reason for r in p.rejected] for p in parsed] == [
        ["not-json"], ["not-envelope"],
        ["missing-id", "bad-tokens", "inconsistent-tokens", "inconsistent-tokens", "bad-time", "not-a-record"]]
    assert parsed[2].records == 6 and not parsed[2].kept
    assert all(MARKER.decode() not in r.detail + r.where for p in parsed for r in p.rejected)


def test_stored_files_hold_counts_only_and_a_redelivery_writes_nothing(settings: Settings,
                                                                      llm_store: ObjectStore) -> None:
    first = send_logs(llm_store)
    # one file per batch and day: chat-streamed.json (2026-11-03), the Event Hub messages (11-03, 11-04)
    assert (first.messages, first.records, first.kept, first.files_written) == (5, 8, 5, 3)
    assert dict(first.discarded) == {"other-category": 1, "no-tokens": 2} and not first.rejected
    bad = ingest_llm_logs(llm_log_messages(str(LOGS / "rejects.jsonl")), llm_store)
    assert (bad.messages, bad.records, bad.kept, bad.files_written, sum(bad.rejected.values())) == (3, 6, 0, 0, 8)
    again = send_logs(llm_store)
    assert (again.kept, again.files_written, again.files_present) == (5, 0, 3)
    keys = llm_store.list("")
    assert len(keys) == 3 and all(key.startswith("date=2026-11-0") for key in keys)
    for key in keys:
        table = pq.read_table(local(llm_store).path(key))
        assert table.schema.names == LLM_USAGE_SCHEMA.names
        assert MARKER.decode() not in json.dumps(table.to_pylist(), default=str)
    # Nothing the ingest wrote anywhere (no dead letters of LLM logs either) holds a message.
    written = [path for path in settings.home.rglob("*") if path.is_file()]
    assert written and not [path for path in written if MARKER in path.read_bytes()]


ORDERS = {
    "event first, then log": ("events", "logs"),
    "log first, then event": ("logs", "check", "events"),
    "log redelivered": ("events", "logs", "logs"),
    "event redelivered": ("logs", "events", "events"),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_the_join_gives_the_same_costs_in_every_arrival_order(pipeline: Pipeline, llm_store: ObjectStore,
                                                               order: str) -> None:
    for step in ORDERS[order]:
        if step == "events":
            send_events(pipeline)
        elif step == "logs":
            send_logs(llm_store)
        else:  # logs without their events yet: every logged request is unmatched, nothing priced
            _, early, _ = read(pipeline, llm_store)
            assert (early.llm_unmatched, early.totals) == (4, {})
    events, report, total = read(pipeline, llm_store)
    assert {event_id: row[0] for event_id, row in events.items()} == ORIGINS
    assert {event_id: row[1] for event_id, row in events.items()} == STATES
    assert events[STREAMED][2:5] == (1200, 200, 300)  # from the log, once, although logged twice
    assert {event_id: row[5] for event_id, row in events.items() if row[5] is not None} == COSTS
    assert report.totals == {"USD": sum(COSTS.values())} and total == Decimal("0.01475")
    assert (report.states, report.origins, report.llm_unmatched) == (
        {"expired": 1, "measured": 3, "pending": 1}, {"llm-log": 2, "none": 2, "response": 1}, 1)
    # LOGGED's record has no cached count: priced uncached, at most 800 * (2.50 - 1.25) / 1e6 too much.
    assert (report.cached_unknown_requests, report.max_overcharge) == (1, {"USD": Decimal("0.001")})
    assert report.llm_mismatched == 0


def test_the_join_reads_llm_usage_from_blob_storage(pipeline: Pipeline, azurite_connection_string: str) -> None:
    store = open_blob_store(f"az://t{uuid.uuid4().hex[:12]}/chargeback/{LLM_USAGE}", account_url=None,
                            connection_string=azurite_connection_string, create_container=True)
    send_events(pipeline)
    assert (send_logs(store).files_written, send_logs(store).files_written) == (3, 0)
    events, report, total = read(pipeline, store)
    assert {event_id: row[5] for event_id, row in events.items() if row[5] is not None} == COSTS
    assert (report.totals, total, report.llm_unmatched) == ({"USD": Decimal("0.01475")}, Decimal("0.01475"), 1)


def test_a_stream_whose_usage_never_came_is_unpriced_no_usage_after_the_window(pipeline: Pipeline,
                                                                                 llm_store: ObjectStore) -> None:
    send_events(pipeline)
    send_logs(llm_store)
    events, report, _ = read(pipeline, llm_store)
    assert events[EXPIRED][1:] == ("expired", None, None, None, None, "no-usage")
    assert events[PENDING][1:] == ("pending", None, None, None, None, "usage-pending")
    unpriced = {(row.reason, row.usage_state): (row.requests, row.detail) for row in report.unpriced}
    assert unpriced == {
        ("no-usage", "expired"): (1, "streamed request; its usage never arrived from APIM LLM logs (GatewayLlmLogs) "
                                     "within the usage window"),
        ("usage-pending", "pending"): (1, "streamed request; usage not yet joined from APIM LLM logs")}


def test_the_functions_trigger_stores_a_host_batch_once(llm_store: ObjectStore) -> None:
    bodies = (LOGS / "eventhub-messages.jsonl").read_bytes().splitlines()
    first = ingest_llm_events(host_batch(bodies), llm_store, "eventhub:gw-ns/apim-gateway-logs")
    again = ingest_llm_events(host_batch(bodies), llm_store, "eventhub:gw-ns/apim-gateway-logs")
    assert (first.messages, first.kept, first.files_written, again.files_written, again.files_present) == (
        4, 4, 2, 0, 2)


def test_the_trigger_body_writes_to_the_store_and_raises_store_failures(
        settings: Settings, llm_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_LLM_LOGS_EVENTHUB_NAME", "apim-gateway-logs")
    monkeypatch.setenv("EVENTHUB_LLM_LOGS__fullyQualifiedNamespace", "gw-ns.servicebus.windows.net")
    context = SimpleNamespace(retry_context=SimpleNamespace(retry_count=0, max_retry_count=-1))
    llm_logs.ingest_llm_logs(host_batch((LOGS / "rejects.jsonl").read_bytes().splitlines()[:1]), context)
    assert llm_store.list("") == []  # a bad envelope is counted and logged, never raised
    assert llm_logs.llm_logs_source(Settings.from_env()) == "eventhub:gw-ns.servicebus.windows.net/apim-gateway-logs"

    def unavailable(*args: object) -> None:
        raise ConnectionError("store unavailable")

    monkeypatch.setattr(llm_logs, "ingest_llm_batch", unavailable)
    with pytest.raises(ConnectionError):  # the host retries the batch before it checkpoints
        llm_logs.ingest_llm_logs(host_batch([(LOGS / "chat-streamed.json").read_bytes()]), context)


def test_the_cli_ingests_llm_logs(home: Path) -> None:
    result = run("ingest-llm-logs", *map(str, LOG_FILES), str(LOGS / "rejects.jsonl"))
    assert result.exit_code == 0, result.output
    assert "read 8 envelope(s), 14 record(s): kept 5 usage record(s), discarded 3, rejected 8; 3 new file(s)" in (
        " ".join(result.output.split()))
    again = run("ingest-llm-logs", *map(str, LOG_FILES))
    assert "0 new file(s), 3 already stored" in " ".join(again.output.split())
    query = run("query", "SELECT count(*) AS n FROM llm_usage_unmatched", "--format", "json")
    assert json.loads(query.output) == [{"n": 4}]


SHAPES = LOGS / "shapes"
SHAPED = "3d6f0a1e-5b7c-4d8e-9f01-23456789abcd"  # the request every file of tests/fixtures/apim/llm-logs/shapes logs


@pytest.mark.parametrize("name", sorted(path.name for path in SHAPES.glob("*.json*")))
def test_a_record_is_read_whatever_its_shape(name: str) -> None:
    parsed = [parse_envelope(message.body, message.position) for message in llm_log_messages(str(SHAPES / name))]
    kept = [usage for envelope in parsed for usage in envelope.kept]
    assert [r for envelope in parsed for r in envelope.rejected] == []
    assert [(u.join_id, u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_tokens, u.deployment,
             u.is_stream, u.time) for u in kept] == [
        (SHAPED, 1000, 250, 1250, None, "gpt-4o-prod", True, datetime(2026, 11, 4, 8, 0, 0, 123456, UTC))]
    records = sum(envelope.records for envelope in parsed)
    discarded = sum(sum(envelope.discarded.values()) for envelope in parsed)
    assert records == len(kept) + discarded  # every record counted: kept or discarded, with its reason
    assert MARKER.decode() not in repr(kept)


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"records": [{"time": "2026-11-04T08:00:00Z", "properties": {"promptTokens": 5}}]}', "no-category"),
    (b'{"records": [{"Category": "GatewayLlmLogs", "time": "2026-11-04T08:00:00Z", "PromptTokens": "5", '
     b'"CompletionTokens": "x", "CorrelationId": "c-1"}]}', "bad-tokens"),
    (b'{"records": [{"Type": "ApiManagementGatewayLlmLog", "PromptTokens": 5, "CompletionTokens": 1, '
     b'"CorrelationId": "c-1"}]}', "bad-time"),
    (b'{"Records": "not a list"}', "not-envelope"),
    (b'{"time": "2026-11-04T08:00:00Z"}', "not-envelope"),
])
def test_a_gateway_llm_record_that_cannot_be_used_is_a_counted_rejection(body: bytes, reason: str) -> None:
    parsed = parse_envelope(body, "seeded")
    assert [r.reason for r in parsed.rejected] == [reason] and parsed.kept == []


@pytest.mark.parametrize("name", sorted(path.name for path in SHAPES.glob("*.json*")))
def test_a_streamed_request_is_priced_from_every_shape(pipeline: Pipeline, llm_store: ObjectStore,
                                                       name: str) -> None:
    ingest([RawMessage(streamed_event(SHAPED, "2026-11-04T08:00:00.1234567Z"), "apim-fixture", "line 1")],
           pipeline.ledger, pipeline.counters, pipeline.dead_letters, pipeline.pricer)
    snapshot(pipeline.ledger, pipeline.snapshots)
    assert ingest_llm_logs(llm_log_messages(str(SHAPES / name)), llm_store).kept == 1
    reference = load_reference(None, FIXTURES / "deployments.csv", None)
    report = build_report(open_warehouse(local(pipeline.snapshots), None, llm_usage=llm_store, now=NOW), reference,
                          "2026-11")
    # gpt-4o global: (1000 * 2.50 + 250 * 10.00) / 1e6; no cached count in any shape: at most
    # 1000 * (2.50 - 1.25) / 1e6 over-charged.
    assert (report.totals, report.origins, report.cached_unknown_requests, report.max_overcharge) == (
        {"USD": Decimal("0.005")}, {"llm-log": 1}, 1, {"USD": Decimal("0.00125")})
    [row] = report.rows
    assert (row.cached_unknown_requests, row.cached_unknown_max_overcharge) == (1, Decimal("0.00125"))


def test_a_record_naming_another_deployment_is_counted_and_the_event_wins(pipeline: Pipeline,
                                                                          llm_store: ObjectStore) -> None:
    ingest([RawMessage(streamed_event(SHAPED, "2026-11-04T08:00:00Z"), "apim-fixture", "line 1")],
           pipeline.ledger, pipeline.counters, pipeline.dead_letters, pipeline.pricer)
    snapshot(pipeline.ledger, pipeline.snapshots)
    other = (SHAPES / "single-record.json").read_bytes().replace(b'"gpt-4o-prod"', b'"gpt-41-mini"')
    assert ingest_llm_logs([RawMessage(other, "seeded", "whole file")], llm_store).kept == 1
    reference = load_reference(None, FIXTURES / "deployments.csv", None)
    report = build_report(open_warehouse(local(pipeline.snapshots), None, llm_usage=llm_store, now=NOW), reference,
                          "2026-11")
    assert report.llm_mismatched == 1
    [row] = report.rows
    assert (row.model, report.totals) == ("gpt-4o", {"USD": Decimal("0.005")})  # priced as the event's gpt-4o-prod


LATE_RECORD = (b'{"records": [{"time": "2026-11-20T11:00:00Z", "category": "GatewayLlmLogs", "properties": '
               b'{"correlationId": "' + ORPHAN.encode() + b'", "promptTokens": 10, "completionTokens": 5}}]}')


def test_the_stream_status_counts_the_waiting_streams_and_warns_when_the_logs_stop(
        pipeline: Pipeline, llm_store: ObjectStore) -> None:
    send_events(pipeline)
    send_logs(llm_store)  # records of 2026-11-03 and -04: the logs stopped long before the stream of 11:30
    status = stream_status(pipeline.snapshots, llm_store, NOW, timedelta(hours=6))
    assert (status.pending, status.oldest_pending, status.recent_streams) == (
        1, datetime(2026, 11, 20, 11, 30, tzinfo=UTC), 1)  # PENDING; EXPIRED is older than the usage window
    assert (status.last_record, status.stale) == (datetime(2026, 11, 4, 16, 40, 0, 100000, UTC), True)
    ingest_llm_logs([RawMessage(LATE_RECORD, "seeded", "whole file")], llm_store)
    fresh = stream_status(pipeline.snapshots, llm_store, NOW, timedelta(hours=6))
    assert (fresh.last_record, fresh.stale, fresh.pending) == (datetime(2026, 11, 20, 11, tzinfo=UTC), False, 1)
    assert stream_status(pipeline.snapshots, llm_store, NOW, timedelta(minutes=45)).stale  # the record is 1 h old


def test_the_snapshot_timer_records_the_stream_status_as_metrics(pipeline: Pipeline, llm_store: ObjectStore,
                                                                 settings: Settings) -> None:
    send_events(pipeline)
    send_logs(llm_store)
    reader = InMemoryMetricReader()
    status = check_llm_logs(settings, SdkMeterProvider(metric_readers=[reader]), NOW)
    metrics = collected(reader)
    assert {name: [point.value for point in metrics[name].data_points] for name in metrics} == {
        "chargeback.llm_logs.pending_streams": [1], "chargeback.llm_logs.stale": [1],
        "chargeback.llm_logs.record_age": [(NOW - status.last_record).total_seconds()]}  # type: ignore[operator]


def test_chargeback_usage_shows_the_waiting_streams_and_the_warning(home: Path, write_file: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fresh = streamed_event(str(uuid.uuid4()), (now - timedelta(minutes=20)).isoformat())
    assert run("ingest", str(write_file("streams.jsonl", fresh + b"\n"))).exit_code == 0
    result = run("usage")
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "streamed requests of the last 24 h waiting for LLM-log usage: 1, the oldest since" in output
    assert "newest LLM-log record: none stored" in output
    assert "warning: 1 streamed request(s) in the last 6 h but no LLM-log record for 6 h" in output
    quiet = CliRunner().invoke(main, ["usage"], env={"CHARGEBACK_LLM_LOG_STALE_HOURS": "0.1"})  # 6 min: older
    assert "warning" not in quiet.output and quiet.exit_code == 0
    bad = CliRunner().invoke(main, ["usage"], env={"CHARGEBACK_LLM_LOG_STALE_HOURS": "soon"})
    assert bad.exit_code == 1 and bad.output.strip() == (
        "Error: CHARGEBACK_LLM_LOG_STALE_HOURS 'soon': expected a number of hours above 0")
