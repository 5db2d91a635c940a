"""The Arrow schema of the `usage` snapshots: one row per ledger event, snake_case columns.

The `date` column (UTC event date) is the Hive partition (`usage/date=YYYY-MM-DD/`), so it is
not stored inside the files; DuckDB, pyarrow and pandas add it back when reading the folder.
"""

from __future__ import annotations

import pyarrow as pa

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
        pa.field("schema_version", pa.int8(), nullable=False),
        pa.field("ledger_seq", pa.int64(), nullable=False),
        pa.field("ingested_at", TIMESTAMP, nullable=False),
    ],
    metadata={"chargeback.table": "usage", "chargeback.schema_version": "1"},
)
