"""Day rollups: the rollups of a settled day's files summed into one object (pipeline.lake.rollups,
`DAY_ROLLUP_LAYOUT`), so that a report reads one rollup a day however often the snapshot ran.

The 15-minute snapshot timer writes a file (and its rollup) per day at every run: 96 a day, 2,976
a month, and a report of that month spent 1.4 s of its 1.8 s reading the rollups one small object
at a time (docs/benchmarks.md, "twenty-first pass"). A day is rolled up once it is settled (older
than the usage window: its rollups are final) and has two rollups or more: those of its files, and
the day's rollup made before when files came later (a replay). The sums are read from the rollups,
never from the events.

Nothing is rewritten: the day's rollup goes under a name of the files it sums
(`day_rollup_key`), and the next manifest names it for each of them (`Manifest.rollups`), as a
backfill does, so a report reads either every file's own rollup or the day's, never both. A day
whose sums pass 64 bits, or whose rollups cannot all be read, keeps its files' own rollups; a
day's rollup that cannot be read makes the report sum the events, as any rollup does.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pipeline.lake.manifests import (
    PublishedFile,
    PublishedRollup,
    published_files,
)
from pipeline.lake.rollups import DAY_ROLLUP_LAYOUT, RollupMaker, day_rollup_key, read_rollup
from pipeline.lake.snapshot_scans import rolled_up
from pipeline.lake.warehouse import USAGE_WINDOW
from pipeline.ports import ObjectStore
from pipeline.stages.backfill import commit_rollups


@dataclass(slots=True)
class DayRollupResult:
    days: int = 0  # days given one rollup
    files: int = 0  # the files those rollups sum
    rollups: int = 0  # the rollups read to make them
    manifest: int | None = None  # the manifest that committed them
    seconds: float = 0.0


# The settled days a scheduled run sums (the snapshot timer, a plain `chargeback snapshot`): the
# day that settled since the last run, and those a stopped schedule or a replay left behind.
# `chargeback snapshot --rollups` does every day.
RECENT_DAYS = 7


def settled_before(now: datetime | None = None) -> date:
    """The first day not yet settled at `now` (default now): its usage window is not over."""
    return ((now or datetime.now(UTC)) - USAGE_WINDOW).date()


def roll_up_recent_days(store: ObjectStore, now: datetime | None = None) -> DayRollupResult:
    """roll_up_days over the last RECENT_DAYS settled days at `now` (default now): what a run on
    a schedule does after its snapshot, looking at a week of days whatever the store holds."""
    first_unsettled = settled_before(now)
    return roll_up_days(store, first_unsettled, since=first_unsettled - timedelta(days=RECENT_DAYS))


def roll_up_days(store: ObjectStore, settled_before: date, since: date | None = None) -> DayRollupResult:
    """Give each day before `settled_before` (from `since` on, when given) that has two rollups
    or more one rollup of all its rolled-up files, committed by one manifest; safe to run again
    at any time (a day with one rollup is left as it is)."""
    started = time.perf_counter()
    result = DayRollupResult()
    files = published_files(store, (since or date.min, settled_before))
    days: dict[date, dict[str, list[PublishedFile]]] = defaultdict(dict)
    for key, named in rolled_up(files, settled_before).items():
        days[named[0].date][key] = named
    wanting = {day: rollups for day, rollups in sorted(days.items()) if len(rollups) > 1}
    made: list[PublishedRollup] = []
    if wanting:
        maker = RollupMaker()
        try:
            for day, rollups in wanting.items():
                merged = _merged(store, maker, list(rollups))
                if merged is None:
                    continue
                named = [file for files_of_rollup in rollups.values() for file in files_of_rollup]
                key = day_rollup_key(day, (file.key for file in named))
                store.put(key, merged, overwrite=True)  # the same files' sums: the same rows
                made.extend(PublishedRollup(file.key, key, DAY_ROLLUP_LAYOUT) for file in named)
                result.days, result.files, result.rollups = result.days + 1, result.files + len(named), \
                    result.rollups + len(rollups)
        finally:
            maker.close()
    if made:
        result.manifest = commit_rollups(store, made)
    result.seconds = time.perf_counter() - started
    return result


def _merged(store: ObjectStore, maker: RollupMaker, keys: list[str]) -> bytes | None:
    """The rollup summing these rollups; None when one is gone or unreadable (a report reads
    those files' events; `chargeback snapshot --rollups` writes them again) or a sum passes 64 bits."""
    tables = []
    for key in keys:
        table = read_rollup(store, key)
        if table is None:
            return None
        tables.append(table)
    return maker.merged(tables)
