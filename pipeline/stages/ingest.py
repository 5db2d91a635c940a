"""Ingest: raw events -> dead letters, ledger, counters. The same path serves the CLI, the
Functions Event Hub trigger and replays.

Order per batch: dead letters first, then the ledger (the durable record), then the counters.
Every write is idempotent by eventId, so a batch redelivered after a crash anywhere in between
ends with the same state as one delivered once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.domain.live import BudgetAlert, LivePricer
from pipeline.ports import Counters, DeadLetters, Ledger

DEFAULT_BATCH = 5_000


@dataclass(slots=True)
class IngestResult:
    """What ingest did. received == ingested + duplicates + dead_lettered, always."""

    received: int = 0
    ingested: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    counted: int = 0
    alerts: list[BudgetAlert] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    dead_letter_objects: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def add(self, other: IngestResult) -> None:
        self.received += other.received
        self.ingested += other.ingested
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.counted += other.counted
        self.alerts.extend(other.alerts)
        self.reasons.update(other.reasons)
        self.dead_letter_objects.extend(other.dead_letter_objects)
        self.seconds += other.seconds


def ingest_batch(messages: list[RawMessage], ledger: Ledger, counters: Counters, dead_letters: DeadLetters,
                 pricer: LivePricer, now: datetime | None = None) -> IngestResult:
    """Ingest one batch (one Event Hub trigger invocation, or one slice of a file)."""
    started = time.perf_counter()
    decoded = decode_batch(messages, now)
    result = IngestResult(received=len(messages), dead_lettered=len(decoded.rejections))
    result.reasons.update(rejection.code for rejection in decoded.rejections)
    where = dead_letters.put(decoded.rejections)
    if where:
        result.dead_letter_objects.append(where)
    if decoded.events:
        appended = ledger.append(decoded.events)
        result.ingested, result.duplicates = appended.new, appended.duplicates
        counted = counters.add(decoded.events, pricer.charges(decoded.events))
        result.counted, result.alerts = counted.new, counted.alerts
    result.seconds = time.perf_counter() - started
    return result


def ingest(messages: Iterable[RawMessage], ledger: Ledger, counters: Counters, dead_letters: DeadLetters,
           pricer: LivePricer, batch_size: int = DEFAULT_BATCH,
           progress: Callable[[IngestResult], None] | None = None, now: datetime | None = None) -> IngestResult:
    """Ingest a stream of messages in batches; `progress` is called after each batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    total = IngestResult()
    for batch in _batches(iter(messages), batch_size):
        result = ingest_batch(batch, ledger, counters, dead_letters, pricer, now)
        total.add(result)
        if progress:
            progress(result)
    return total


def _batches(messages: Iterator[RawMessage], size: int) -> Iterator[list[RawMessage]]:
    while batch := list(islice(messages, size)):
        yield batch
