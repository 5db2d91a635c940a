"""The Arrow schema of the `usage` snapshots: one row per ledger event, snake_case columns.

The `date` column (UTC event date) is the Hive partition (`usage/date=YYYY-MM-DD/`), so it is
not stored inside the files; DuckDB, pyarrow and pandas add it back when reading the folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from pipeline.domain.events import Origin, Usage, UsageEvent

TIMESTAMP = pa.timestamp("us", tz="UTC")

USAGE_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("timestamp", TIMESTAMP, nullable=False),
        pa.field("subscription_id", pa.string(), nullable=False),
        pa.field("product_id", pa.string()),
        pa.field("api_id", pa.string()),
        pa.field("operation_id", pa.string()),
        pa.field("caller_app_id", pa.string()),
        pa.field("caller_tenant_id", pa.string()),
        pa.field("caller_object_id", pa.string()),
        pa.field("cost_center", pa.string()),
        pa.field("deployment", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("region", pa.string()),
        pa.field("stream", pa.bool_(), nullable=False),
        pa.field("status_code", pa.int16(), nullable=False),
        pa.field("duration_ms", pa.int64(), nullable=False),
        pa.field("usage_source", pa.string(), nullable=False),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("total_tokens", pa.int64()),
        pa.field("cached_tokens", pa.int64()),
        pa.field("reasoning_tokens", pa.int64()),
        pa.field("tags", pa.map_(pa.string(), pa.string())),
        pa.field("extra", pa.string()),
        # Where the event was received (pipeline.domain.events.Origin).
        pa.field("source", pa.string()),
        pa.field("source_position", pa.string()),
        pa.field("eventhub_partition", pa.string()),
        pa.field("eventhub_sequence_number", pa.int64()),
        pa.field("eventhub_offset", pa.string()),
        pa.field("eventhub_enqueued_time", TIMESTAMP),
        pa.field("schema_version", pa.int8(), nullable=False),
        pa.field("ledger_seq", pa.int64()),  # the embedded ledger's append order; null for Cosmos DB
        pa.field("ingested_at", TIMESTAMP, nullable=False),
    ],
    metadata={"chargeback.table": "usage", "chargeback.schema_version": "1"},
)


def events_table(events: Sequence[UsageEvent], ingested_at: Sequence[datetime],
                 ledger_seq: Sequence[int | None] | None = None) -> pa.Table:
    """Events as a table in USAGE_SCHEMA: the common path for ledgers that keep whole events."""
    columns: dict[str, list[object]] = {name: [] for name in USAGE_SCHEMA.names}
    for event, moment in zip(events, ingested_at, strict=True):
        usage, origin = event.usage, event.origin
        values = {
            "event_id": event.event_id, "timestamp": event.timestamp, "subscription_id": event.subscription_id,
            "product_id": event.product_id, "api_id": event.api_id, "operation_id": event.operation_id,
            "caller_app_id": event.caller_app_id, "caller_tenant_id": event.caller_tenant_id,
            "caller_object_id": event.caller_object_id, "cost_center": event.cost_center,
            "deployment": event.deployment, "model": event.model, "region": event.region, "stream": event.stream,
            "status_code": event.status_code, "duration_ms": event.duration_ms, "usage_source": event.usage_source,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "total_tokens": usage.total_tokens if usage else None,
            "cached_tokens": usage.cached_tokens if usage else None,
            "reasoning_tokens": usage.reasoning_tokens if usage else None,
            "tags": None if event.tags is None else list(event.tags.items()),
            "extra": event.extra,
            "source": origin.source if origin else None,
            "source_position": origin.position if origin else None,
            "eventhub_partition": origin.partition if origin else None,
            "eventhub_sequence_number": origin.sequence_number if origin else None,
            "eventhub_offset": origin.offset if origin else None,
            "eventhub_enqueued_time": origin.enqueued_time if origin else None,
            "schema_version": event.schema_version, "ledger_seq": None, "ingested_at": moment,
        }
        for name, value in values.items():
            columns[name].append(value)
    if ledger_seq is not None:
        columns["ledger_seq"] = list(ledger_seq)
    return pa.Table.from_pydict(columns, schema=USAGE_SCHEMA)


def events_from_table(table: pa.Table) -> list[UsageEvent]:
    """The events of a USAGE_SCHEMA table (the inverse of `events_table`, origin included)."""
    events = []
    for row in table.to_pylist():
        prompt = row["prompt_tokens"]
        usage = None if prompt is None else Usage(
            prompt, row["completion_tokens"], row["total_tokens"], row["cached_tokens"] or 0,
            row["reasoning_tokens"] or 0)
        origin = None if row["source"] is None else Origin(
            row["source"], row["source_position"] or "", row["eventhub_partition"],
            row["eventhub_sequence_number"], row["eventhub_offset"], row["eventhub_enqueued_time"])
        events.append(UsageEvent(
            schema_version=row["schema_version"], event_id=row["event_id"], timestamp=row["timestamp"],
            subscription_id=row["subscription_id"], deployment=row["deployment"], stream=row["stream"],
            status_code=row["status_code"], duration_ms=row["duration_ms"], usage_source=row["usage_source"],
            usage=usage, product_id=row["product_id"], api_id=row["api_id"], operation_id=row["operation_id"],
            caller_app_id=row["caller_app_id"], caller_tenant_id=row["caller_tenant_id"],
            caller_object_id=row["caller_object_id"], cost_center=row["cost_center"], model=row["model"],
            region=row["region"], tags=None if row["tags"] is None else dict(row["tags"]), extra=row["extra"],
            origin=origin))
    return events
