"""`chargeback replay`: re-drive Capture files, dead letters or JSON-lines files through ingest,
or show what that would change (--dry-run)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pipeline.domain.periods import TimeRange
from pipeline.entrypoints.cli.options import notices, pipeline_of, say, user_errors
from pipeline.entrypoints.cli.progress import batch_progress
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.stages.replay import DryRun, Source, SourceCounts

SHOWN_IDS = 5


@click.command("replay", short_help="Re-drive events through ingest from Capture files, dead letters or JSON lines.")
@click.argument("sources", nargs=-1, required=True)
@click.option("--from", "start", metavar="ISO8601",
              help="From this UTC time on (inclusive): Capture enqueued time, or when a dead letter was rejected.")
@click.option("--to", "end", metavar="ISO8601", help="Up to this UTC time (exclusive).")
@click.option("--partition", "partitions", multiple=True, metavar="ID",
              help="Only this Event Hub partition's Capture files or events (repeatable).")
@click.option("--consumer-group", default="chargeback-replay", show_default=True, metavar="GROUP",
              help="eventhub:// sources: the consumer group to read through (no checkpoints are written).")
@click.option("--dry-run", is_flag=True, help="Write nothing; show the events and the cost that would be added.")
@user_errors
def replay_command(sources: tuple[str, ...], start: str | None, end: str | None, partitions: tuple[str, ...],
                   consumer_group: str, dry_run: bool) -> None:
    """Re-drive events through ingest from SOURCES: `dead-letters` (after a fix), JSON-lines
    files (`-` for stdin), or Event Hubs Capture files under a folder or az://CONTAINER/PREFIX
    (the level above {Namespace}/{EventHub}/{PartitionId}/...), or the events an Event Hub still
    retains (eventhub://NAMESPACE/HUB, by enqueued time, until --to or caught up). Events the ledger holds already
    count as duplicates: replaying twice changes nothing.

    Example: chargeback replay az://capture --from 2026-10-01 --to 2026-10-02 --partition 3
    """
    from pipeline.app import open_sources

    when = TimeRange(_moment("--from", start), _moment("--to", end))
    if when.start and when.end and when.start >= when.end:
        raise click.ClickException(f"--from {start} is not before --to {end}")
    settings = Settings.from_env()
    opened = open_sources(sources, settings, when, partitions, consumer_group)
    if dry_run:
        _dry_run(settings, opened)
    else:
        _replay(settings, opened)


def _moment(option: str, value: str | None) -> datetime | None:
    """ISO 8601 date or time; without an offset it is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(f"{option} {value!r}: expected an ISO 8601 date or time, e.g. 2026-10-01 or "
                                   "2026-10-01T12:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _replay(settings: Settings, sources: list[Source]) -> None:
    from pipeline.stages.ingest import IngestResult
    from pipeline.stages.replay import replay

    total = IngestResult()

    def done(source: Source, result: IngestResult) -> None:
        total.add(result)
        kept = " (still rejected: left in the dead-letter store)" if source.from_dead_letters and \
            result.dead_lettered else ""
        say(f"{source.name}: {_counts(result.received, result.ingested, result.duplicates, result.dead_lettered)}"
             f"{kept}")
        for code, count in sorted(result.reasons.items()):
            say(f"  dead letter: {code} x{count}")
        if source.note and not result.received:
            say(f"  note: {source.note}")

    with pipeline_of(settings) as p, batch_progress(notices) as advance:
        replay(sources, p.ledger, p.counters, p.dead_letters, p.pricer, done=done, ahead=True,
               progress=lambda source: advance(source.name))
    say(f"total: {_counts(total.received, total.ingested, total.duplicates, total.dead_lettered)}")
    for alert in total.alerts:
        say(f"  budget alert {alert.scope.value} {alert.key}: {alert.threshold}% reached in {alert.month}")
    if total.dead_letter_objects:
        say(f"  {len(total.dead_letter_objects)} new dead-letter file(s) under "
             f"{total.dead_letter_objects[-1].rsplit('/', 2)[0]}")


def _dry_run(settings: Settings, sources: list[Source]) -> None:
    from pipeline.app import ledger_exists, open_ledger, settings_reference
    from pipeline.stages.replay import dry_run

    reference = settings_reference(settings)
    # An embedded ledger that does not exist yet is not created: every event would be new.
    ledger = open_ledger(settings) if ledger_exists(settings) else None
    try:
        plan = dry_run(sources, ledger, reference)
    finally:
        if ledger is not None:
            ledger.close()
    show_dry_run(plan, sources)


def show_dry_run(plan: DryRun, sources: list[Source]) -> None:
    from pipeline.entrypoints.cli.output import money

    say("dry run: nothing written")
    for counts, note in zip([*plan.sources, plan.total], [*(source.note for source in sources), None], strict=True):
        say(f"{counts.source}: {_would(counts)}")
        for code, count in sorted(counts.reasons.items()):
            say(f"  dead letter: {code} x{count}")
        if note and not counts.received:
            say(f"  note: {note}")
    if not plan.new_ids:
        say("would add no events")
        return
    more = ", ..." if len(plan.new_ids) > SHOWN_IDS else ""
    say(f"would add {len(plan.new_ids):,} event(s): {', '.join(plan.new_ids[:SHOWN_IDS])}{more}")
    if not plan.costs:
        say("cost delta: none (nothing that would be added is priced)")
    else:
        say("cost delta by cost center and month:")
        for (cost_center, month, currency), delta in sorted(plan.costs.items()):
            say(f"  {cost_center} {month}: +{money(delta.cost, currency)} over {delta.requests:,} request(s)")
    if plan.unpriced:
        say("unpriced, not in the cost delta:")
        for reason, unpriced in sorted(plan.unpriced.items()):
            say(f"  {reason}: {unpriced.requests:,} request(s), e.g. {unpriced.example}")


def _counts(received: int, new: int, duplicates: int, dead_lettered: int) -> str:
    return f"received {received:,}: ingested {new:,}, duplicates {duplicates:,}, dead-lettered {dead_lettered:,}"


def _would(counts: SourceCounts) -> str:
    return (f"received {counts.received:,}: would ingest {counts.new:,}, duplicates {counts.duplicates:,}, "
            f"would dead-letter {counts.dead_lettered:,}")
