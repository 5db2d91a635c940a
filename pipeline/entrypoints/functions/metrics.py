"""Metrics of the ingest path, with OpenTelemetry (meter `chargeback`).

    chargeback.events.received        events delivered to ingest (every delivery, redeliveries too)
    chargeback.events.ingested        events new in the ledger
    chargeback.events.duplicate       events whose eventId was in the ledger already
    chargeback.events.dead_lettered   rejected events, by `reason` code
    chargeback.events.unpriced        events whose live charge had no price (no usage, usage
                                      pending, unknown deployment or model, no price)
    chargeback.budget.alerts          budget thresholds first reached, by `scope` and `threshold`
    chargeback.counters.degraded      batches acknowledged while the live counters were unavailable
                                      (in the ledger, not counted): run `chargeback reconcile --apply`
    chargeback.batch.duration  (s)    time ingest spent on one batch
    chargeback.ingest.lag      (s)    from an event's Event Hub enqueued time to its processing
    chargeback.llm_logs.pending_streams   streamed requests of the last 24 h still waiting for their
                                          LLM-log usage (gauge, every snapshot run)
    chargeback.llm_logs.record_age (s)    age of the newest stored LLM-log record (gauge; not
                                          recorded while none is stored)
    chargeback.llm_logs.stale             1 when streams came and no LLM-log record did for
                                          CHARGEBACK_LLM_LOG_STALE_HOURS (default 6), else 0: alert on it
    chargeback.reconciliation.gap_days    deployment-days of the month so far whose gap with Azure Monitor
                                          is over CHARGEBACK_RECONCILE_TOLERANCE (gauge, daily): alert on > 0
    chargeback.reconciliation.unmetered_requests  requests Azure counted and the ledger did not, on them

`configure_metrics` picks the exporter from the environment once per process; everything else
takes the meter provider it is given, so tests read the same instruments with an
InMemoryMetricReader and nothing here touches the global OpenTelemetry state.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricExporter, PeriodicExportingMetricReader

from pipeline.settings import Settings
from pipeline.stages.azure_reconcile import Reconciliation
from pipeline.stages.ingest import IngestResult
from pipeline.stages.llm_usage import StreamStatus

METER_NAME = "chargeback"
# Seconds. A batch takes milliseconds to seconds; lag is seconds when healthy, hours in a backlog.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)


def configure_metrics(settings: Settings, export_interval_seconds: float = 60.0) -> MeterProvider:
    """The meter provider the settings ask for: Azure Monitor when
    APPLICATIONINSIGHTS_CONNECTION_STRING is set, the console when CHARGEBACK_METRICS=console,
    else the API's no-op provider (instruments that record nothing, at no cost)."""
    exporter: MetricExporter
    connection_string = settings.appinsights_connection_string
    if connection_string:
        # Imported here: it is a dependency of the Functions app only (the `functions` extra).
        from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter

        exporter = AzureMonitorMetricExporter(connection_string=connection_string)
    elif (settings.metrics or "").strip().lower() == "console":
        exporter = ConsoleMetricExporter()
    else:
        return NoOpMeterProvider()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=export_interval_seconds * 1000)
    return SdkMeterProvider(metric_readers=[reader])


def record_ingest(result: IngestResult, lag_seconds: Sequence[float], *, meter_provider: MeterProvider) -> None:
    """Record one ingested batch: its counts, its duration and the lag of each of its events.

    Cheap enough for every batch: the SDK hands back the same meter and instruments for the
    same names, so nothing is created after the first call."""
    meter = meter_provider.get_meter(METER_NAME)
    meter.create_counter("chargeback.events.received", "{event}", "Events delivered to ingest").add(result.received)
    meter.create_counter("chargeback.events.ingested", "{event}", "Events new in the ledger").add(result.ingested)
    meter.create_counter("chargeback.events.duplicate", "{event}",
                         "Events whose eventId was in the ledger already").add(result.duplicates)
    dead_lettered = meter.create_counter("chargeback.events.dead_lettered", "{event}",
                                         "Events rejected to the dead letters, by reason")
    for reason, count in sorted(result.reasons.items()):
        dead_lettered.add(count, {"reason": reason})
    meter.create_counter("chargeback.events.unpriced", "{event}",
                         "Events whose live charge could not be priced").add(result.unpriced)
    alerts = meter.create_counter("chargeback.budget.alerts", "{alert}", "Budget thresholds first reached")
    for alert in result.alerts:
        alerts.add(1, {"scope": alert.scope.value, "threshold": alert.threshold})
    if result.counters_degraded:
        meter.create_counter("chargeback.counters.degraded", "{batch}",
                             "Batches in the ledger but not in the live counters (reconcile them)").add(1)
    meter.create_histogram("chargeback.batch.duration", "s", "Time ingest spent on one batch",
                           explicit_bucket_boundaries_advisory=DURATION_BUCKETS).record(result.seconds)
    lag = meter.create_histogram("chargeback.ingest.lag", "s", "From Event Hub enqueued time to processing",
                                 explicit_bucket_boundaries_advisory=LAG_BUCKETS)
    for seconds in lag_seconds:
        lag.record(max(seconds, 0.0))  # clocks of Event Hub and the worker may disagree slightly


def record_stream_status(status: StreamStatus, *, meter_provider: MeterProvider) -> None:
    """Record how far APIM's LLM logs lag behind the streamed requests (the snapshot timer's run)."""
    meter = meter_provider.get_meter(METER_NAME)
    meter.create_gauge("chargeback.llm_logs.pending_streams", "{request}",
                       "Streamed requests of the last 24 h waiting for LLM-log usage").set(status.pending)
    if status.last_record is not None:
        meter.create_gauge("chargeback.llm_logs.record_age", "s", "Age of the newest stored LLM-log record").set(
            max((status.now - status.last_record).total_seconds(), 0.0))
    meter.create_gauge("chargeback.llm_logs.stale", "1",
                       "Streams came and no LLM-log record did for the stale window").set(1 if status.stale else 0)


def record_reconciliation(reconciliation: Reconciliation, *, meter_provider: MeterProvider) -> None:
    """Record the daily Azure reconciliation: deployment-days over the tolerance (alert on it) and
    the requests Azure counted that the ledger did not (lost events, missing LLM logs, traffic
    around APIM)."""
    meter = meter_provider.get_meter(METER_NAME)
    gaps = reconciliation.gaps
    meter.create_gauge("chargeback.reconciliation.gap_days", "{deployment-day}",
                       "Deployment-days whose gap with Azure Monitor exceeds the tolerance").set(len(gaps))
    meter.create_gauge("chargeback.reconciliation.unmetered_requests", "{request}",
                       "Requests Azure Monitor counted and the ledger did not, on those days").set(
        sum(max(row.gaps[0], 0) for row in gaps))
