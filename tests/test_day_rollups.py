"""Day rollups (pipeline.stages.day_rollups): each settled day's file rollups summed into one,
which every file of the day names. The oracle is the report from the events alone, every format
byte for byte, over the month of tests.test_rollups (three snapshot runs: several files a day),
including the ways a day's rollup may come to disagree with its files: a file committed later, a
file named again by its own rollup (an older version's backfill), a damaged day rollup, and a
reader that knows only per-file rollups.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from pipeline.app import Pipeline
from pipeline.domain.costing import Reference
from pipeline.entrypoints.functions import timers
from pipeline.lake import snapshot_scans
from pipeline.lake.manifests import Manifest, PublishedRollup, latest_manifest, published_files
from pipeline.lake.rollups import DAY_ROLLUP_LAYOUT, ROLLUP_LAYOUT, day_rollup_key, rollup_key
from pipeline.lake.snapshot_scans import rolled_up
from pipeline.settings import Settings
from pipeline.stages.backfill import backfill_rollups
from pipeline.stages.day_rollups import roll_up_days
from pipeline.stages.snapshot import commit_manifest, snapshot
from tests.conftest import Feed, local
from tests.factories import event, jsonl
from tests.test_rollups import AFTER, INSIDE, demo_reference, files_of, month

__all__ = ["demo_reference", "month"]  # the fixtures, for pytest
SETTLED = date(2026, 11, 2)  # AFTER less the usage window


def the_events_report(pipeline: Pipeline, reference: Reference, folder: Path,
                      now: datetime = AFTER) -> dict[str, bytes]:
    return files_of(pipeline, reference, folder, now, rollups=False)


def a_day_of_several_files(pipeline: Pipeline) -> date:
    days = [f.date for f in published_files(local(pipeline.snapshots))]
    return min(day for day in days if days.count(day) > 1)


@pytest.mark.parametrize("reader", ["duckdb", "arrow"])
def test_a_report_from_day_rollups_is_the_report_from_events(month: Pipeline, demo_reference: Reference,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             reader: str) -> None:
    """Through DuckDB's reader of a local store, and Arrow's (Blob Storage: rollups read whole)."""
    if reader == "arrow":
        monkeypatch.setattr(snapshot_scans, "read_local_files", lambda *args: None)
    store = local(month.snapshots)
    files = published_files(store)
    several = {day for day in {f.date for f in files} if sum(f.date == day for f in files) > 1}
    done = roll_up_days(store, SETTLED)
    assert (done.days, done.files, done.rollups) == (len(several), sum(f.date in several for f in files),
                                                     sum(f.date in several for f in files))
    rollups = rolled_up(published_files(store), SETTLED)
    assert len(rollups) == 31 and sum(key.startswith("rollups/v1/days/") for key in rollups) == len(several)
    for now in (AFTER, INSIDE):  # inside the month, its last days' rollups are passed over for their events
        assert files_of(month, demo_reference, tmp_path / f"rollups-{now:%d}", now, rollups=True) == \
            the_events_report(month, demo_reference, tmp_path / f"events-{now:%d}", now)
    again = roll_up_days(store, SETTLED)
    assert (again.days, again.manifest) == (0, None)
    assert backfill_rollups(store, check_present=True).files == 0  # a day's rollup is a file's rollup


def test_a_file_committed_later_is_summed_apart_then_with_its_day(month: Pipeline, demo_reference: Reference,
                                                                   feed: Feed, tmp_path: Path) -> None:
    store = local(month.snapshots)
    roll_up_days(store, SETTLED)
    day = date(2026, 10, 12)
    before = [f for f in published_files(store) if f.date == day]
    feed(jsonl([event(timestamp="2026-10-12T09:00:00Z")]))  # a replay of a late event
    snapshot(month.ledger, month.snapshots)
    assert files_of(month, demo_reference, tmp_path / "apart", AFTER, rollups=True) == \
        the_events_report(month, demo_reference, tmp_path / "events")
    done = roll_up_days(store, SETTLED)
    assert (done.days, done.files, done.rollups) == (1, len(before) + 1, 2)  # the day's rollup and the new file's
    [(key, named)] = [(k, n) for k, n in rolled_up(published_files(store), SETTLED).items() if n[0].date == day]
    assert key == day_rollup_key(day, (f.key for f in named)) and len(named) == len(before) + 1
    assert files_of(month, demo_reference, tmp_path / "together", AFTER, rollups=True) == \
        the_events_report(month, demo_reference, tmp_path / "events-again")


def test_a_day_rollup_no_longer_named_by_all_its_files_is_not_read(month: Pipeline, demo_reference: Reference,
                                                                   tmp_path: Path) -> None:
    """An older version's backfill names one file's own rollup again: the day's rollup then sums
    a file that no longer names it, so the day's other files are read from their events (never
    that file twice); the backfill rolls them up again, and the next day rollup takes them all."""
    store = local(month.snapshots)
    roll_up_days(store, SETTLED)
    day = a_day_of_several_files(month)
    named = [f for f in published_files(store) if f.date == day]
    assert len(named) > 1 and {f.rollup_layout for f in named} == {DAY_ROLLUP_LAYOUT}
    latest = latest_manifest(store)
    assert latest is not None
    commit_manifest(store, Manifest(latest.number + 1, latest.cursor, [], AFTER,
                                    [PublishedRollup(named[0].key, rollup_key(named[0].key), ROLLUP_LAYOUT)]))
    days = {n[0].date: k for k, n in rolled_up(published_files(store), SETTLED).items()}
    assert days[day] == rollup_key(named[0].key)  # the file's own; the day's is passed over
    assert files_of(month, demo_reference, tmp_path / "partly", AFTER, rollups=True) == \
        the_events_report(month, demo_reference, tmp_path / "events")
    assert backfill_rollups(store).files == len(named) - 1
    assert roll_up_days(store, SETTLED).days == 1
    assert files_of(month, demo_reference, tmp_path / "again", AFTER, rollups=True) == \
        the_events_report(month, demo_reference, tmp_path / "events-again")


def test_a_reader_of_per_file_rollups_alone_reads_those_files_events(
        month: Pipeline, demo_reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version from before day rollups (two side by side during a deploy) never reads a day's
    rollup once per file: it reads the day's events."""
    roll_up_days(local(month.snapshots), SETTLED)
    monkeypatch.setattr(snapshot_scans, "_LAYOUTS", (ROLLUP_LAYOUT,))
    assert files_of(month, demo_reference, tmp_path / "older", AFTER, rollups=True) == \
        the_events_report(month, demo_reference, tmp_path / "events")


def test_a_damaged_day_rollup_is_written_again_by_snapshot_rollups(month: Pipeline, demo_reference: Reference,
                                                                   tmp_path: Path) -> None:
    store = local(month.snapshots)
    roll_up_days(store, SETTLED)
    day = a_day_of_several_files(month)
    named = [f for f in published_files(store) if f.date == day]
    assert len(named) > 1
    (store.root / (named[0].rollup or "")).write_bytes(b"PAR1 not really")
    backfilled = backfill_rollups(store, check_present=True)
    assert (backfilled.files, backfilled.damaged) == (len(named), len(named))
    assert roll_up_days(store, SETTLED).days == 1
    assert files_of(month, demo_reference, tmp_path / "mended", AFTER, rollups=True) == \
        the_events_report(month, demo_reference, tmp_path / "events")


def test_the_snapshot_timer_sums_the_last_settled_days(month: Pipeline, home: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    store = local(month.snapshots)
    month.close()
    caplog.set_level(logging.INFO)
    now = datetime(2026, 10, 20, 12, tzinfo=UTC)  # settled: the days before 10-19; the timer looks from 10-12 on
    days = [f.date for f in published_files(store)]
    several = {day for day in days if days.count(day) > 1 and date(2026, 10, 12) <= day < date(2026, 10, 19)}
    assert several and {day for day in days if days.count(day) > 1} - several  # some before the window
    done = timers.roll_up_settled_days(Settings.from_env(), now)
    assert done is not None and done.days == len(several)
    assert f"day rollups: {done.days} settled day(s) given one rollup" in caplog.text
    assert {f.date for f in published_files(store) if f.rollup_layout == DAY_ROLLUP_LAYOUT} == several
    assert msgspec.json.decode(store.get(f"_manifests/{done.manifest:08d}.json") or b"")["files"] == []


def test_a_plain_snapshot_sums_the_last_settled_days(pipeline: Pipeline, feed: Feed, home: Path) -> None:
    """`chargeback snapshot` run on a schedule: each run writes a file a day, and each run sums the
    last settled days' rollups into one (a day still in the usage window, and one settled before
    the last week, keep their files' own), says so once, then says nothing more of it."""
    from click.testing import CliRunner

    from pipeline.entrypoints.cli import main

    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in (1, 2, 3, 12)]  # yesterday: in the usage window; 12: before the week
    for run in range(2):
        feed(jsonl([event(timestamp=f"{day.isoformat()}T0{run}:30:00Z") for day in days]))
        snapshot(pipeline.ledger, pipeline.snapshots)
    store = local(pipeline.snapshots)
    pipeline.close()
    first = CliRunner().invoke(main, ["snapshot"])
    assert first.exit_code == 0, first.output
    manifest = latest_manifest(store)
    assert manifest is not None
    assert " ".join(first.output.split()) == ("snapshot: nothing new days: 2 settled day(s) given one rollup of 4 "
                                              f"file(s) (4 rollups read), committed as manifest {manifest.number}")
    summed = {f.date for f in published_files(store) if f.rollup_layout == DAY_ROLLUP_LAYOUT}
    assert summed == {days[1], days[2]}
    again = CliRunner().invoke(main, ["snapshot"])
    assert " ".join(again.output.split()) == "snapshot: nothing new"


def test_a_plain_snapshot_that_loses_the_race_leaves_the_days_to_the_next_run(
        pipeline: Pipeline, feed: Feed, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run commits the manifest number the day rollups would take: the plain snapshot
    (committed already) says so in one line, exit 0, and the next run sums the days."""
    from click.testing import CliRunner

    from pipeline.adapters.embedded.local_store import LocalObjectStore
    from pipeline.entrypoints.cli import main

    today = datetime.now(UTC).date()
    days = [today - timedelta(days=n) for n in (2, 3)]
    for run in range(2):
        feed(jsonl([event(timestamp=f"{day.isoformat()}T0{run}:30:00Z") for day in days]))
        snapshot(pipeline.ledger, pipeline.snapshots)
    store = local(pipeline.snapshots)
    pipeline.close()
    put = LocalObjectStore.put
    rivals: list[int] = []  # the number the other run took

    def racing_put(self: LocalObjectStore, key: str, data: bytes, *, overwrite: bool) -> bool:
        if key.startswith("_manifests/") and not rivals:  # another run takes the number first
            latest = latest_manifest(self)
            assert latest is not None
            rivals.append(latest.number + 1)
            commit_manifest(self, Manifest(latest.number + 1, latest.cursor, [], datetime.now(UTC)))
        return put(self, key, data, overwrite=overwrite)

    monkeypatch.setattr(LocalObjectStore, "put", racing_put)
    lost = CliRunner().invoke(main, ["snapshot"])
    assert lost.exit_code == 0, lost.output
    assert " ".join(lost.output.split()) == ("snapshot: nothing new days: a snapshot committed first; the next run "
                                             "sums the settled days")
    assert not any(f.rollup_layout == DAY_ROLLUP_LAYOUT for f in published_files(store))
    next_run = CliRunner().invoke(main, ["snapshot"])
    assert " ".join(next_run.output.split()) == (
        "snapshot: nothing new days: 2 settled day(s) given one rollup of 4 file(s) (4 rollups read), committed as "
        f"manifest {rivals[0] + 1}")
    assert {f.date for f in published_files(store) if f.rollup_layout == DAY_ROLLUP_LAYOUT} == set(days)
