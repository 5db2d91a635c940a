"""Replay: re-drive events from where they were kept (Event Hubs Capture files, the dead-letter
store after a fix, JSON-lines files) through the same `ingest` path as live traffic. Every write
is idempotent by eventId, so replaying what the ledger already holds changes nothing.

A dry run writes nothing: it decodes, asks the ledger which eventIds it holds already
(`Ledger.existing`) and prices the new events exactly as the report would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pipeline.domain.costing import Reference, Resolution, UsageKey, event_key
from pipeline.domain.decode import RawMessage, Rejection, decode_batch
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import LivePricer
from pipeline.domain.pricing import money_sum
from pipeline.ports import Counters, DeadLetters, Ledger
from pipeline.stages.ingest import DEFAULT_BATCH, IngestResult, batches, ingest


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # as the user named it
    messages: Iterable[RawMessage]  # read once
    from_dead_letters: bool = False  # its events still rejected are in the dead-letter store already
    # What to say when it yields no event, known when it was opened (no Capture file under it).
    note: str | None = None


class _AlreadyStored:
    """Dead letters for events replayed from the dead-letter store: those still rejected are
    there already, so they are counted but not copied again on every replay."""

    def put(self, rejections: Sequence[Rejection]) -> str | None:
        return None


def replay(sources: Iterable[Source], ledger: Ledger, counters: Counters, dead_letters: DeadLetters,
           pricer: LivePricer, *, batch_size: int = DEFAULT_BATCH, now: datetime | None = None,
           done: Callable[[Source, IngestResult], None] | None = None,
           progress: Callable[[Source], Callable[[IngestResult], None] | None] | None = None,
           ahead: bool = False) -> list[tuple[Source, IngestResult]]:
    """Ingest every source in turn (dead letters, ledger, counters, batch by batch); `done` is
    called after each source, and `progress(source)`'s callback after each of its batches.
    `ahead`: decode the next batches in worker processes (pipeline.stages.decode_ahead)."""
    results = []
    for source in sources:
        rejected = _AlreadyStored() if source.from_dead_letters else dead_letters
        result = ingest(source.messages, ledger, counters, rejected, pricer, batch_size=batch_size, now=now,
                        ahead=ahead, progress=progress(source) if progress else None)
        results.append((source, result))
        if done:
            done(source, result)
    return results


@dataclass(slots=True)
class SourceCounts:
    """What replaying one source would do. received == new + duplicates + dead_lettered."""

    source: str
    received: int = 0
    new: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Delta:
    requests: int = 0
    cost: Decimal = Decimal(0)  # exact


@dataclass(slots=True)
class Unpriced:
    requests: int
    example: str


@dataclass(slots=True)
class DryRun:
    sources: list[SourceCounts] = field(default_factory=list)
    new_ids: list[str] = field(default_factory=list)  # in the order they would be added
    costs: dict[tuple[str, str, str], Delta] = field(default_factory=dict)  # (cost center, month, currency)
    unpriced: dict[str, Unpriced] = field(default_factory=dict)  # by reason

    @property
    def total(self) -> SourceCounts:
        total = SourceCounts("total")
        for counts in self.sources:
            total.received += counts.received
            total.new += counts.new
            total.duplicates += counts.duplicates
            total.dead_lettered += counts.dead_lettered
            total.reasons.update(counts.reasons)
        return total


def dry_run(sources: Iterable[Source], ledger: Ledger | None, reference: Reference, *,
            batch_size: int = DEFAULT_BATCH, now: datetime | None = None) -> DryRun:
    """What replaying the sources would change, writing nothing. `ledger` None: an embedded
    ledger that does not exist yet (every event would be new)."""
    plan = DryRun()
    seen: set[str] = set()  # eventIds this run would add: a later copy is a duplicate
    resolved: dict[UsageKey, Resolution] = {}
    for source in sources:
        counts = SourceCounts(source.name)
        plan.sources.append(counts)
        for batch in batches(source.messages, batch_size):
            decoded = decode_batch(batch, now)
            counts.received += len(batch)
            counts.dead_lettered += len(decoded.rejections)
            counts.reasons.update(rejection.code for rejection in decoded.rejections)
            first: dict[str, UsageEvent] = {}
            for event in decoded.events:
                if event.event_id not in seen:
                    first.setdefault(event.event_id, event)
            held = ledger.existing(list(first)) if ledger is not None and first else set()
            added = [event for event_id, event in first.items() if event_id not in held]
            seen.update(first)
            counts.new += len(added)
            counts.duplicates += len(decoded.events) - len(added)
            for event in added:
                plan.new_ids.append(event.event_id)
                _price(plan, event, reference, resolved)
    return plan


def _price(plan: DryRun, event: UsageEvent, reference: Reference, resolved: dict[UsageKey, Resolution]) -> None:
    key = event_key(event)
    resolution = resolved.get(key)
    if resolution is None:
        resolution = resolved[key] = reference.resolve(key)
    price, usage = resolution.price, event.usage
    if resolution.provisioned and usage is not None:  # PTU usage adds no per-token cost
        delta = plan.costs.setdefault((resolution.cost_center, f"{event.timestamp:%Y-%m}", resolution.currency),
                                      Delta())
        delta.requests += 1
        return
    if price is None or usage is None or resolution.unpriced is not None:
        reason = resolution.unpriced.value if resolution.unpriced else "no-usage"
        entry = plan.unpriced.setdefault(reason, Unpriced(0, resolution.detail))
        entry.requests += 1
        return
    delta = plan.costs.setdefault((resolution.cost_center, f"{event.timestamp:%Y-%m}", price.currency), Delta())
    delta.requests += 1
    delta.cost = money_sum((delta.cost, price.cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens,
                                                   usage.audio_prompt_tokens, usage.audio_completion_tokens)))
