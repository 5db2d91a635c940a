"""Ingest: raw events -> dead letters, ledger, counters. The same path serves the CLI, the
Functions Event Hub trigger and replays.

Order per batch: dead letters first, then the ledger (the durable record), then the counters.
Every write is idempotent by eventId, so a batch redelivered after a crash anywhere in between
ends with the same state as one delivered once.

Failures: a dead-letter or ledger error propagates (the batch is not acknowledged and comes
again). A counters OUTAGE (CountersUnavailable: the adapter's store is unreachable, timed out,
read-only or locked) does not: the ledger already holds the batch, so the batch is acknowledged
with `counters_degraded` set, a warning is logged, and the live counters are behind the ledger
until `reconcile --apply` recounts the month (docs/guarantees.md). Any other counters error (a
bug, a bad event) still propagates.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import islice

from pipeline.domain.decode import RawMessage
from pipeline.domain.live import BudgetAlert, LivePricer
from pipeline.lake.event_columns import ColumnarCounters, ColumnarLedger
from pipeline.ports import (
    AppendResult,
    BatchedMessages,
    Counters,
    CountersUnavailable,
    CountResult,
    DeadLetters,
    Ledger,
)
from pipeline.stages.decode_ahead import Prepared, prepare_batch, prepared_batches

# Events per batch of files and replays: one ledger and one counters transaction each. The
# eventId indexes are B-trees over random ids, so a commit writes about one page per id it added
# until a batch covers the index; 25,000 (not 5,000) cuts a 1M-event file from 47 s to 27 s and
# keeps the process near 450 MiB (docs/benchmarks.md, issue 19).
DEFAULT_BATCH = 25_000
log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestResult:
    """What ingest did. received == ingested + duplicates + dead_lettered, always."""

    received: int = 0
    ingested: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    counted: int = 0
    unpriced: int = 0  # decoded events whose live charge is unpriced (copies included): a metric
    alerts: list[BudgetAlert] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    dead_letter_objects: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # The ledger has the batch but the counters could not take it: run reconcile for the month.
    counters_degraded: bool = False
    counters_error: str | None = None  # the last counters outage, "ConnectionError: ..."
    uncounted: int = 0  # events of degraded batches (some may have been counted before the error)
    uncounted_months: set[str] = field(default_factory=set)  # their months, YYYY-MM: what to reconcile

    @property
    def events_per_second(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def add(self, other: IngestResult) -> None:
        self.received += other.received
        self.ingested += other.ingested
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.counted += other.counted
        self.unpriced += other.unpriced
        self.alerts.extend(other.alerts)
        self.reasons.update(other.reasons)
        self.dead_letter_objects.extend(other.dead_letter_objects)
        self.seconds += other.seconds
        self.counters_degraded |= other.counters_degraded
        self.counters_error = other.counters_error or self.counters_error
        self.uncounted += other.uncounted
        self.uncounted_months |= other.uncounted_months


def ingest_batch(messages: list[RawMessage], ledger: Ledger, counters: Counters, dead_letters: DeadLetters,
                 pricer: LivePricer, now: datetime | None = None, *,
                 check_duplicate_keys: bool = True) -> IngestResult:
    """Ingest one batch (one Event Hub trigger invocation, or one slice of a file).

    `check_duplicate_keys=False` only for a producer that cannot repeat a key: the APIM policy
    through the Event Hub trigger (pipeline.domain.decode). Files, stdin and replays keep it."""
    started = time.perf_counter()
    prepared = prepare_batch(messages, pricer, now, check_duplicate_keys=check_duplicate_keys,
                             columnar=takes_columns(ledger, counters))
    result = store_batch(prepared, ledger, counters, dead_letters)
    result.seconds = time.perf_counter() - started
    return result


def takes_columns(ledger: Ledger, counters: Counters) -> bool:
    """The embedded ledger and counters take a batch as Arrow columns (pipeline.lake.event_columns):
    built once, instead of Python objects turned into the ledger's rows and the counters' sums each."""
    return isinstance(ledger, ColumnarLedger) and isinstance(counters, ColumnarCounters)


def store_batch(prepared: Prepared, ledger: Ledger, counters: Counters, dead_letters: DeadLetters) -> IngestResult:
    """Write one decoded and priced batch: dead letters, ledger, counters."""
    started = time.perf_counter()
    decoded = prepared.decoded
    result = IngestResult(received=prepared.received, dead_lettered=len(decoded.rejections), unpriced=prepared.unpriced)
    result.reasons.update(rejection.code for rejection in decoded.rejections)
    where = dead_letters.put(decoded.rejections)
    if where:
        result.dead_letter_objects.append(where)
    columns = prepared.columns
    append: Callable[[], AppendResult]
    count: Callable[[], CountResult]
    if columns is None:
        copies = len(decoded.events)
        append, count = partial(ledger.append, decoded.events), partial(counters.add, decoded.events, prepared.charges)
    elif isinstance(ledger, ColumnarLedger) and isinstance(counters, ColumnarCounters):
        copies = columns.copies
        append, count = partial(ledger.append_columns, columns), partial(counters.add_columns, columns)
    else:
        raise TypeError("a columnar batch needs a ledger and counters that take columns (the embedded ones)")
    if copies:
        appended = append()
        result.ingested, result.duplicates = appended.new, appended.duplicates
        try:
            counted = count()
        except CountersUnavailable as error:  # the ledger has the batch: acknowledge it and reconcile later
            result.counters_degraded, result.uncounted = True, copies
            cause = error.__cause__ or error  # the driver's error, for ops
            result.counters_error = f"{type(cause).__name__}: {cause}"
            result.uncounted_months = ({f"{event.timestamp:%Y-%m}" for event in decoded.events} if columns is None
                                       else columns.months())
            log.warning("counters unavailable (%s): %d event(s) are in the ledger but not counted; once the "
                        "counters are back run `chargeback reconcile --apply --month M` for M in %s",
                        result.counters_error, copies, ", ".join(sorted(result.uncounted_months)))
        else:
            result.counted, result.alerts = counted.new, counted.alerts
    result.seconds = time.perf_counter() - started
    return result


def ingest(messages: Iterable[RawMessage], ledger: Ledger, counters: Counters, dead_letters: DeadLetters,
           pricer: LivePricer, batch_size: int = DEFAULT_BATCH,
           progress: Callable[[IngestResult], None] | None = None, now: datetime | None = None, *,
           check_duplicate_keys: bool = True, ahead: bool = False) -> IngestResult:
    """Ingest a stream of messages in batches; `progress` is called after each batch. `ahead`:
    decode and price the next batches in worker processes while this one writes (files and
    replays: pipeline.stages.decode_ahead); the result is the same."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    total = IngestResult()
    started = time.perf_counter()
    # A JSON-lines file is cut into runs of lines by where they are, Capture files into batches of
    # files: a process that decodes ahead is sent those, and reads the messages itself.
    units = messages.batches(batch_size) if isinstance(messages, BatchedMessages) else batches(messages, batch_size)
    for prepared in prepared_batches(units, pricer, now, check_duplicate_keys=check_duplicate_keys, ahead=ahead,
                                     columnar=takes_columns(ledger, counters)):
        result = store_batch(prepared, ledger, counters, dead_letters)
        total.add(result)
        if progress:
            progress(result)
    total.seconds = time.perf_counter() - started
    return total


def batches(messages: Iterable[RawMessage], size: int) -> Iterator[list[RawMessage]]:
    """The messages in lists of `size` (the last one shorter), read lazily."""
    stream = iter(messages)
    while batch := list(islice(stream, size)):
        yield batch
