"""Rollups (pipeline.lake.rollups): each snapshot file's events summed per pricing key, written
with it, and what the report sums instead of the events of the settled files that have one.

The oracle is the report made from the events alone (`open_warehouse(..., rollups=False)`): every
file of every format the same bytes, over a month of the demo's traffic (tiers, spillover, provisioned
capacity, streams, duplicates) with odd events added (audio, gateway timeouts, unknown deployments,
cost centers sent), as of a moment inside the month (its last days read from their events) and after.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import Pipeline
from pipeline.domain.corrections import Corrections, Kind, correction
from pipeline.domain.costing import Reference
from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.inputs import synthetic
from pipeline.inputs.reference import load_reference
from pipeline.lake import snapshot_scans
from pipeline.lake.manifests import MANIFEST_PREFIX, Manifest, manifests, published_files
from pipeline.lake.rollups import ROLLUP_LAYOUT, ROLLUP_PREFIX, RollupMaker, rolled_up_note_key, rollup_key
from pipeline.lake.usage import USAGE_SCHEMA, events_table
from pipeline.lake.warehouse import open_warehouse
from pipeline.stages.backfill import backfill_rollups
from pipeline.stages.report.build import build_report
from pipeline.stages.report.model import FORMATS
from pipeline.stages.snapshot import snapshot
from tests.conftest import Feed, WriteFile, local
from tests.factories import event, jsonl, usage, write_report

MONTH = "2026-10"
INSIDE = datetime(2026, 10, 29, 9, 30, tzinfo=UTC)  # 10-28 on are within the usage window: read from events
AFTER = datetime(2026, 11, 3, tzinfo=UTC)  # every day of the month settled
TODAY = date(2026, 11, 3)
NOTHING_TO_DO = ("snapshot: nothing new compaction: no settled day has many small files rollups: every committed "
                 "file has one days: every settled day has one rollup")


def odd_events() -> list[dict[str, Any]]:
    """What the demo's traffic has few or none of, on days across the month."""
    audio = {**usage(1000, 500), "audioPromptTokens": 300, "audioCompletionTokens": 100}
    timeout = {"chargebackError": "gateway-timeout"}
    return [
        event(deployment="chat-gpt4o", timestamp="2026-10-03T08:00:00Z", usage=audio, serviceTier=" Priority "),
        event(deployment="chat-gpt4o", timestamp="2026-10-03T08:00:01Z", usage=audio, serviceTier="flex"),
        event(deployment="chat-gpt4o", timestamp="2026-10-04T23:59:59Z", usage=None, usageSource="none",
              statusCode=504, tags=timeout),
        event(deployment="chat-gpt4o", timestamp="2026-10-05T00:00:00Z", usage=None, usageSource="stream",
              stream=True),
        event(deployment="chat-gpt4o", timestamp="2026-10-28T12:00:00Z", usage=None, usageSource="stream",
              stream=True),  # pending as of INSIDE, expired after the month
        event(deployment="no-such-deployment", timestamp="2026-10-09T10:00:00Z", model="gpt-4o"),
        event(deployment="chat-gpt4o", timestamp="2026-10-10T10:00:00Z", costCenter="CC-SENT",
              subscriptionId="sub-unmapped"),
        event(deployment="chat-gpt4o", timestamp="2026-10-11T10:00:00Z", usage=usage(10**12, 10**12)),
        event(deployment="chat-gpt4o", timestamp="2026-10-30T10:00:00Z", serviceTier="default"),
    ]


@pytest.fixture
def demo_reference(write_file: WriteFile) -> Reference:
    return load_reference(None, write_file("deployments.csv", synthetic.deployments_csv()),
                          write_file("cost-centers.csv", synthetic.cost_centers_csv(MONTH)),
                          write_file("capacity.csv", synthetic.capacity_csv(MONTH)))


@pytest.fixture
def month(pipeline: Pipeline, feed: Feed) -> Pipeline:
    """The demo's traffic and the odd events, snapshotted in three runs (several files a day)."""
    lines = list(synthetic.traffic(MONTH, 12_000, seed=3))
    for part in (lines[:5_000], lines[5_000:], [jsonl(odd_events())]):
        feed(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in part))
        snapshot(pipeline.ledger, pipeline.snapshots)
    return pipeline


def files_of(pipeline: Pipeline, reference: Reference, folder: Path, now: datetime, rollups: bool,
             corrections: Corrections | None = None) -> dict[str, bytes]:
    """Every format of the month's report, file name -> bytes; asserts whether rollups were read.
    Opened as the report opens it: without the events a rollup sums unless something is voided."""
    events = not rollups or bool(corrections and corrections.of(Kind.VOID))
    opened = open_warehouse(local(pipeline.snapshots), None, (date(2026, 10, 1), date(2026, 11, 1)), now=now,
                            rollups=rollups, events=events)
    assert opened.rollups is rollups
    report = build_report(opened, reference, MONTH, corrections=corrections, today=TODAY)
    return {path.name: path.read_bytes() for path in write_report(report, folder, FORMATS)}


@pytest.mark.parametrize("now", [INSIDE, AFTER], ids=["inside-the-month", "after-it"])
def test_a_report_from_rollups_is_the_report_from_events(month: Pipeline, demo_reference: Reference,
                                                          tmp_path: Path, now: datetime) -> None:
    from_events = files_of(month, demo_reference, tmp_path / "events", now, rollups=False)
    from_rollups = files_of(month, demo_reference, tmp_path / "rollups", now, rollups=True)
    assert len(from_events) == 10 and from_rollups.keys() == from_events.keys()
    for name, data in from_events.items():
        assert from_rollups[name] == data, name


def test_through_arrow_a_report_from_rollups_is_the_report_from_events(
        month: Pipeline, demo_reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader of a store DuckDB cannot read itself (Blob Storage): rollups read whole."""
    monkeypatch.setattr(snapshot_scans, "read_local_files", lambda *args: None)
    from_events = files_of(month, demo_reference, tmp_path / "events", INSIDE, rollups=False)
    from_rollups = files_of(month, demo_reference, tmp_path / "rollups", INSIDE, rollups=True)
    assert from_rollups == from_events and len(from_events) == 10


def test_the_snapshot_writes_each_file_with_its_rollup(month: Pipeline) -> None:
    store = month.snapshots
    files = [file for manifest in manifests(store) for file in manifest.files]
    assert len(files) > 31 and len({file.date for file in files}) == 31
    for file in files:
        key = rollup_key(file.key)
        assert (file.rollup, file.rollup_layout) == (key, ROLLUP_LAYOUT)
        assert key.startswith(f"rollups/v{ROLLUP_LAYOUT}/date={file.date.isoformat()}/part-") and store.exists(key)
    # The first run began the store: no backfill has anything to do (the later runs leave the note).
    first = manifests(store)[0].number
    assert msgspec.json.decode(store.get(rolled_up_note_key()) or b"")["manifest"] == first == 1


def test_opened_for_its_rollups_alone_the_warehouse_scans_no_event_a_rollup_sums(month: Pipeline,
                                                                                  demo_reference: Reference) -> None:
    """The report's warehouse when nothing is voided: no `usage` view, no rolled-up file's events."""
    days = (date(2026, 10, 1), date(2026, 11, 1))
    opened = open_warehouse(local(month.snapshots), None, days, now=AFTER, events=False)
    assert (opened.rollups, opened.events) == (True, False)
    views = {name for (name,) in opened.connection.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert {"usage_rollups", "usage_unrolled"} <= views and not {"usage", "usage_events"} & views
    assert opened.connection.execute("SELECT (SELECT count(*) FROM usage_unrolled), (SELECT sum(requests) "
                                     "FROM usage_rollups)").fetchall() == [(0, month.ledger.count())]
    voids = Corrections((correction(kind=Kind.VOID, reason="test", by="tester", at=AFTER, event_ids=["x"]),))
    with pytest.raises(ValueError, match="prices each event"):
        open_warehouse(local(month.snapshots), demo_reference, days, now=AFTER, events=False)
    with pytest.raises(ValueError, match="opened for its rollups alone"):
        build_report(opened, demo_reference, MONTH, corrections=voids, today=TODAY)
    [(recent,)] = open_warehouse(local(month.snapshots), None, days, now=INSIDE, events=False).connection.execute(
        "SELECT count(*) FROM usage_unrolled").fetchall()
    assert recent == sum(f.rows for f in published_files(local(month.snapshots)) if f.date >= date(2026, 10, 28))
    without = open_warehouse(local(month.snapshots), None, days, now=AFTER, rollups=False, events=False)
    assert (without.rollups, without.events) == (False, True)  # no rollups read: `usage` as ever


def test_a_void_is_applied_to_the_events_not_to_rollups(month: Pipeline, demo_reference: Reference,
                                                       tmp_path: Path) -> None:
    voided = [row["event_id"] for row in month.ledger.changes(None, 200).table.select(["event_id"]).to_pylist()]
    corrections = Corrections((correction(kind=Kind.VOID, reason="test", by="tester", at=AFTER,
                                          event_ids=voided[::3]),))
    plain = files_of(month, demo_reference, tmp_path / "plain", AFTER, rollups=True)
    from_events = files_of(month, demo_reference, tmp_path / "events", AFTER, rollups=False, corrections=corrections)
    from_rollups = files_of(month, demo_reference, tmp_path / "rollups", AFTER, rollups=True, corrections=corrections)
    assert from_rollups == from_events
    assert from_rollups["chargeback-2026-10.csv"] != plain["chargeback-2026-10.csv"]  # the void took


def test_files_without_a_rollup_of_this_version_are_read_from_their_events(
        month: Pipeline, demo_reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest written before rollups (its entries have none), rollups deleted, and rollups of
    another version."""
    store = local(month.snapshots)
    first = manifests(store)[0]
    older = Manifest(first.number, first.cursor, [msgspec.structs.replace(file, rollup=None, rollup_layout=0)
                                                  for file in first.files], first.created)
    (store.root / MANIFEST_PREFIX / f"{first.number:08d}.json").write_bytes(msgspec.json.encode(older))
    from_events = files_of(month, demo_reference, tmp_path / "events", AFTER, rollups=False)
    assert files_of(month, demo_reference, tmp_path / "mixed", AFTER, rollups=True) == from_events
    for file in manifests(store)[-1].files[:3]:  # gone (deleted by hand): read from the events, both readers
        (store.root / rollup_key(file.key)).unlink()
    assert files_of(month, demo_reference, tmp_path / "gone", AFTER, rollups=True) == from_events
    with monkeypatch.context() as patch:
        patch.setattr(snapshot_scans, "read_local_files", lambda *args: None)
        assert files_of(month, demo_reference, tmp_path / "gone-arrow", AFTER, rollups=True) == from_events
    monkeypatch.setattr(snapshot_scans, "ROLLUP_LAYOUT", ROLLUP_LAYOUT + 1)
    opened = open_warehouse(store, None, (date(2026, 10, 1), date(2026, 11, 1)), now=AFTER)
    assert not opened.rollups


def test_a_rollup_whose_sums_pass_64_bits_is_not_made() -> None:
    bodies = [jsonl([event(timestamp="2026-10-11T10:00:00Z")]).strip() for _ in range(3)]
    events = decode_batch([RawMessage(body, "test", f"line {n}") for n, body in enumerate(bodies)]).events
    table = events_table(events, AFTER)
    huge = pa.array([2**62] * table.num_rows, pa.int64())
    maker = RollupMaker()
    try:
        assert maker.rollup(table) is not None
        assert maker.rollup(table.set_column(USAGE_SCHEMA.get_field_index("prompt_tokens"), "prompt_tokens",
                                             huge)) is None
    finally:
        maker.close()


def as_before_rollups(store: LocalObjectStore) -> int:
    """Rewrite the store's manifests as a version before rollups wrote them (no rollup fields,
    and the oldest file without `gateway_timeout` and `layout`, as before that column), and delete
    the rollups; returns how many files the manifests name."""
    shutil.rmtree(store.root / ROLLUP_PREFIX)
    (store.root / rolled_up_note_key()).unlink(missing_ok=True)  # written as the snapshot began the store
    paths = sorted((store.root / MANIFEST_PREFIX).glob("*.json"))
    oldest = None
    files = 0
    for path in paths:
        written = msgspec.json.decode(path.read_bytes())
        for file in written["files"]:
            del file["rollup"], file["rollup_layout"]
            oldest = oldest or file
        files += len(written["files"])
        path.write_bytes(msgspec.json.encode(written))
    assert oldest is not None
    data = store.root / oldest["key"]
    pq.write_table(pq.read_table(data).drop_columns(["gateway_timeout"]), data)
    written = msgspec.json.decode(paths[0].read_bytes())
    written["files"] = [{k: v for k, v in f.items() if k != "layout"} if f["key"] == oldest["key"] else f
                        for f in written["files"]]
    paths[0].write_bytes(msgspec.json.encode(written))
    return files


def test_a_backfill_rolls_up_the_files_committed_without_a_rollup(month: Pipeline, demo_reference: Reference,
                                                                  feed: Feed, tmp_path: Path) -> None:
    store = local(month.snapshots)
    files = as_before_rollups(store)
    before = manifests(store)
    assert not open_warehouse(store, None, (date(2026, 10, 1), date(2026, 11, 1)), now=AFTER).rollups
    from_events = files_of(month, demo_reference, tmp_path / "events", AFTER, rollups=False)

    partly = backfill_rollups(store, most_files=5)
    assert (partly.files, partly.left, partly.unrolled, partly.manifest) == (5, files - 5, 0, before[-1].number + 1)
    done = backfill_rollups(store)
    assert (done.files, done.left, done.manifest) == (files - 5, 0, before[-1].number + 2)
    committed = manifests(store)
    assert [(m.files, m.cursor) for m in committed[-2:]] == [([], before[-1].cursor)] * 2  # no file committed again
    assert all((f.rollup, f.rollup_layout) == (rollup_key(f.key), ROLLUP_LAYOUT) for f in published_files(store))
    assert files_of(month, demo_reference, tmp_path / "rollups", AFTER, rollups=True) == from_events
    nothing = backfill_rollups(store)  # nothing left to do: no manifest
    assert (nothing.files, nothing.left, nothing.unrolled, nothing.manifest) == (0, 0, 0, None)
    assert len(manifests(store)) == len(committed)

    feed(jsonl([event(timestamp="2026-10-12T09:00:00Z")]))  # the snapshot goes on from the backfill's manifest
    later = snapshot(month.ledger, month.snapshots)
    assert (later.rows, later.manifests, later.cursor) == (1, [before[-1].number + 3], str(month.ledger.count()))


def without_rollups(store: LocalObjectStore, number: int) -> None:
    """Manifest `number` as a version before rollups wrote it (its files name no rollup)."""
    path = store.root / MANIFEST_PREFIX / f"{number:08d}.json"
    written = msgspec.json.decode(path.read_bytes())
    for file in written["files"]:
        del file["rollup"], file["rollup_layout"]
    path.write_bytes(msgspec.json.encode(written))


def test_a_backfill_that_leaves_no_file_says_so_and_then_unless_complete_reads_nothing(
        month: Pipeline, feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Functions timer runs after each snapshot: `unless_complete` stops at one read once
    a backfill left no file; the CLI's backfill always looks, and rolls up a file committed later
    without a rollup (by an older version still running)."""
    store = local(month.snapshots)
    as_before_rollups(store)
    partly = backfill_rollups(store, most_files=5, unless_complete=True)
    assert (partly.files, partly.skipped, store.exists(rolled_up_note_key())) == (5, False, False)  # files left
    done = backfill_rollups(store, unless_complete=True)
    assert done.left == 0 and done.files > 0
    assert msgspec.json.decode(store.get(rolled_up_note_key()) or b"") | {"at": None} == {
        "layout": ROLLUP_LAYOUT, "manifest": done.manifest, "at": None}
    feed(jsonl([event(timestamp="2026-10-12T09:00:00Z")]))
    [later] = snapshot(month.ledger, month.snapshots).manifests
    without_rollups(store, later)
    read: list[str] = []

    def recorded(real: Callable[[str], object]) -> Callable[[str], object]:
        def call(key: str) -> object:
            read.append(key)
            return real(key)

        return call

    for name in ("get", "open", "list", "exists"):
        monkeypatch.setattr(store, name, recorded(getattr(store, name)))
    skipped = backfill_rollups(store, unless_complete=True)
    assert (skipped.skipped, skipped.files, skipped.manifest, read) == (True, 0, None, [rolled_up_note_key()])
    looked = backfill_rollups(store)
    assert (looked.files, looked.left, looked.manifest) == (1, 0, later + 1)
    assert all(file.rollup_layout == ROLLUP_LAYOUT for file in published_files(store))


def test_a_backfill_writes_again_a_rollup_that_is_gone(month: Pipeline, demo_reference: Reference,
                                                      tmp_path: Path) -> None:
    store = local(month.snapshots)
    gone = published_files(store)[2]
    assert gone.rollup is not None
    (store.root / gone.rollup).unlink()  # e.g. a lifecycle rule, or a clean-up of the wrong folder
    done = backfill_rollups(store)
    assert (done.files, done.left) == (1, 0) and (store.root / gone.rollup).is_file()
    assert files_of(month, demo_reference, tmp_path / "rollups", AFTER, rollups=True) == files_of(
        month, demo_reference, tmp_path / "events", AFTER, rollups=False)


@pytest.mark.parametrize("reader", ["duckdb", "arrow"])
def test_a_damaged_rollup_is_passed_over_for_the_events_with_a_warning(
        month: Pipeline, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    """Rollups are derived: one that cannot be read makes the report sum the events (the same
    bytes in every file), and the report says which file and how to write it again; through
    DuckDB's reader (the query fails) and Arrow's (Blob Storage: the rollups are read whole as the
    warehouse opens)."""
    from click.testing import CliRunner

    from pipeline.entrypoints.cli import main

    if reader == "arrow":
        monkeypatch.setattr(snapshot_scans, "read_local_files", lambda *args: None)

    store = local(month.snapshots)
    month.close()
    report = ["report", "--month", MONTH, "--format", "csv,parquet,focus"]
    intact = CliRunner().invoke(main, [*report, "--out", str(tmp_path / "intact")])
    assert intact.exit_code == 0, intact.output
    damaged = next(f for f in published_files(store) if f.rollup is not None and f.date < date(2026, 10, 20))
    (store.root / (damaged.rollup or "")).write_bytes(b"PAR1 not really")
    passed_over = CliRunner().invoke(main, [*report, "--out", str(tmp_path / "events")])
    assert passed_over.exit_code == 0, passed_over.output
    said = " ".join(passed_over.output.split())
    assert "warning: a rollup could not be read (" in said and f"{damaged.rollup}" in said
    assert "slower): run `chargeback snapshot --rollups` to write it again" in said
    assert said.count("warning: a rollup") == 1 and "warning: a rollup" not in " ".join(intact.output.split())
    def files(folder: Path) -> dict[str, bytes]:
        return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}

    written = files(tmp_path / "intact")
    assert written == files(tmp_path / "events") and len(written) >= 6


def test_snapshot_rollups_writes_a_damaged_rollup_again(month: Pipeline, demo_reference: Reference, home: Path,
                                                       tmp_path: Path) -> None:
    """`snapshot --rollups` reads every rollup there: one that is not Parquet, and one that is
    Parquet without a rollup's columns, are made again from their files (a report then sums them,
    and makes the same files as from the events); a second run finds nothing to do."""
    from click.testing import CliRunner

    from pipeline.entrypoints.cli import main

    store = local(month.snapshots)
    first, second = [f for f in published_files(store) if f.rollup is not None and f.date < date(2026, 10, 20)][:2]
    (store.root / (first.rollup or "")).write_bytes(b"PAR1 not really")
    pq.write_table(pa.table({"requests": [1]}), store.root / (second.rollup or ""))
    assert backfill_rollups(store).files == 0  # without check_present: nothing is read
    number = len(manifests(store))
    month.close()
    result = CliRunner().invoke(main, ["snapshot", "--rollups"])
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).startswith(
        "snapshot: nothing new compaction: no settled day has many small files rollups: 2 earlier file(s) rolled up, "
        f"committed as manifest {number + 1}; 2 of them had a damaged rollup, written again days: ")
    for file in (first, second):
        assert pq.read_table(store.root / (file.rollup or "")).num_rows > 0
    assert files_of(month, demo_reference, tmp_path / "rollups", AFTER, rollups=True) == files_of(
        month, demo_reference, tmp_path / "events", AFTER, rollups=False)
    again = CliRunner().invoke(main, ["snapshot", "--rollups"])
    assert " ".join(again.output.split()) == NOTHING_TO_DO


def test_snapshot_rollups_prints_what_it_rolled_up(month: Pipeline, home: Path) -> None:
    from click.testing import CliRunner

    from pipeline.entrypoints.cli import main

    files = as_before_rollups(local(month.snapshots))
    month.close()
    first = CliRunner().invoke(main, ["snapshot", "--rollups"])
    assert first.exit_code == 0, first.output
    number = len(list((home / "snapshots" / MANIFEST_PREFIX).glob("*.json")))  # the last sums days
    assert f"rollups: {files:,} earlier file(s) rolled up, committed as manifest {number - 1} days: " in " ".join(
        first.output.split()) and " ".join(first.output.split()).endswith(f"committed as manifest {number}")
    again = CliRunner().invoke(main, ["snapshot", "--rollups"])
    assert " ".join(again.output.split()) == NOTHING_TO_DO


def test_a_damaged_file_ends_the_backfill_in_one_line(month: Pipeline, home: Path) -> None:
    from click.testing import CliRunner

    from pipeline.entrypoints.cli import main

    store = local(month.snapshots)
    as_before_rollups(store)
    damaged = published_files(store)[3]
    (store.root / damaged.key).write_bytes(b"PAR1 not really")
    month.close()
    result = CliRunner().invoke(main, ["snapshot", "--rollups"])
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    said = " ".join(result.output.split())
    assert said.startswith("snapshot: nothing new compaction: no settled day has many small files "
                           f"Error: {store.url}/{damaged.key}: a committed snapshot file is "
                           "not readable Parquet (") and said.endswith("); restore it from a backup")
