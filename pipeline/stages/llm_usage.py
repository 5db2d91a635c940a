"""Ingest APIM's LLM logs: envelopes -> usage records -> Parquet files in the store's
`llm-usage` area, read back (deduplicated) by the warehouse to fill streamed events' usage.

Each batch of envelopes becomes one Parquet file per UTC day of its records,
`date=YYYY-MM-DD/<hash>.parquet`, named by a SHA-256 of those records (sorted, so their order in
the batch does not matter) and created only if absent. So:
- a file is whole or absent (the store's writes are atomic) and is never rewritten;
- a redelivered batch writes nothing new (same records, same name);
- the same record in two files (a redelivery with other batch boundaries) is fine: readers
  deduplicate by join id (pipeline.warehouse).
Only the fields of `LlmUsage` are written: no message text, no other property of a record.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.domain.decode import RawMessage
from pipeline.domain.llm_logs import LlmRejection, LlmUsage, parse_envelope
from pipeline.ports import ObjectStore
from pipeline.usage_schema import TIMESTAMP

DEFAULT_BATCH = 500  # envelopes per file batch from files (the Event Hub trigger: one host batch)
LLM_USAGE_SCHEMA = pa.schema([
    pa.field("join_id", pa.string(), nullable=False), pa.field("time", TIMESTAMP, nullable=False),
    pa.field("prompt_tokens", pa.int64(), nullable=False), pa.field("completion_tokens", pa.int64(), nullable=False),
    pa.field("total_tokens", pa.int64(), nullable=False), pa.field("cached_tokens", pa.int64()),
    pa.field("deployment", pa.string()), pa.field("model", pa.string()), pa.field("operation", pa.string()),
    pa.field("is_stream", pa.bool_()), pa.field("region", pa.string()), pa.field("sequence_number", pa.int64()),
    pa.field("request_id", pa.string()),
], metadata={"chargeback.table": "llm_usage", "chargeback.schema_version": "1"})


@dataclass(slots=True)
class LlmIngestResult:
    """messages = envelopes read; records = kept + discarded + rejected records (rejected messages
    hold no records)."""

    messages: int = 0
    records: int = 0
    kept: int = 0
    discarded: Counter[str] = field(default_factory=Counter)
    # reason -> rejected records (messages, for not-json and not-envelope)
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[LlmRejection] = field(default_factory=list)  # the first 20 rejections
    files_written: int = 0
    files_present: int = 0  # already stored: a redelivered batch
    seconds: float = 0.0

    def add(self, other: LlmIngestResult) -> None:
        for name in ("messages", "records", "kept", "files_written", "files_present", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.discarded.update(other.discarded)
        self.rejected.update(other.rejected)
        self.examples.extend(other.examples[:max(0, 20 - len(self.examples))])


def ingest_llm_batch(messages: Iterable[RawMessage], store: ObjectStore) -> LlmIngestResult:
    """Parse a batch of envelopes and store its usage records (one create-if-absent file per day).
    Bad input never raises; a store failure does, so the caller can retry the whole batch."""
    started = time.perf_counter()
    result = LlmIngestResult()
    kept: list[LlmUsage] = []
    for message in messages:
        parsed = parse_envelope(message.body, f"{message.source} {message.position}")
        result.messages += 1
        result.records += parsed.records
        result.discarded.update(parsed.discarded)
        result.rejected.update(rejection.reason for rejection in parsed.rejected)
        result.examples.extend(parsed.rejected[:max(0, 20 - len(result.examples))])
        kept.extend(parsed.kept)
    result.kept = len(kept)
    for key, data in batch_files(kept).items():
        if store.put(key, data, overwrite=False):
            result.files_written += 1
        else:
            result.files_present += 1
    result.seconds = time.perf_counter() - started
    return result


def ingest_llm_logs(messages: Iterable[RawMessage], store: ObjectStore,
                    batch_size: int = DEFAULT_BATCH) -> LlmIngestResult:
    """`ingest_llm_batch` over batches of `batch_size` envelopes."""
    total = LlmIngestResult()
    batch: list[RawMessage] = []
    for message in messages:
        batch.append(message)
        if len(batch) >= batch_size:
            total.add(ingest_llm_batch(batch, store))
            batch = []
    if batch:
        total.add(ingest_llm_batch(batch, store))
    return total


def batch_files(records: Iterable[LlmUsage]) -> dict[str, bytes]:
    """{`date=YYYY-MM-DD/<sha256 of the day's records>.parquet`: Parquet bytes}."""
    by_day: dict[date, list[LlmUsage]] = defaultdict(list)
    for record in records:
        by_day[record.time.date()].append(record)
    files = {}
    for day, day_records in sorted(by_day.items()):
        encoded = sorted(msgspec.json.encode(record) for record in day_records)
        digest = hashlib.sha256(b"\n".join(encoded)).hexdigest()[:32]
        table = pa.Table.from_pylist([msgspec.structs.asdict(r) for r in day_records], schema=LLM_USAGE_SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        files[f"date={day.isoformat()}/{digest}.parquet"] = sink.getvalue()
    return files


def llm_usage_keys(store: ObjectStore, days: tuple[date, date] | None = None) -> list[str]:
    """The stored files, optionally of the days in [start - 1, end + 1) only: a request's log
    record and its event both carry the request's start, but two clocks may put them either side
    of midnight."""
    keys = []
    for key in store.list(""):
        if not key.endswith(".parquet"):
            continue
        try:
            day = date.fromisoformat(key.split("/", 1)[0].removeprefix("date="))
        except ValueError:
            continue
        if days is None or days[0] - timedelta(days=1) <= day < days[1] + timedelta(days=1):
            keys.append(key)
    return keys


def llm_log_messages(name: str) -> Iterator[RawMessage]:
    """The envelopes of a file (`-`: stdin): a whole-envelope file is one message, anything else is
    read as JSON lines, one envelope per line."""
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    source = "stdin" if name == "-" else name
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError:
        document = None
    if isinstance(document, dict):
        yield RawMessage(data, source, "whole file")
        return
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield RawMessage(line, source, f"line {number}")
