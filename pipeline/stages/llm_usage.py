"""Ingest APIM's LLM logs: envelopes -> usage records -> Parquet files in the store's
`llm-usage` area, read back (deduplicated) by the warehouse to fill streamed events' usage.

Each batch of envelopes becomes one Parquet file per UTC day of its records,
`date=YYYY-MM-DD/<hash>.parquet`, named by a SHA-256 of those records (sorted, so their order in
the batch does not matter) and created only if absent. So:
- a file is whole or absent (the store's writes are atomic) and is never rewritten;
- a redelivered batch writes nothing new (same records, same name);
- the same record in two files (a redelivery with other batch boundaries) is fine: readers
  deduplicate by join id (pipeline.lake.warehouse).
Only the fields of `LlmUsage` are written: no message text, no other property of a record.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pipeline.domain.decode import RawMessage
from pipeline.domain.llm_logs import LlmRejection, LlmUsage, parse_envelope
from pipeline.lake.llm_usage import batch_files, latest_record_time
from pipeline.ports import ObjectStore

if TYPE_CHECKING:
    from pipeline.lake.warehouse import Limits

STALE_AFTER = timedelta(hours=6)  # streams but no LLM-log record for this long: the logs stopped coming

DEFAULT_BATCH = 500  # envelopes per file batch from files (the Event Hub trigger: one host batch)


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


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """Whether APIM's LLM logs keep up with the streamed requests, as of `now`: the streamed
    requests of the last day still waiting for their usage (`pending`, the oldest since when),
    the streamed requests of the last `stale_after`, and the newest LLM-log record stored."""

    now: datetime
    stale_after: timedelta
    pending: int = 0
    oldest_pending: datetime | None = None
    recent_streams: int = 0
    last_record: datetime | None = None

    @property
    def stale(self) -> bool:
        """Streams came within `stale_after`, and no LLM-log record did."""
        cutoff = self.now - self.stale_after
        return self.recent_streams > 0 and (self.last_record is None or self.last_record < cutoff)


# The streamed events of the snapshots' last two days, against the LLM usage joined to them.
STREAMS_SQL = ("SELECT count(*) FILTER (WHERE usage_state = 'pending'), min(timestamp) FILTER (WHERE usage_state = "
               "'pending'), count(*) FILTER (WHERE usage_source = 'stream' AND timestamp > ?) FROM usage")


def stream_status(snapshots: ObjectStore, llm_usage: ObjectStore, now: datetime | None = None,
                  stale_after: timedelta = STALE_AFTER, limits: Limits | None = None) -> StreamStatus:
    """How many streamed requests wait for LLM-log usage, and how fresh the LLM logs are."""
    from pipeline.lake.warehouse import open_warehouse  # DuckDB: only for the commands that ask

    now = now or datetime.now(UTC)
    today = now.date()
    warehouse = open_warehouse(snapshots, None, (today - timedelta(days=1), today + timedelta(days=1)),
                               llm_usage=llm_usage, now=now, limits=limits)
    try:
        [(pending, oldest, recent)] = warehouse.connection.execute(STREAMS_SQL, [now - stale_after]).fetchall()
    finally:
        warehouse.connection.close()
    return StreamStatus(now, stale_after, int(pending), oldest.astimezone(UTC) if oldest is not None else None,
                        int(recent), latest_record_time(llm_usage))
