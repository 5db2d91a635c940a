"""`chargeback replay`: re-drive Capture files, dead letters or JSON-lines files through ingest,
or show what that would change (--dry-run)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from pipeline.bootstrap import has_embedded_ledger_data, open_ledger, settings_reference
from pipeline.cli_support import console, pipeline, user_errors
from pipeline.presentation import money
from pipeline.replay import DryRun, Source, SourceCounts, dry_run, open_sources, replay
from pipeline.settings import Settings
from pipeline.sources import SourceError, TimeRange
from pipeline.stages.ingest import IngestResult

SHOWN_IDS = 5


@click.command("replay")
@click.argument("sources", nargs=-1, required=True)
@click.option("--from", "start", metavar="ISO8601",
              help="From this UTC time on (inclusive): Capture enqueued time, or when a dead letter was rejected.")
@click.option("--to", "end", metavar="ISO8601", help="Up to this UTC time (exclusive).")
@click.option("--partition", "partitions", multiple=True, metavar="ID",
              help="Only this Event Hub partition's Capture files (repeatable).")
@click.option("--dry-run", is_flag=True, help="Write nothing; show the events and the cost that would be added.")
@user_errors
def replay_command(sources: tuple[str, ...], start: str | None, end: str | None, partitions: tuple[str, ...],
                   dry_run: bool) -> None:
    """Re-drive events through ingest from SOURCES: `dead-letters` (after a fix), JSON-lines
    files (`-` for stdin), or Event Hubs Capture files under a folder or az://CONTAINER/PREFIX
    (the level above {Namespace}/{EventHub}/{PartitionId}/...). Events the ledger holds already
    count as duplicates: replaying twice changes nothing.

    Example: chargeback replay az://capture --from 2026-10-01 --to 2026-10-02 --partition 3
    """
    when = TimeRange(_moment("--from", start), _moment("--to", end))
    if when.start and when.end and when.start >= when.end:
        raise click.ClickException(f"--from {start} is not before --to {end}")
    settings = Settings.from_env()
    try:
        opened = open_sources(sources, settings, when, partitions)
        if dry_run:
            _dry_run(settings, opened)
        else:
            _replay(settings, opened)
    except SourceError as error:
        raise click.ClickException(str(error)) from None


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
    total = IngestResult()

    def done(source: Source, result: IngestResult) -> None:
        total.add(result)
        kept = " (still rejected: left in the dead-letter store)" if source.from_dead_letters and \
            result.dead_lettered else ""
        _say(f"{source.name}: {_counts(result.received, result.ingested, result.duplicates, result.dead_lettered)}"
             f"{kept}")
        for code, count in sorted(result.reasons.items()):
            _say(f"  dead letter: {code} x{count}")

    with pipeline(settings) as p:
        replay(sources, p, done=done)
    _say(f"total: {_counts(total.received, total.ingested, total.duplicates, total.dead_lettered)}")
    for alert in total.alerts:
        _say(f"  budget alert {alert.scope.value} {alert.key}: {alert.threshold}% reached in {alert.month}")
    if total.dead_letter_objects:
        _say(f"  {len(total.dead_letter_objects)} new dead-letter file(s) under "
             f"{total.dead_letter_objects[-1].rsplit('/', 2)[0]}")


def _dry_run(settings: Settings, sources: list[Source]) -> None:
    reference = settings_reference(settings)
    # An embedded ledger that does not exist yet is not created: every event would be new.
    ledger = open_ledger(settings) if has_embedded_ledger_data(settings) else None
    try:
        plan = dry_run(sources, ledger, reference)
    finally:
        if ledger is not None:
            ledger.close()
    show_dry_run(plan)


def show_dry_run(plan: DryRun) -> None:
    _say("dry run: nothing written")
    for counts in [*plan.sources, plan.total]:
        _say(f"{counts.source}: {_would(counts)}")
        for code, count in sorted(counts.reasons.items()):
            _say(f"  dead letter: {code} x{count}")
    if not plan.new_ids:
        _say("would add no events")
        return
    more = ", ..." if len(plan.new_ids) > SHOWN_IDS else ""
    _say(f"would add {len(plan.new_ids):,} event(s): {', '.join(plan.new_ids[:SHOWN_IDS])}{more}")
    if not plan.costs:
        _say("cost delta: none (nothing that would be added is priced)")
    else:
        _say("cost delta by cost center and month:")
        for (cost_center, month, currency), delta in sorted(plan.costs.items()):
            _say(f"  {cost_center} {month}: +{money(delta.cost, currency)} over {delta.requests:,} request(s)")
    if plan.unpriced:
        _say("unpriced, not in the cost delta:")
        for reason, unpriced in sorted(plan.unpriced.items()):
            _say(f"  {reason}: {unpriced.requests:,} request(s), e.g. {unpriced.example}")


def _counts(received: int, new: int, duplicates: int, dead_lettered: int) -> str:
    return f"received {received:,}: ingested {new:,}, duplicates {duplicates:,}, dead-lettered {dead_lettered:,}"


def _would(counts: SourceCounts) -> str:
    return (f"received {counts.received:,}: would ingest {counts.new:,}, duplicates {counts.duplicates:,}, "
            f"would dead-letter {counts.dead_lettered:,}")


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)

