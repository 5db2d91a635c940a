"""The Azure Functions app without a Functions host: batches shaped like the host's (real
azure.functions objects, decoded by azure.functions' own Event Hub trigger converter from the
data and trigger metadata the host sends for cardinality many), the plain functions behind the
triggers on the real embedded pipeline, the trigger bodies, the app's function metadata, the
metrics and the zip package."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import typing
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import ANY

import azure.functions as func
import pytest
from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.meta import Datum
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, InMemoryMetricReader

import function_app
from pipeline.app import Pipeline, open_pipeline, open_store
from pipeline.domain.periods import month_bounds
from pipeline.entrypoints.functions import eventhub, timers
from pipeline.entrypoints.functions.eventhub import eventhub_source, ingest_events, raw_messages
from pipeline.entrypoints.functions.metrics import configure_metrics, record_ingest
from pipeline.entrypoints.functions.timers import refresh_reports, report_formats, report_months, snapshot_ledger
from pipeline.lake.areas import REPORTS, SNAPSHOTS
from pipeline.lake.manifests import published_files
from pipeline.lake.rollups import ROLLUP_LAYOUT, rolled_up_note_key
from pipeline.lake.warehouse import open_warehouse
from pipeline.settings import Settings, SettingsError
from pipeline.stages.backfill import BackfillResult
from pipeline.stages.ingest import IngestResult
from pipeline.stages.report.build import build_report
from pipeline.stages.report.model import FORMATS
from pipeline.stages.report.publish import publish_report
from pipeline.stages.report.render import render_report
from pipeline.stages.snapshot import snapshot
from tests.conftest import ReferenceFiles, WriteFile, local
from tests.factories import event, line, usage, write_report
from tests.test_rollups import as_before_rollups

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "chargeback-ns.servicebus.windows.net"
HUB = "apim-usage"
SOURCE = f"eventhub:{NAMESPACE}/{HUB}"
ENQUEUED = datetime(2026, 10, 15, 12, 31, 0, 123456, tzinfo=UTC)
NOW = datetime(2026, 10, 15, 12, 31, 30, tzinfo=UTC)


def host_batch(bodies: list[bytes], partition: str = "3", first_sequence: int = 100,
               first_offset: int = 4_294_967_296, geo_replicated: bool = False) -> list[func.EventHubEvent]:
    """The batch the worker hands a cardinality-many, dataType-binary trigger, decoded by
    azure.functions from what the host sends: the bodies as collection_bytes and the binding
    data of Microsoft.Azure.WebJobs.Extensions.EventHubs (PartitionContext, the *Array values,
    SystemPropertiesArray with one dict per event). EnqueuedTimeUtc comes as UTC clock time
    without an offset and with 7 fractional digits, as .NET writes a DateTime. A geo-replicated
    namespace has offsets that are not numbers: Offset is then -1 and OffsetString the offset."""
    count = len(bodies)
    sequences = [first_sequence + n for n in range(count)]
    offsets = [str(first_offset + 1000 * n) for n in range(count)]
    enqueued = [(ENQUEUED + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0" for n in range(count)]
    if geo_replicated:
        offsets = [f"1:{first_offset + 1000 * n}:7" for n in range(count)]
    system = [{"x-opt-sequence-number": s, "x-opt-offset": o, "x-opt-enqueued-time": t,
               "SequenceNumber": s, "Offset": -1 if geo_replicated else int(o), "OffsetString": o,
               "PartitionKey": None,
               "EnqueuedTimeUtc": t} for s, o, t in zip(sequences, offsets, enqueued, strict=True)]
    context = {"FullyQualifiedNamespace": NAMESPACE, "EventHubName": HUB, "ConsumerGroup": "chargeback",
               "PartitionId": partition}
    metadata = {
        "PartitionContext": Datum(json.dumps(context), "json"),
        "TriggerPartitionContext": Datum(json.dumps(context), "json"),
        "PartitionKeyArray": Datum(json.dumps([None] * count), "json"),
        "OffsetArray": Datum(SimpleNamespace(string=offsets), "collection_string"),
        "SequenceNumberArray": Datum(SimpleNamespace(sint64=sequences), "collection_sint64"),
        "EnqueuedTimeUtcArray": Datum(json.dumps(enqueued), "json"),
        "PropertiesArray": Datum(json.dumps([{}] * count), "json"),
        "SystemPropertiesArray": Datum(json.dumps(system), "json"),
    }
    decoded = EventHubTriggerConverter.decode(Datum(SimpleNamespace(bytes=bodies), "collection_bytes"),
                                              trigger_metadata=metadata)
    assert isinstance(decoded, list)
    return decoded


def mixed_batch() -> tuple[list[bytes], dict[str, int]]:
    """3 good events (one of them delivered twice in the batch; two unpriced), 2 malformed ones."""
    first = line(event(deployment="dep-alpha", model=None))  # priced with the deployment map's m-alpha
    bodies = [
        first,
        line(event(deployment="dep-noprice")),  # no price for its model: unpriced
        first,  # the same event again: a duplicate
        b'{"schemaVersion": 1, "eventId": "broken',  # not JSON
        line(event(usage=usage(100, 20) | {"totalTokens": 7})),  # inconsistent usage
        line(event(usage=None, usageSource="none")),  # no usage: unpriced
    ]
    return bodies, {"received": 6, "ingested": 3, "duplicates": 1, "dead_lettered": 2, "unpriced": 2}


def month_totals(pipeline: Pipeline) -> list[tuple[Any, ...]]:
    return [(m.subscription_id, m.requests, m.prompt_tokens, m.completion_tokens, m.spend_micros,
             m.unpriced_requests) for m in pipeline.counters.month_to_date("2026-10")]


def test_host_batch_has_the_origin_of_every_event() -> None:
    events = host_batch([b"a", b"b"])
    assert [e.get_body() for e in events] == [b"a", b"b"]
    assert events[0].metadata is not None and events[0].metadata["PartitionContext"]["PartitionId"] == "3"
    # azure.functions parses the host's EnqueuedTimeUtc into a naive datetime.
    assert events[1].enqueued_time is not None and events[1].enqueued_time.tzinfo is None

    messages = raw_messages(events, SOURCE)

    assert [(m.partition, m.sequence_number, m.offset, m.enqueued_time, m.position) for m in messages] == [
        ("3", 100, "4294967296", ENQUEUED, "partition 3, sequence 100"),
        ("3", 101, "4294968296", ENQUEUED + timedelta(seconds=1), "partition 3, sequence 101"),
    ]
    assert {m.source for m in messages} == {SOURCE}
    assert eventhub.describe_batch(events) == "partition 3, sequences 100..101 (2 events)"


def test_offsets_that_are_not_numbers_are_kept() -> None:
    events = host_batch([b"a", b"b"], geo_replicated=True)
    assert [str(e.offset) for e in events] == ["-1", "-1"]  # an int at run time, despite its annotation

    assert [m.offset for m in raw_messages(events, SOURCE)] == ["1:4294967296:7", "1:4294968296:7"]


def test_event_built_directly_has_no_partition_id() -> None:
    single = func.EventHubEvent(body=b"x", enqueued_time=ENQUEUED, sequence_number=7, offset="1024",
                                partition_key="pk-1")

    [message] = raw_messages([single], SOURCE)

    assert (message.partition, message.sequence_number, message.offset, message.enqueued_time) == (
        None, 7, "1024", ENQUEUED)
    assert message.position == "partition ?, sequence 7"


def test_offset_minus_one_means_unknown() -> None:
    # Newer extensions send Offset -1 when the offset is not a number (and OffsetString beside it).
    [message] = raw_messages([func.EventHubEvent(body=b"x", sequence_number=1, offset="-1")], SOURCE)
    assert message.offset is None and message.enqueued_time is None


def test_a_batch_has_one_outcome_per_event(pipeline: Pipeline) -> None:
    bodies, expected = mixed_batch()

    result = ingest_events(host_batch(bodies), pipeline, SOURCE, now=NOW)

    assert (result.received, result.ingested, result.duplicates, result.dead_lettered) == (
        expected["received"], expected["ingested"], expected["duplicates"], expected["dead_lettered"])
    assert dict(result.reasons) == {"not-json": 1, "inconsistent-usage": 1}
    assert pipeline.ledger.count() == 3


def test_the_same_batch_redelivered_changes_nothing(pipeline: Pipeline) -> None:
    bodies, _ = mixed_batch()
    batch = host_batch(bodies)
    ingest_events(batch, pipeline, SOURCE, now=NOW)
    ledger_count, totals = pipeline.ledger.count(), month_totals(pipeline)

    again = ingest_events(host_batch(bodies), pipeline, SOURCE, now=NOW)

    assert (again.received, again.ingested, again.duplicates, again.dead_lettered) == (6, 0, 4, 2)
    assert pipeline.ledger.count() == ledger_count == 3
    assert month_totals(pipeline) == totals
    assert totals[0][1] == 3  # sub-a: three requests counted, once


def test_the_origin_reaches_the_snapshots(pipeline: Pipeline) -> None:
    bodies = [line(event(eventId=f"evt-origin-{n}")) for n in range(3)]
    ingest_events(host_batch(bodies, partition="7", first_sequence=5000), pipeline, SOURCE, now=NOW)

    snapshot(pipeline.ledger, pipeline.snapshots)
    rows = open_warehouse(pipeline.snapshots).connection.execute(
        "SELECT event_id, source, source_position, eventhub_partition, eventhub_sequence_number, eventhub_offset, "
        "eventhub_enqueued_time FROM usage ORDER BY eventhub_sequence_number").fetchall()

    assert [row[:6] for row in rows] == [
        (f"evt-origin-{n}", SOURCE, f"partition 7, sequence {5000 + n}", "7", 5000 + n, str(4_294_967_296 + 1000 * n))
        for n in range(3)]
    assert [row[6].astimezone(UTC) for row in rows] == [ENQUEUED + timedelta(seconds=n) for n in range(3)]


def test_metrics_equal_the_ingest_result(settings: Settings, reference_files: ReferenceFiles) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.budgets_csv.write_text("scope,key,monthly_budget,currency\nsubscription,sub-a,0.0001,USD\n")
    pipeline = open_pipeline(settings, reference_files.load())
    reader = InMemoryMetricReader()
    provider = SdkMeterProvider(metric_readers=[reader])
    bodies, expected = mixed_batch()
    try:
        result = ingest_events(host_batch(bodies), pipeline, SOURCE, meter_provider=provider, now=NOW)
    finally:
        pipeline.close()

    metrics = collected(reader)
    assert result.alerts, "the tiny budget is crossed"
    assert sums(metrics, "chargeback.events.received") == {(): result.received}
    assert sums(metrics, "chargeback.events.ingested") == {(): result.ingested}
    assert sums(metrics, "chargeback.events.duplicate") == {(): result.duplicates}
    assert sums(metrics, "chargeback.events.dead_lettered") == {
        (("reason", "inconsistent-usage"),): 1, (("reason", "not-json"),): 1}
    assert sum(sums(metrics, "chargeback.events.dead_lettered").values()) == result.dead_lettered
    assert sums(metrics, "chargeback.events.unpriced") == {(): expected["unpriced"]}
    assert sum(sums(metrics, "chargeback.budget.alerts").values()) == len(result.alerts)
    duration = histogram(metrics, "chargeback.batch.duration")
    assert (duration.count, duration.sum) == (1, pytest.approx(result.seconds))
    lag = histogram(metrics, "chargeback.ingest.lag")
    # Every event of the batch was enqueued 30 s, 29 s, ... before NOW.
    assert (lag.count, lag.sum) == (6, pytest.approx(sum(30 - n - 0.123456 for n in range(6))))


def test_record_ingest_on_the_no_op_provider_records_nothing() -> None:
    record_ingest(IngestResult(received=6), [1.0, -2.0], meter_provider=NoOpMeterProvider())


@pytest.mark.parametrize("columnar", [True, False], ids=["Arrow columns (embedded)", "objects (Azure)"])
def test_the_unpriced_count_is_of_what_the_pricer_could_not_price(pipeline: Pipeline, columnar: bool) -> None:
    """The unpriced metric's count, as ingest prices a batch either way: every decoded event
    the pricer cannot price, each copy of an eventId priced as it is (a conflicting copy may be
    priced where its first copy is not)."""
    from pipeline.domain.decode import decode_batch
    from pipeline.stages.decode_ahead import prepare_batch

    bodies = mixed_batch()[0]
    unpriced_copy = line({**json.loads(bodies[0]), "deployment": "dep-noprice"})  # same eventId, unpriced
    messages = raw_messages(host_batch([*bodies, unpriced_copy]), SOURCE)
    decoded = decode_batch(messages, NOW)
    expected = sum(not charge.priced for charge in pipeline.pricer.charges(decoded.events))
    prepared = prepare_batch(messages, pipeline.pricer, NOW, columnar=columnar)
    assert prepared.unpriced == expected == 3  # the two of the mixed batch, and the copy


def test_configure_metrics_picks_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(configure_metrics(Settings.from_env({})), NoOpMeterProvider)
    assert isinstance(configure_metrics(Settings.from_env({"CHARGEBACK_METRICS": "off"})), NoOpMeterProvider)
    console = configure_metrics(Settings.from_env({"CHARGEBACK_METRICS": "console"}))
    assert isinstance(console, SdkMeterProvider)
    assert [type(r._exporter) for r in console._metric_readers] == [ConsoleMetricExporter]  # type: ignore[attr-defined]
    console.shutdown()
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    azure = configure_metrics(Settings.from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING":
                               "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                               "IngestionEndpoint=http://127.0.0.1:9/", "CHARGEBACK_METRICS": "console"}))
    assert isinstance(azure, SdkMeterProvider)
    assert [type(r._exporter).__name__ for r in azure._metric_readers] == [  # type: ignore[attr-defined]
        "AzureMonitorMetricExporter"]
    azure.shutdown(timeout_millis=2000)


def test_eventhub_source_from_the_connection_settings() -> None:
    assert eventhub_source(Settings.from_env({"EVENTHUB__fullyQualifiedNamespace": NAMESPACE,
                                              "CHARGEBACK_EVENTHUB_NAME": HUB})) == SOURCE
    assert eventhub_source(Settings.from_env({
        "EVENTHUB": f"Endpoint=sb://{NAMESPACE}/;SharedAccessKeyName=listen;SharedAccessKey=x",
        "CHARGEBACK_EVENTHUB_NAME": HUB})) == SOURCE
    assert eventhub_source(Settings.from_env({})) == "eventhub:unknown/unknown"


@pytest.fixture
def app_settings(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The app settings of a deployed app, with the embedded stores under the test home."""
    monkeypatch.setenv("CHARGEBACK_EVENTHUB_NAME", HUB)
    monkeypatch.setenv("CHARGEBACK_CONSUMER_GROUP", "chargeback")
    monkeypatch.setenv("EVENTHUB__fullyQualifiedNamespace", NAMESPACE)
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("CHARGEBACK_METRICS", raising=False)
    settings = Settings.from_env()
    yield settings
    if eventhub._open_once.cache_info().currsize:  # a trigger body opened the worker's pipeline
        opened, _ = eventhub._open_once(settings)
        opened.close()
    eventhub._open_once.cache_clear()


def test_the_event_hub_trigger_body_ingests_the_batch(app_settings: Settings) -> None:
    bodies, _ = mixed_batch()
    context = SimpleNamespace(retry_context=SimpleNamespace(retry_count=0, max_retry_count=-1))

    eventhub.ingest_usage_events(host_batch(bodies), context)
    eventhub.ingest_usage_events(host_batch(bodies), context)  # redelivered

    with eventhub.worker_pipeline(app_settings) as pipeline:
        assert pipeline.ledger.count() == 3
        rows = pipeline.ledger.changes(None, 10).table.to_pylist()
    assert {(row["source"], row["eventhub_partition"]) for row in rows} == {(SOURCE, "3")}


def test_a_failing_batch_is_raised_to_the_host(app_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("ledger unavailable")

    monkeypatch.setattr(eventhub, "ingest_batch", unavailable)
    context = SimpleNamespace(retry_context=SimpleNamespace(retry_count=2, max_retry_count=-1))
    with pytest.raises(ConnectionError):
        eventhub.ingest_usage_events(host_batch([line(event())]), context)


def test_the_snapshot_timer_publishes_the_ledger(app_settings: Settings, pipeline: Pipeline) -> None:
    ingest_events(host_batch([line(event(deployment="dep-alpha", model=None))]), pipeline, SOURCE, now=NOW)

    timers.snapshot_timer(SimpleNamespace(past_due=False))

    assert sum(file.rows for file in published_files(pipeline.snapshots)) == 1
    assert snapshot_ledger(app_settings).rows == 0  # nothing new


def test_the_snapshot_timer_rolls_up_earlier_files_a_few_a_run_then_stops_looking(
        app_settings: Settings, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A store upgraded in place (its files committed before rollups) comes to have a rollup for
    every file without anyone running `snapshot --rollups`; then a run reads one object for it."""
    days = [f"2026-10-0{day}T10:00:00Z" for day in range(1, 6)]
    ingest_events(host_batch([line(event(timestamp=day)) for day in days]), pipeline, SOURCE, now=NOW)
    snapshot_ledger(app_settings)
    store = local(pipeline.snapshots)
    assert as_before_rollups(store) == 5
    monkeypatch.setattr(timers, "BACKFILL_FILES_PER_RUN", 2)
    caplog.set_level(logging.INFO)
    for left in (3, 1, 0):
        timers.snapshot_timer(SimpleNamespace(past_due=False))
        assert sum(file.rollup_layout != ROLLUP_LAYOUT for file in published_files(store)) == left
    assert "rollups: 1 earlier file(s) rolled up" in caplog.text and store.exists(rolled_up_note_key())
    assert timers.backfill_snapshots(app_settings) == BackfillResult(skipped=True, seconds=ANY)


def test_a_damaged_file_is_logged_by_the_timer_after_its_snapshot(
        app_settings: Settings, pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    ingest_events(host_batch([line(event())]), pipeline, SOURCE, now=NOW)
    snapshot_ledger(app_settings)
    store = local(pipeline.snapshots)
    as_before_rollups(store)
    [damaged] = published_files(store)
    (store.root / damaged.key).write_bytes(b"PAR1 not really")
    ingest_events(host_batch([line(event())], first_sequence=200), pipeline, SOURCE, now=NOW)

    timers.snapshot_timer(SimpleNamespace(past_due=False))  # no exception: the snapshot is committed

    assert len(published_files(store)) == 2
    [error] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert error.getMessage().startswith(f"rollups: {store.url}/{damaged.key}: a committed snapshot file is not "
                                         "readable Parquet")


def test_the_report_timer_publishes_this_and_last_month(app_settings: Settings, pipeline: Pipeline,
                                                         reference_files: ReferenceFiles, tmp_path: Path) -> None:
    ingest_events(host_batch(mixed_batch()[0]), pipeline, SOURCE, now=NOW)
    snapshot_ledger(app_settings)
    settings = dataclasses.replace(app_settings, prices=reference_files.prices,
                                   deployments=reference_files.deployments, cost_centers=reference_files.cost_centers)

    keys = refresh_reports(settings, date(2026, 11, 3))

    store = open_store(app_settings, REPORTS)
    assert sorted(keys) == sorted(store.list("")) == sorted(
        [f"chargeback-{month}{suffix}" for month in ("2026-10", "2026-11")
         for suffix in (".csv", ".parquet", "-unpriced.csv", "-daily.csv", "-focus.csv", "-focus-1.2.csv",
                        "-focus-1.2.parquet", ".html")]
        + [f"ingestion/Costs/2026/{mm}/apim-openai-chargeback/{name}" for mm in ("10", "11")
           for name in (f"apim-openai-chargeback-2026-{mm}__chargeback-2026-{mm}-focus.parquet", "manifest.json")])
    # The published bytes are write_report's, in every format.
    reference = reference_files.load()
    direct = build_report(open_warehouse(pipeline.snapshots, None, month_bounds("2026-10")),
                          reference, "2026-10")
    for path in write_report(direct, tmp_path / "direct", FORMATS):
        key = path.relative_to(tmp_path / "direct").as_posix()
        assert store.get(key) == path.read_bytes(), key
    assert b"CC-A" in (store.get("chargeback-2026-10.csv") or b"")


def test_the_report_timer_warns_of_an_empty_store_and_of_unassigned_usage(
        app_settings: Settings, pipeline: Pipeline, reference_files: ReferenceFiles, write_file: WriteFile,
        caplog: pytest.LogCaptureFixture) -> None:
    """What a reader of the published files would not see is logged: a store with no committed
    snapshot (its reports are empty), and usage charged to `unassigned` (billed to no one)."""
    nobody = write_file("nobody.csv", "subscription_id,cost_center,effective_from,effective_to\nsub-z,CC-Z,,\n")
    settings = dataclasses.replace(app_settings, prices=reference_files.prices,
                                   deployments=reference_files.deployments, cost_centers=nobody)
    caplog.set_level(logging.WARNING)
    refresh_reports(settings, date(2026, 11, 3))
    url = open_store(app_settings, SNAPSHOTS).url
    assert [record.getMessage() for record in caplog.records] == [
        f"report {month}: {url} holds no committed snapshot, so the report is empty: check CHARGEBACK_STORE and "
        "the snapshot_usage timer's runs" for month in ("2026-11", "2026-10")]
    caplog.clear()
    ingest_events(host_batch(mixed_batch()[0]), pipeline, SOURCE, now=NOW)
    snapshot_ledger(app_settings)
    refresh_reports(settings, date(2026, 11, 3))
    # the batch's 3 events, all of sub-a in 2026-10 (one priced, for less than a cent)
    assert [record.getMessage() for record in caplog.records] == [
        "report 2026-10: 3 requests of 1 subscription(s) with no cost center on their days are charged to "
        "`unassigned` (0.00 USD): sub-a; map them in the cost-center file (CHARGEBACK_COST_CENTERS)"]


def test_the_report_timer_formats_come_from_the_settings(app_settings: Settings) -> None:
    assert report_formats(app_settings) == ["csv", "parquet", "focus", "focus-1.2", "html"]
    assert report_formats(dataclasses.replace(app_settings, report_formats=" csv, html ")) == ["csv", "html"]
    for bad in ("csv,xlsx", ",", "pdf"):
        with pytest.raises(SettingsError,
                           match=r"CHARGEBACK_REPORT_FORMATS .*: choose from csv, parquet, focus, focus-1\.2, html"):
            report_formats(dataclasses.replace(app_settings, report_formats=bad))
    assert Settings.from_env({"CHARGEBACK_REPORT_FORMATS": "csv"}).report_formats == "csv"


def test_the_report_timer_body_writes_into_the_reports_area(app_settings: Settings) -> None:
    timers.report_timer(SimpleNamespace(past_due=False))

    month = f"{datetime.now(UTC):%Y-%m}"
    assert f"chargeback-{month}.csv" in open_store(app_settings, REPORTS).list("")


@pytest.mark.parametrize(("today", "months"), [
    (date(2026, 11, 3), ["2026-11", "2026-10"]),
    (date(2026, 11, 5), ["2026-11", "2026-10"]),
    (date(2026, 11, 6), ["2026-11"]),
    (date(2027, 1, 1), ["2027-01", "2026-12"]),
    (date(2026, 3, 31), ["2026-03"]),
])
def test_report_months(today: date, months: list[str]) -> None:
    assert report_months(today) == months


def test_publish_replaces_a_report(pipeline: Pipeline, reference_files: ReferenceFiles, settings: Settings) -> None:
    ingest_events(host_batch([line(event(deployment="dep-alpha", model=None))]), pipeline, SOURCE, now=NOW)
    snapshot(pipeline.ledger, pipeline.snapshots)
    warehouse = open_warehouse(pipeline.snapshots, None, month_bounds("2026-10"))
    report = build_report(warehouse, reference_files.load(), "2026-10")
    store = open_store(settings, REPORTS)
    store.put("chargeback-2026-10.csv", b"stale", overwrite=True)

    published = publish_report(report, store, ["csv"])

    assert published.keys == ["chargeback-2026-10.csv", "chargeback-2026-10-unpriced.csv",
                              "chargeback-2026-10-daily.csv"]
    assert published.store == store.url
    assert store.get("chargeback-2026-10.csv") == render_report(report, ["csv"])["chargeback-2026-10.csv"]


def test_an_open_months_files_are_written_each_before_the_next_is_made(
        pipeline: Pipeline, reference_files: ReferenceFiles, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The daily timer republishes the current month in every format: holding all of them at once
    # took a 5,000-subscription month's peak from 1.1 to 1.5 GB.
    from pipeline.stages.report import focus_files, render

    ingest_events(host_batch([line(event(deployment="dep-alpha", model=None))]), pipeline, SOURCE, now=NOW)
    snapshot(pipeline.ledger, pipeline.snapshots)
    report = build_report(open_warehouse(pipeline.snapshots, None, month_bounds("2026-10")), reference_files.load(),
                          "2026-10")
    store = open_store(settings, REPORTS)
    expected = render_report(report, ["csv", "parquet", "focus"])
    events: list[str] = []
    real_focus, real_put = focus_files.render_focus, store.put

    def focus(*args: Any, **kwargs: Any) -> dict[str, bytes]:
        events.append("focus")
        return real_focus(*args, **kwargs)

    def put(key: str, data: bytes, *, overwrite: bool) -> bool:
        events.append(key)
        return real_put(key, data, overwrite=overwrite)

    monkeypatch.setattr(render, "render_focus", focus)
    monkeypatch.setattr(store, "put", put)

    published = publish_report(report, store, ["csv", "parquet", "focus"], today=date(2026, 10, 20))

    assert published.keys == list(expected)  # the hubs manifest last
    assert events == [*list(expected)[:4], "focus", *list(expected)[4:]]
    assert {key: store.get(key) for key in published.keys} == expected
    events.clear()
    again = publish_report(report, store, ["csv", "parquet", "focus"], today=date(2026, 11, 20))
    # closed, and every report file as it was: none rewritten, no restatement; the hubs manifest
    # (not a report file) is written last as always
    assert (events, again.keys, again.restatement) == (["focus", list(expected)[-1]], list(expected), None)


def test_the_app_registers_six_functions_with_their_bindings() -> None:
    functions = {str(f.get_function_name()): f for f in function_app.app.get_functions()}
    assert sorted(functions) == ["ingest_llm_logs", "ingest_usage_events", "publish_budgets", "reconcile_azure",
                                 "refresh_reports", "snapshot_usage"]

    for name, connection, prefix in (("ingest_usage_events", "EVENTHUB", "CHARGEBACK"),
                                     ("ingest_llm_logs", "EVENTHUB_LLM_LOGS", "CHARGEBACK_LLM_LOGS")):
        ingest = functions[name]
        [trigger] = json.loads(ingest.get_function_json())["bindings"]
        assert trigger == {"type": "eventHubTrigger", "direction": "IN", "name": "events", "cardinality": "MANY",
                           "dataType": "BINARY", "connection": connection,
                           "eventHubName": f"%{prefix}_EVENTHUB_NAME%", "consumerGroup": f"%{prefix}_CONSUMER_GROUP%"}
        assert ingest.get_settings_dict("retry_policy") == {
            "setting_name": "retry_policy", "strategy": "exponential_backoff", "max_retry_count": "-1",
            "minimum_interval": "00:00:05", "maximum_interval": "00:05:00"}
        # The checks the Python worker makes when it loads the function.
        hints = typing.get_type_hints(ingest.get_user_function())
        assert EventHubTriggerConverter.check_input_type_annotation(hints["events"])
        assert hints["context"] is func.Context

    for name, schedule in (("snapshot_usage", "0 */15 * * * *"), ("refresh_reports", "0 30 1 * * *"),
                           ("reconcile_azure", "0 0 3 * * *"), ("publish_budgets", "0 * * * * *")):
        [timer] = json.loads(functions[name].get_function_json())["bindings"]
        assert timer == {"type": "timerTrigger", "direction": "IN", "name": "timer", "schedule": schedule,
                         "runOnStartup": False, "useMonitor": True}
    assert functions["refresh_reports"].get_settings_dict("retry_policy") is not None
    assert functions["reconcile_azure"].get_settings_dict("retry_policy") is not None
    assert functions["snapshot_usage"].get_settings_dict("retry_policy") is None
    assert functions["publish_budgets"].get_settings_dict("retry_policy") is None  # the next run is a minute away


def test_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    hubs = host["extensions"]["eventHubs"]
    assert hubs["batchCheckpointFrequency"] == 1
    assert hubs["minEventBatchSize"] < hubs["maxEventBatchSize"] <= hubs["prefetchCount"]


def test_package_without_dependencies(tmp_path: Path) -> None:
    out = tmp_path / "dist" / "chargeback-functions.zip"

    subprocess.run([sys.executable, str(ROOT / "scripts" / "package_functions.py"), "--no-deps", "--out", str(out)],
                   check=True, capture_output=True, cwd=tmp_path, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})

    names = zipfile.ZipFile(out).namelist()
    assert {"function_app.py", "host.json", "pipeline/__init__.py", "pipeline/entrypoints/functions/eventhub.py",
            "pipeline/data/prices.csv"} <= set(names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in names if name.startswith((".python_packages/", "tests/", ".venv/"))]


def collected(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {metric.name: metric.data for resource in data.resource_metrics for scope in resource.scope_metrics
            for metric in scope.metrics}


def sums(metrics: dict[str, Any], name: str) -> dict[tuple[tuple[str, Any], ...], int]:
    return {tuple(sorted(point.attributes.items())): point.value for point in metrics[name].data_points}


def histogram(metrics: dict[str, Any], name: str) -> Any:
    [point] = metrics[name].data_points
    return point
