"""The Arrow schema of the `usage` snapshots (one row per ledger event, snake_case columns) and
the one mapping between events and its rows, which every ledger and the snapshots share.

The `date` column (UTC event date) is the Hive partition (`usage/date=YYYY-MM-DD/`), so it is
not stored inside the files; DuckDB, pyarrow and pandas add it back when reading the folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from pipeline.domain.costing import GATEWAY_TIMEOUT_TAG
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
        # Added to v1 (optional on the wire; files written before hold none, read as null).
        pa.field("service_tier", pa.string()),
        pa.field("service_tier_source", pa.string()),
        pa.field("spillover", pa.bool_()),
        pa.field("audio_prompt_tokens", pa.int64()),  # null with no usage, like the other token counts
        pa.field("audio_completion_tokens", pa.int64()),
        # Whether the tags say the gateway timed out (costing.GATEWAY_TIMEOUT_TAG), so that the
        # usage state is read without the `tags` MAP column (a quarter of a report's scan when
        # many events carry tags). Files written before it hold none: the warehouse reads their tags.
        pa.field("gateway_timeout", pa.bool_()),
    ],
    metadata={"chargeback.table": "usage", "chargeback.schema_version": "1"},
)


_TIMESTAMP = USAGE_SCHEMA.field("timestamp").type
_STRING = pa.string()
_INT64 = pa.int64()
_TIMEOUT_TAG, _TIMEOUT_VALUE = GATEWAY_TIMEOUT_TAG


def events_batch(events: Sequence[UsageEvent], ingested_at: datetime | Sequence[datetime],
                 ledger_seq: Sequence[int | None] | None = None) -> pa.RecordBatch:
    """The events in USAGE_SCHEMA, built column by column from the structs (one list per column:
    plain attribute reads, then one conversion in Arrow). `ingested_at`: one moment for all, or
    one per event; `ledger_seq`: the embedded ledger's numbers (None: null, as in Cosmos DB)."""
    usages = [event.usage for event in events]
    origins = [event.origin for event in events]
    tags = _tags(events)
    columns = {
        "event_id": pa.array([event.event_id for event in events], _STRING),
        "timestamp": pa.array([event.timestamp for event in events], _TIMESTAMP),
        "subscription_id": pa.array([event.subscription_id for event in events], _STRING),
        "product_id": pa.array([event.product_id for event in events], _STRING),
        "api_id": pa.array([event.api_id for event in events], _STRING),
        "operation_id": pa.array([event.operation_id for event in events], _STRING),
        "caller_app_id": pa.array([event.caller_app_id for event in events], _STRING),
        "caller_tenant_id": pa.array([event.caller_tenant_id for event in events], _STRING),
        "caller_object_id": pa.array([event.caller_object_id for event in events], _STRING),
        "cost_center": pa.array([event.cost_center for event in events], _STRING),
        "deployment": pa.array([event.deployment for event in events], _STRING),
        "model": pa.array([event.model for event in events], _STRING),
        "region": pa.array([event.region for event in events], _STRING),
        "stream": pa.array([event.stream for event in events], pa.bool_()),
        "status_code": pa.array([event.status_code for event in events], pa.int16()),
        "duration_ms": pa.array([event.duration_ms for event in events], _INT64),
        "usage_source": pa.array([event.usage_source for event in events], _STRING),
        "prompt_tokens": pa.array([None if u is None else u.prompt_tokens for u in usages], _INT64),
        "completion_tokens": pa.array([None if u is None else u.completion_tokens for u in usages], _INT64),
        "total_tokens": pa.array([None if u is None else u.total_tokens for u in usages], _INT64),
        "cached_tokens": pa.array([None if u is None else u.cached_tokens for u in usages], _INT64),
        "reasoning_tokens": pa.array([None if u is None else u.reasoning_tokens for u in usages], _INT64),
        "tags": tags,
        "extra": pa.array([event.extra for event in events], _STRING),
        "source": pa.array([None if o is None else o.source for o in origins], _STRING),
        "source_position": pa.array([None if o is None else o.position for o in origins], _STRING),
        "eventhub_partition": pa.array([None if o is None else o.partition for o in origins], _STRING),
        "eventhub_sequence_number": pa.array([None if o is None else o.sequence_number for o in origins], _INT64),
        "eventhub_offset": pa.array([None if o is None else o.offset for o in origins], _STRING),
        "eventhub_enqueued_time": pa.array([None if o is None else o.enqueued_time for o in origins], _TIMESTAMP),
        "schema_version": pa.array([event.schema_version for event in events], pa.int8()),
        "ledger_seq": pa.array(ledger_seq if ledger_seq is not None else [None] * len(events), _INT64),
        "service_tier": pa.array([event.service_tier for event in events], _STRING),
        "service_tier_source": pa.array([event.service_tier_source for event in events], _STRING),
        "spillover": pa.array([event.spillover for event in events], pa.bool_()),
        "audio_prompt_tokens": pa.array([None if u is None else u.audio_prompt_tokens for u in usages], _INT64),
        "audio_completion_tokens": pa.array([None if u is None else u.audio_completion_tokens for u in usages],
                                            _INT64),
        "gateway_timeout": gateway_timeouts(tags),
        "ingested_at": (pa.repeat(pa.scalar(ingested_at, _TIMESTAMP), len(events)) if isinstance(ingested_at, datetime)
                        else pa.array(ingested_at, _TIMESTAMP)),
    }
    return pa.RecordBatch.from_arrays([columns[name] for name in USAGE_SCHEMA.names], schema=USAGE_SCHEMA)


def _tags(events: Sequence[UsageEvent]) -> pa.Array:
    offsets, missing = [0], []
    keys: list[str] = []
    values: list[str] = []
    for event in events:
        tags = event.tags
        if tags is not None:
            keys.extend(tags)
            values.extend(tags.values())
        offsets.append(len(keys))
        missing.append(tags is None)
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.string()),
                                   pa.array(values, pa.string()), type=USAGE_SCHEMA.field("tags").type,
                                   mask=pa.array(missing, pa.bool_()))

def events_table(events: Sequence[UsageEvent], ingested_at: datetime | Sequence[datetime],
                 ledger_seq: Sequence[int | None] | None = None) -> pa.Table:
    """The events as a table in USAGE_SCHEMA (see `events_batch`)."""
    return pa.Table.from_batches([events_batch(events, ingested_at, ledger_seq)], USAGE_SCHEMA)


_EVENT_COLUMNS = (
    "schema_version", "event_id", "timestamp", "subscription_id", "deployment", "stream", "status_code", "duration_ms",
    "usage_source", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
    "audio_prompt_tokens", "audio_completion_tokens", "product_id", "api_id", "operation_id", "caller_app_id",
    "caller_tenant_id", "caller_object_id", "cost_center", "model", "region", "tags", "extra", "service_tier",
    "service_tier_source", "spillover", "source", "source_position", "eventhub_partition",
    "eventhub_sequence_number", "eventhub_offset", "eventhub_enqueued_time")


def events_from_table(table: pa.Table) -> list[UsageEvent]:
    """The events of a USAGE_SCHEMA table (the inverse of `events_table`, origin included); a
    column that an earlier schema did not have reads as null. Column by column, then zipped: a
    dictionary per row (`to_pylist`) cost three times as much."""
    present = set(table.column_names)
    columns = [table.column(name).to_pylist() if name in present else [None] * table.num_rows
               for name in _EVENT_COLUMNS]
    events = []
    for (schema_version, event_id, timestamp, subscription_id, deployment, stream, status_code, duration_ms,
         usage_source, prompt, completion, total, cached, reasoning, audio_prompt, audio_completion, product_id,
         api_id, operation_id, caller_app_id, caller_tenant_id, caller_object_id, cost_center, model, region, tags,
         extra, service_tier, service_tier_source, spillover, source, source_position, partition, sequence_number,
         offset, enqueued_time) in zip(*columns, strict=True):
        usage = None if prompt is None else Usage(prompt, completion, total, cached or 0, reasoning or 0,
                                                  audio_prompt or 0, audio_completion or 0)
        origin = None if source is None else Origin(source, source_position or "", partition, sequence_number,
                                                    offset, enqueued_time)
        events.append(UsageEvent(
            schema_version=schema_version, event_id=event_id, timestamp=timestamp, subscription_id=subscription_id,
            deployment=deployment, stream=stream, status_code=status_code, duration_ms=duration_ms,
            usage_source=usage_source, usage=usage, product_id=product_id, api_id=api_id,
            operation_id=operation_id, caller_app_id=caller_app_id, caller_tenant_id=caller_tenant_id,
            caller_object_id=caller_object_id, cost_center=cost_center, model=model, region=region,
            tags=None if tags is None else dict(tags), extra=extra, service_tier=service_tier,
            service_tier_source=service_tier_source, spillover=spillover, origin=origin))
    return events


def conformed(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch written with an earlier USAGE_SCHEMA in this one: the columns added since are
    null (`gateway_timeout` is made from the tags), and the columns in this schema's order (a batch
    already in it is returned as it is)."""
    if batch.schema.equals(USAGE_SCHEMA):
        return batch
    present = set(batch.schema.names)
    columns = [batch.column(f.name) if f.name in present else pa.nulls(batch.num_rows, f.type) for f in USAGE_SCHEMA]
    if "gateway_timeout" not in present:  # derived: made from the batch's tags, never left null
        columns[USAGE_SCHEMA.get_field_index("gateway_timeout")] = gateway_timeouts(batch.column("tags"))
    return pa.RecordBatch.from_arrays(columns, schema=USAGE_SCHEMA)


def gateway_timeouts(tags: pa.Array) -> pa.Array:
    """`gateway_timeout` of rows with these tags (false for rows without tags)."""
    import pyarrow.compute as pc  # here: a report reading stored batches of this schema need not load it

    found = pc.equal(pc.map_lookup(tags, _TIMEOUT_TAG, "first"), pa.scalar(_TIMEOUT_VALUE))
    return pc.fill_null(found, False)
