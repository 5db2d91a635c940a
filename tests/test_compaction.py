"""Compaction (pipeline.stages.compaction): a settled day's many small files rewritten as one,
named in their place by the next manifest. The oracle is the store before it: every format of the
month's report byte for byte (from rollups and from events), and every event read once, including
the ways a compaction can meet another run (a snapshot or a compaction committing first), a file
it cannot read, a checkpoint, and a manifest that names files not committed.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import Pipeline
from pipeline.domain.costing import Reference
from pipeline.entrypoints.cli import main
from pipeline.entrypoints.functions import timers
from pipeline.lake import manifests
from pipeline.lake.manifests import Compaction, Manifest, PublishedFile, committed_files, latest_manifest
from pipeline.lake.warehouse import open_warehouse
from pipeline.settings import Settings
from pipeline.stages import compaction
from pipeline.stages.compaction import compact_days
from pipeline.stages.snapshot import SnapshotConflict, commit_manifest, snapshot
from tests.conftest import Feed, local
from tests.factories import event, jsonl
from tests.test_rollups import AFTER, demo_reference, files_of, month

__all__ = ["demo_reference", "month"]  # the fixtures, for pytest
SETTLED = date(2026, 11, 2)  # AFTER less the usage window


def event_ids(store: LocalObjectStore) -> list[str]:
    """Every event the committed files hold, as readers see them (a copy read twice shows)."""
    warehouse = open_warehouse(store, rollups=False)
    try:
        return [row[0] for row in warehouse.connection.execute("SELECT event_id FROM usage ORDER BY 1").fetchall()]
    finally:
        warehouse.connection.close()


def files_a_day(store: LocalObjectStore) -> dict[date, int]:
    days: dict[date, int] = {}
    for file in committed_files(store):
        days[file.date] = days.get(file.date, 0) + 1
    return days


def test_a_compacted_month_reports_what_its_files_did(month: Pipeline, demo_reference: Reference,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The month of tests.test_rollups (three snapshot runs: up to three files a day, one file
    whose sums pass 64 bits) compacted at two files a day: the same report, read from rollups
    and from events, and the same events."""
    monkeypatch.setattr(compaction, "COMPACT_MIN_FILES", 2)
    store = local(month.snapshots)
    before_days = files_a_day(store)
    before = {rollups: files_of(month, demo_reference, tmp_path / f"before-{rollups}", AFTER, rollups)
              for rollups in (True, False)}
    ids = event_ids(store)
    replaced = [file.key for file in committed_files(store) if before_days[file.date] > 1]

    done = compact_days(store, SETTLED)

    several = {day for day, count in before_days.items() if count > 1}
    assert (done.days, done.replaced, done.written, done.unreadable) == (len(several), len(replaced), len(several),
                                                                         None)
    assert files_a_day(store) == dict.fromkeys(before_days, 1)
    for rollups in (True, False):
        assert files_of(month, demo_reference, tmp_path / f"after-{rollups}", AFTER, rollups) == before[rollups]
    assert event_ids(store) == ids
    assert done.rows == sum(file.rows for file in committed_files(store) if file.date in several)
    assert all(store.exists(key) for key in replaced)  # nothing deleted: a reader of before still reads them
    again = compact_days(store, SETTLED)
    assert (again.days, again.manifest) == (0, None)


def fifteen_minute_days(pipeline: Pipeline, feed: Feed, days: dict[date, int]) -> None:
    """`runs` snapshot runs for each day, each writing a file of two events of that day."""
    for run in range(max(days.values())):
        feed(jsonl([event(timestamp=f"{day.isoformat()}T{run:02d}:{minute:02d}:00Z")
                    for day, runs in days.items() if run < runs for minute in (7, 37)]))
        snapshot(pipeline.ledger, pipeline.snapshots)


def test_a_plain_snapshot_compacts_the_last_settled_days(pipeline: Pipeline, feed: Feed, home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`chargeback snapshot` run on a schedule: a settled day of the last week with 12 files is
    compacted, and the oldest day before the week still to compact (one a run); one in the usage
    window and one of 9 files are not. The next day rollups find the compacted day with one
    rollup. The files replaced are deleted by the first run after RETAIN (here none)."""
    today = datetime.now(UTC).date()
    compacted, young, few, older, oldest = (today - timedelta(days=n) for n in (3, 1, 4, 12, 20))
    fifteen_minute_days(pipeline, feed, {compacted: 12, young: 12, few: 9, older: 11, oldest: 10})
    store = local(pipeline.snapshots)
    ids = event_ids(store)
    pipeline.close()

    first = CliRunner().invoke(main, ["snapshot"])

    assert first.exit_code == 0, first.output
    latest = latest_manifest(store)
    assert latest is not None
    assert " ".join(first.output.split()) == (
        f"snapshot: nothing new compaction: 2 settled day(s): 22 file(s) rewritten as 2 (44 events), committed as "
        f"manifest {latest.number - 1} days: 1 settled day(s) given one rollup of 9 file(s) (9 rollups read), "
        f"committed as manifest {latest.number}")
    assert files_a_day(store) == {compacted: 1, young: 12, few: 9, older: 11, oldest: 1}
    assert event_ids(store) == ids
    [new] = [file for file in committed_files(store) if file.date == compacted]
    assert new.key.startswith(f"usage/date={compacted.isoformat()}/compact-") and new.rows == 24
    second = CliRunner().invoke(main, ["snapshot"])
    assert " ".join(second.output.split()) == (
        f"snapshot: nothing new compaction: 1 settled day(s): 11 file(s) rewritten as 1 (22 events), committed as "
        f"manifest {latest.number + 1}")
    assert files_a_day(store) == {compacted: 1, young: 12, few: 9, older: 1, oldest: 1}
    assert CliRunner().invoke(main, ["snapshot"]).output.split() == ["snapshot:", "nothing", "new"]
    monkeypatch.setattr(compaction, "RETAIN", timedelta(0))
    deleting = CliRunner().invoke(main, ["snapshot"])
    assert " ".join(deleting.output.split()) == ("snapshot: nothing new compaction: 33 file(s) replaced over 0 days "
                                                 "ago deleted")
    assert event_ids(store) == ids and len(store.list(f"usage/date={compacted.isoformat()}")) == 1


def test_a_compaction_that_loses_the_race_commits_nothing(pipeline: Pipeline, feed: Feed, home: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run compacts the same files and commits first: this one commits nothing (its
    number is taken), says so in one line, exit 0, and every event is read once."""
    day = datetime.now(UTC).date() - timedelta(days=2)
    fifteen_minute_days(pipeline, feed, {day: 10})
    store = local(pipeline.snapshots)
    ids = event_ids(store)
    pipeline.close()
    put = LocalObjectStore.put
    rivals: list[int] = []

    def racing_put(self: LocalObjectStore, key: str, data: bytes, *, overwrite: bool) -> bool:
        if key.startswith("_manifests/") and not rivals:  # another compaction of the same files goes first
            rivals.append(0)
            rival = compact_days(self, day + timedelta(days=1))
            assert rival.manifest is not None
            rivals[0] = rival.manifest
        return put(self, key, data, overwrite=overwrite)

    monkeypatch.setattr(LocalObjectStore, "put", racing_put)
    lost = CliRunner().invoke(main, ["snapshot"])

    assert lost.exit_code == 0, lost.output
    assert " ".join(lost.output.split()) == ("snapshot: nothing new compaction: a snapshot committed first; the "
                                             "next run compacts the settled days")
    assert files_a_day(store) == {day: 1} and event_ids(store) == ids
    latest = latest_manifest(store)
    assert latest is not None and latest.number == rivals[0]
    assert CliRunner().invoke(main, ["snapshot"]).output.split() == ["snapshot:", "nothing", "new"]


def test_a_compaction_after_a_snapshot_committed_meanwhile_raises_the_conflict(
        pipeline: Pipeline, feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files were read as of manifest N; a snapshot commits N+1 before the compaction does:
    SnapshotConflict, and the new file is read once, with the day's files as they were."""
    day = date(2026, 10, 15)
    fifteen_minute_days(pipeline, feed, {day: 10})
    store = local(pipeline.snapshots)
    read_as_of = manifests.latest_manifest

    def then_a_snapshot(store_: LocalObjectStore) -> Manifest | None:
        latest = read_as_of(store_)
        feed(jsonl([event(timestamp="2026-10-15T23:00:00Z")]))
        snapshot(pipeline.ledger, pipeline.snapshots)
        return latest

    monkeypatch.setattr(compaction, "latest_manifest", then_a_snapshot)
    ids = event_ids(store)
    with pytest.raises(SnapshotConflict):
        compact_days(store, date(2026, 10, 20))
    assert files_a_day(store) == {day: 11} and len(event_ids(store)) == len(ids) + 1


def test_a_day_with_a_file_it_cannot_read_is_left_as_it_is(pipeline: Pipeline, feed: Feed, home: Path) -> None:
    day = datetime.now(UTC).date() - timedelta(days=2)
    fifteen_minute_days(pipeline, feed, {day: 10})
    store = local(pipeline.snapshots)
    pipeline.close()
    damaged = committed_files(store)[4].key
    store.put(damaged, b"not parquet", overwrite=True)

    result = CliRunner().invoke(main, ["snapshot"])

    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).startswith(
        f"snapshot: nothing new compaction: left as they are, a file of theirs unreadable: {day.isoformat()} ")
    assert files_a_day(store) == {day: 10}


def test_the_snapshot_timer_compacts_the_last_settled_days(pipeline: Pipeline, feed: Feed, home: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """The last week's settled day, and the oldest before it (one a run)."""
    now = datetime(2026, 10, 20, 12, tzinfo=UTC)  # settled: the days before 10-19; the timer looks from 10-12 on
    fifteen_minute_days(pipeline, feed, {date(2026, 10, 15): 10, date(2026, 10, 5): 10, date(2026, 10, 3): 10})
    store = local(pipeline.snapshots)
    pipeline.close()
    caplog.set_level(logging.INFO)

    done = timers.compact_settled_days(Settings.from_env(), now)

    assert done is not None and (done.days, done.replaced, done.written, done.rows) == (2, 20, 2, 40)
    assert (f"compaction: 2 settled day(s), 20 file(s) rewritten as 2 (40 events, manifest {done.manifest})"
            in caplog.text)
    assert files_a_day(store) == {date(2026, 10, 15): 1, date(2026, 10, 5): 10, date(2026, 10, 3): 1}


def test_a_checkpoint_holds_the_compacted_files(pipeline: Pipeline, feed: Feed, home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint written with the compaction's manifest lists its file, not those replaced:
    a reader from the checkpoint sees what a reader of every manifest sees."""
    monkeypatch.setattr(manifests, "CHECKPOINT_EVERY", 4)
    day = date(2026, 10, 15)
    fifteen_minute_days(pipeline, feed, {day: 11})  # manifests 1..11: the compaction's is 12
    store = local(pipeline.snapshots)
    done = compact_days(store, date(2026, 10, 20))
    assert done.manifest == 12 and store.exists("_checkpoints/00000012.json")
    from_checkpoint = committed_files(store)
    for key in store.list("_checkpoints"):
        store.delete(key)
    assert from_checkpoint == committed_files(store) and len(from_checkpoint) == 1


def test_a_compaction_of_files_not_committed_is_passed_over(pipeline: Pipeline, feed: Feed, home: Path) -> None:
    """A manifest (damaged, or hand-made) whose compaction names a file no manifest committed, or
    whose rows do not add up, or that replaces files replaced already, changes nothing."""
    day = date(2026, 10, 15)
    fifteen_minute_days(pipeline, feed, {day: 3})
    store = local(pipeline.snapshots)
    files = committed_files(store)
    ids = event_ids(store)

    def commit(*compactions: Compaction) -> None:
        latest = latest_manifest(store)
        assert latest is not None
        commit_manifest(store, Manifest(latest.number + 1, latest.cursor, [], datetime.now(UTC),
                                        compactions=list(compactions)))

    def made_of(sources: list[PublishedFile], rows: int | None = None) -> Compaction:
        key = f"usage/date={day.isoformat()}/compact-{len(store.list('usage')):08d}.parquet"
        store.put(key, store.get(sources[0].key) or b"", overwrite=False)  # any readable file of the day
        return Compaction(PublishedFile(key, day, sum(f.rows for f in sources) if rows is None else rows, 2),
                          [f.key for f in sources])

    commit(made_of([files[0], PublishedFile("usage/date=2026-10-15/never.parquet", day, 2, 2)]))
    commit(made_of(files[:2], rows=5))
    assert committed_files(store) == files and event_ids(store) == ids
    first = made_of(files[:1])
    commit(first, made_of(files[:1]))  # the second replaces a file the first replaces
    assert committed_files(store) == [first.file, *files[1:]]


def test_files_each_as_large_as_a_compacted_one_are_left_as_they_are(pipeline: Pipeline, feed: Feed,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten files of a day that could not be joined without passing COMPACT_ROWS: nothing to do,
    and no manifest committed for it."""
    day = date(2026, 10, 15)
    fifteen_minute_days(pipeline, feed, {day: 10})  # two events a file
    store = local(pipeline.snapshots)
    monkeypatch.setattr(compaction, "COMPACT_ROWS", 3)
    latest = latest_manifest(store)
    done = compact_days(store, date(2026, 10, 20))
    assert (done.days, done.written, done.manifest) == (0, 0, None) and latest_manifest(store) == latest
    monkeypatch.setattr(compaction, "COMPACT_ROWS", 4)  # two files a run
    assert (compact_days(store, date(2026, 10, 20)).written, files_a_day(store)) == (5, {day: 5})


def test_snapshot_rollups_compacts_every_settled_day(pipeline: Pipeline, feed: Feed, home: Path) -> None:
    """Every settled day before the last week at once (a scheduled run does one a run), before
    the rollups: the files it replaces need none."""
    days = [datetime.now(UTC).date() - timedelta(days=n) for n in (20, 30)]
    fifteen_minute_days(pipeline, feed, dict.fromkeys(days, 10))
    store = local(pipeline.snapshots)
    pipeline.close()

    result = CliRunner().invoke(main, ["snapshot", "--rollups"])

    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()) == (
        "snapshot: nothing new compaction: 2 settled day(s): 20 file(s) rewritten as 2 (40 events), committed as "
        "manifest 11 rollups: every committed file has one days: every settled day has one rollup")
    assert files_a_day(store) == dict.fromkeys(days, 1)


def test_the_files_replaced_are_deleted_once_their_compaction_is_a_week_old(pipeline: Pipeline, feed: Feed) -> None:
    day = date(2026, 10, 15)
    fifteen_minute_days(pipeline, feed, {day: 10})
    store = local(pipeline.snapshots)
    replaced = committed_files(store)
    ids = event_ids(store)
    done = compact_days(store, date(2026, 10, 20))
    assert done.manifest is not None and store.list(compaction.NOTES_PREFIX) == [f"_compacted/{done.manifest:08d}.json"]
    committed = latest_manifest(store)
    assert committed is not None

    for days, deleted in ((6, 0), (8, 10), (9, 0)):
        later = compact_days(store, date(2026, 10, 20), now=committed.created + timedelta(days=days))
        assert later.deleted == deleted, days
    assert not any(store.exists(file.key) or store.exists(file.rollup or "") for file in replaced)
    assert store.list(compaction.NOTES_PREFIX) == [] and event_ids(store) == ids
    [kept] = committed_files(store)
    assert store.list(f"usage/date={day.isoformat()}") == [kept.key]  # the compacted file alone


def test_a_file_still_committed_is_never_deleted(pipeline: Pipeline, feed: Feed) -> None:
    """A note of a compaction that readers pass over (its rows do not add up), and a note of a
    manifest a snapshot took: both removed, and every committed file stays."""
    day = date(2026, 10, 15)
    fifteen_minute_days(pipeline, feed, {day: 3})
    store = local(pipeline.snapshots)
    files = committed_files(store)
    latest = latest_manifest(store)
    assert latest is not None
    store.put("usage/date=2026-10-15/compact-hand-made.parquet", store.get(files[0].key) or b"", overwrite=False)
    bad = Compaction(PublishedFile("usage/date=2026-10-15/compact-hand-made.parquet", day, 99, 2),
                     [file.key for file in files])
    commit_manifest(store, Manifest(latest.number + 1, latest.cursor, [], datetime(2026, 10, 16, tzinfo=UTC),
                                    compactions=[bad]))
    for number in (latest.number, latest.number + 1):  # a snapshot's, and the hand-made compaction's
        store.put(f"{compaction.NOTES_PREFIX}/{number:08d}.json", b"{}", overwrite=False)

    assert compact_days(store, date(2026, 10, 20)).deleted == 0

    assert all(store.exists(file.key) for file in files) and committed_files(store) == files
    assert store.list(compaction.NOTES_PREFIX) == []
