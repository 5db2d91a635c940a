"""`chargeback snapshot`: the ledger's new events into Parquet snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.entrypoints.cli.options import console, pipeline_of, user_errors
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.ports import ObjectStore
    from pipeline.stages.compaction import CompactionResult
    from pipeline.stages.day_rollups import DayRollupResult
    from pipeline.stages.llm_compaction import LlmCompactionResult


@click.command("snapshot")
@click.option("--wait", is_flag=True,
              help="Also wait for the events the ledger holds but cannot hand over yet (Cosmos DB's settle "
                   "window), and take them.")
@click.option("--rollups", "backfill", is_flag=True,
              help="Also roll up the files committed without a rollup of this version (snapshots written "
                   "before rollups) or with a damaged one, so that reports of their days sum rollups too (at most "
                   "10,000 files a run), compact every settled day of many small files first, and give each settled "
                   "day one rollup of all its files (a day of 15-minute snapshots has 96).")
@user_errors
def snapshot_command(wait: bool, backfill: bool) -> None:
    """Write new ledger events to Parquet snapshots (usage/date=YYYY-MM-DD/*.parquet).

    Each file is written with its rollup (rollups/v1/date=YYYY-MM-DD/*.parquet), which reports
    sum instead of its events. Each run then rewrites the files of each of the last 7 settled days
    (older than the 24-hour usage window) that has 10 small ones or more, and of the oldest such
    day before them, as one file (a day of 15-minute snapshots has 96; the files replaced are
    deleted 7 days later), and sums the rollups of each of the last 7 settled days that has
    several into one, which reports read instead, as the Functions timer does; --rollups does
    every settled day, and rolls up the files written without a rollup, or whose rollup is
    damaged. The LLM-log usage files of those days (one per host batch) are compacted the same
    way.

    A Cosmos DB ledger hands over an event once it is older than its settle window
    (CHARGEBACK_COSMOS_SETTLE_SECONDS, default 120): the snapshot says how many events wait and
    until when; with --wait it waits for them and takes them too.

    Example: chargeback snapshot --wait
    """
    import time
    from datetime import UTC, datetime

    from pipeline.entrypoints.cli.output import show_snapshot
    from pipeline.stages.snapshot import snapshot

    settings = Settings.from_env()
    with pipeline_of(settings) as p:
        result = snapshot(p.ledger, p.snapshots)
        show_snapshot(console, result)
        until = result.pending.until
        if wait and result.pending.events and until is not None:
            delay = max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.0
            console.print(f"waiting {delay:,.0f} s for {result.pending.events:,} event(s) to settle", markup=False)
            time.sleep(delay)
            show_snapshot(console, snapshot(p.ledger, p.snapshots))
        if backfill:
            from pipeline.stages.backfill import backfill_rollups
            from pipeline.stages.compaction import compact_days
            from pipeline.stages.day_rollups import roll_up_days, settled_before

            # Compaction first: the files it replaces need no rollup of their own any more.
            compacted = compact_days(p.snapshots, settled_before())
            console.print(_compacted(compacted) or "compaction: no settled day has many small files", markup=False)
            done = backfill_rollups(p.snapshots, check_present=True)
            said = [f"{done.files:,} earlier file(s) rolled up, committed as manifest {done.manifest}"
                    if done.files else "no file rolled up" if done.left or done.unrolled
                    else "every committed file has one"]
            if done.damaged:
                said.append(f"{done.damaged:,} of them had a damaged rollup, written again")
            if done.left:
                said.append(f"{done.left:,} more need one: run it again")
            if done.unrolled:
                said.append(f"{done.unrolled:,} file(s) whose sums pass 64 bits stay summed from their events")
            console.print(f"rollups: {'; '.join(said)}", markup=False)
            days = roll_up_days(p.snapshots, settled_before())
            console.print(_days_summed(days) if days.days else "days: every settled day has one rollup",
                          markup=False)
        else:
            _compact_recent_days(p.snapshots)
            _sum_recent_days(p.snapshots)
        _compact_llm_usage(settings, every_day=backfill)


def _compact_llm_usage(settings: Settings, every_day: bool) -> None:
    """The LLM-log usage area's settled days of many small files compacted (every settled day,
    or the last week's and the oldest before them); said only when something was done."""
    from pipeline.app import open_store
    from pipeline.lake.areas import LLM_USAGE
    from pipeline.stages.day_rollups import settled_before
    from pipeline.stages.llm_compaction import compact_llm_days, compact_recent_llm_days

    store = open_store(settings, LLM_USAGE)
    said = _compaction_line("llm usage", compact_llm_days(store, settled_before()) if every_day
                            else compact_recent_llm_days(store))
    if said:
        console.print(said, markup=False)


def _compacted(done: CompactionResult) -> str | None:
    return _compaction_line("compaction", done, f" ({done.rows:,} events), committed as manifest {done.manifest}")


def _compaction_line(area: str, done: CompactionResult | LlmCompactionResult, detail: str = "") -> str | None:
    """What a compaction did, in one line; None when it did nothing."""
    from pipeline.stages.compaction import RETAIN

    said = []
    if done.days:
        said.append(f"{done.days:,} settled day(s): {done.replaced:,} file(s) rewritten as {done.written:,}{detail}")
    if done.unreadable:
        said.append(f"left as they are, a file of theirs unreadable: {', '.join(done.unreadable)}")
    if done.deleted:
        said.append(f"{done.deleted:,} file(s) replaced over {RETAIN.days} days ago deleted")
    return f"{area}: {'; '.join(said)}" if said else None


def _compact_recent_days(store: ObjectStore) -> None:
    """The last settled days of many small files compacted, as the snapshot timer does after
    each run. Said only when a day was compacted (or could not be), or replaced files deleted."""
    from pipeline.stages.compaction import compact_recent_days
    from pipeline.stages.snapshot import SnapshotConflict

    try:
        done = compact_recent_days(store)
    except SnapshotConflict:
        console.print("compaction: a snapshot committed first; the next run compacts the settled days", markup=False)
        return
    said = _compacted(done)
    if said:
        console.print(said, markup=False)


def _days_summed(days: DayRollupResult) -> str:
    return (f"days: {days.days:,} settled day(s) given one rollup of {days.files:,} file(s) "
            f"({days.rollups:,} rollups read), committed as manifest {days.manifest}")


def _sum_recent_days(store: ObjectStore) -> None:
    """The last settled days' rollups summed, as the snapshot timer does after each run: a
    snapshot run on a schedule (every 15 minutes, say) leaves a file a day at every run. Said only
    when a day was summed; a snapshot committed meanwhile leaves it to the next run."""
    from pipeline.stages.day_rollups import roll_up_recent_days
    from pipeline.stages.snapshot import SnapshotConflict

    try:
        days = roll_up_recent_days(store)
    except SnapshotConflict:
        console.print("days: a snapshot committed first; the next run sums the settled days", markup=False)
        return
    if days.days:
        console.print(_days_summed(days), markup=False)
