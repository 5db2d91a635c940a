"""Snapshot stage and the local object store: real Parquet files committed by manifests, read back
with pyarrow and DuckDB."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import Pipeline, open_pipeline, open_store
from pipeline.domain.decode import RawMessage
from pipeline.inputs.event_files import json_lines
from pipeline.lake.areas import SNAPSHOTS
from pipeline.lake.manifests import PublishedFile, latest_manifest, manifests, published_files
from pipeline.lake.rollups import rollup_key
from pipeline.lake.usage import USAGE_SCHEMA
from pipeline.lake.warehouse import open_warehouse
from pipeline.ports import Ledger, ObjectStore
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest, ingest_batch
from pipeline.stages.snapshot import SnapshotConflict, SnapshotResult, snapshot
from tests.conftest import Feed, WriteFile, local
from tests.factories import event, jsonl, line, usage

PART = re.compile(r"^usage/date=(\d{4}-\d{2}-\d{2})/part-(\d{8})-[0-9a-f]+\.parquet$")


def part(key: str) -> tuple[str, str]:
    """(date, manifest number) in the name of a usage file; fails on any other name."""
    match = PART.match(key)
    assert match, key
    return match[1], match[2]


def days_of_traffic(days: dict[str, int]) -> bytes:
    return jsonl([event(timestamp=f"{day}T{n % 24:02d}:15:00Z", usage=usage(10 + n, n))
                  for day, count in days.items() for n in range(count)])


def stored(settings: Settings, pattern: str = "usage/date=*/part-*.parquet") -> dict[str, tuple[bytes, int]]:
    """Every object under the snapshot root matching `pattern`, with its bytes and mtime."""
    root = settings.home / "snapshots"
    return {path.relative_to(root).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(root.glob(pattern)) if path.is_file()}


def usage_ids(pipeline: Pipeline) -> list[str]:
    rows = open_warehouse(local(pipeline.snapshots)).connection.execute("SELECT event_id FROM usage").fetchall()
    return sorted(str(row[0]) for row in rows)


def ledger_ids(pipeline: Pipeline) -> list[str]:
    return sorted(str(v) for v in pipeline.ledger.changes(None, 10_000).table.column("event_id").to_pylist())


def assert_published_once(pipeline: Pipeline, events: int) -> None:
    ids = usage_ids(pipeline)
    assert ids == ledger_ids(pipeline)
    assert len(ids) == len(set(ids)) == pipeline.ledger.count() == events
    assert sum(file.rows for file in published_files(pipeline.snapshots)) == events


def test_files_are_partitioned_typed_and_compressed(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-14": 3, "2026-10-15": 5}))
    result = snapshot(pipeline.ledger, pipeline.snapshots)
    files = stored(settings)
    assert [part(key) for key in files] == [("2026-10-14", "00000001"), ("2026-10-15", "00000001")]
    assert sorted(result.files) == [f"{pipeline.snapshots.url}/{key}" for key in files]
    assert (result.rows, result.manifests, result.cursor) == (8, [1], "8")
    assert list(stored(settings, "_manifests/*")) == ["_manifests/00000001.json"]
    [manifest] = manifests(pipeline.snapshots)
    assert (manifest.number, manifest.cursor) == (1, "8")
    assert sorted((f.key, f.date, f.rows) for f in manifest.files) == [
        (key, date.fromisoformat(part(key)[0]), rows) for key, rows in zip(files, (3, 5), strict=True)]
    assert published_files(pipeline.snapshots, (date(2026, 10, 15), date(2026, 10, 16))) == [
        f for f in manifest.files if f.date == date(2026, 10, 15)]
    total = 0
    for key in files:
        path = settings.home / "snapshots" / key
        schema = pq.read_schema(path)
        assert schema.equals(USAGE_SCHEMA)
        metadata = schema.metadata or {}
        assert (metadata.get(b"chargeback.table"), metadata.get(b"chargeback.schema_version")) == (b"usage", b"1")
        parquet = pq.ParquetFile(path).metadata
        codecs = {parquet.row_group(g).column(c).compression
                  for g in range(parquet.num_row_groups) for c in range(parquet.num_columns)}
        assert codecs == {"ZSTD"}
        table = pq.read_table(path)
        assert {ts.date().isoformat() for ts in table.column("timestamp").to_pylist()} == {part(key)[0]}
        total += table.num_rows
    assert total == pipeline.ledger.count() == 8
    assert_published_once(pipeline, 8)


def test_second_snapshot_with_nothing_new_writes_nothing(pipeline: Pipeline, settings: Settings,
                                                         feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-15": 4}))
    first = snapshot(pipeline.ledger, pipeline.snapshots)
    before = stored(settings, "**/*")
    again = snapshot(pipeline.ledger, pipeline.snapshots)
    assert (again.rows, again.files, again.manifests, again.cursor) == (0, [], [], first.cursor) == (0, [], [], "4")
    assert stored(settings, "**/*") == before  # no new manifest, no new file, nothing rewritten
    assert [m.number for m in manifests(pipeline.snapshots)] == [1]


def test_late_events_become_new_files(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-15": 4}))
    snapshot(pipeline.ledger, pipeline.snapshots)
    before = stored(settings, "**/*")
    feed(jsonl([event(timestamp="2026-10-12T08:00:00Z"), event(timestamp="2026-10-15T23:59:59Z")]))
    late = snapshot(pipeline.ledger, pipeline.snapshots)
    after = stored(settings, "**/*")
    assert {key: after[key] for key in before} == before  # same bytes, same mtime
    new = sorted(set(after) - set(before))
    files = [key for key in new if key.startswith("usage/")]
    assert new == ["_manifests/00000002.json", *sorted(map(rollup_key, files)), *files]  # each file with its rollup
    assert [part(key) for key in files] == [("2026-10-12", "00000002"), ("2026-10-15", "00000002")]
    assert (late.rows, late.manifests, late.cursor, len(late.files)) == (2, [2], "6", 2)
    assert [f.key for f in manifests(pipeline.snapshots)[1].files] == files
    assert_published_once(pipeline, 6)


class CrashingStore(LocalObjectStore):
    """The snapshot store of a process that dies just before its `crash_at`-th commit."""

    def __init__(self, root: Path, crash_at: int = 1) -> None:
        super().__init__(root)
        self.commits_left = crash_at - 1

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        if key.startswith("_manifests/"):
            if self.commits_left == 0:
                raise OSError("killed before the commit")
            self.commits_left -= 1
        return super().put(key, data, overwrite=overwrite)


class CountingStore(LocalObjectStore):
    """A local store that counts the manifests read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.manifests_read = 0

    def get(self, key: str) -> bytes | None:
        self.manifests_read += key.startswith("_manifests/")
        return super().get(key)


def test_a_snapshot_reads_only_the_latest_manifest(pipeline: Pipeline, feed: Feed) -> None:
    for day in range(1, 13):  # 24 manifests: chunks of one event
        feed(days_of_traffic({f"2026-10-{day:02d}": 2}))
        snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=1)
    root = local(pipeline.snapshots).path("")
    assert [m.number for m in manifests(pipeline.snapshots)] == list(range(1, 25))
    (root / "_manifests" / "notes.txt").write_text("not a manifest")
    counting = CountingStore(root)
    assert snapshot(pipeline.ledger, counting).rows == 0
    assert counting.manifests_read == 1
    feed(days_of_traffic({"2026-10-20": 3}))
    later = snapshot(pipeline.ledger, counting)
    assert (later.manifests, later.cursor, counting.manifests_read) == ([25], "27", 2)
    assert latest_manifest(counting) == manifests(counting)[-1]


def every_manifest(store: ObjectStore) -> list[PublishedFile]:
    """The oracle of published_files: every manifest read, in commit order, each file with the
    latest rollup a manifest names for it."""
    committed = manifests(store)
    later = {item.key: item for manifest in committed for item in manifest.rollups}
    return [file if file.key not in later else msgspec.structs.replace(
        file, rollup=later[file.key].rollup, rollup_layout=later[file.key].rollup_layout)
        for manifest in committed for file in manifest.files]


def test_readers_take_the_latest_checkpoint_and_the_manifests_after_it(
        pipeline: Pipeline, feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.lake import manifests as log
    from pipeline.stages.backfill import backfill_rollups

    monkeypatch.setattr(log, "CHECKPOINT_EVERY", 10)
    root = local(pipeline.snapshots).path("")
    feed(jsonl([event(timestamp=f"2026-10-{1 + n % 28:02d}T10:00:00Z", usage=usage(10 + n, n)) for n in range(37)]))
    snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=1)  # 37 manifests, checkpoint 30 (the one due)
    assert sorted(path.name for path in (root / "_checkpoints").iterdir()) == ["00000030.json"]
    for number in (10, 20):  # as a run at each of them would have written them
        assert log.write_checkpoint(pipeline.snapshots, number) == number
    counting = CountingStore(root)
    assert published_files(counting) == every_manifest(pipeline.snapshots) and len(published_files(counting)) == 37
    counting.manifests_read = 0
    assert published_files(counting, (date(2026, 10, 3), date(2026, 10, 5))) == [
        f for f in every_manifest(pipeline.snapshots) if date(2026, 10, 3) <= f.date < date(2026, 10, 5)]
    assert counting.manifests_read == 7  # manifests 31-37 (the checkpoint is not a manifest)

    # Rollups taken away from manifests 1-5 (as before rollups) and given back by a backfill:
    # checkpoint 30 still names the old ones, manifest 38 the new ones, and the newest wins.
    for path in sorted((root / "_manifests").glob("*.json"))[:5]:
        written = msgspec.json.decode(path.read_bytes())
        for file in written["files"]:
            file.update(rollup=None, rollup_layout=0)
        path.write_bytes(msgspec.json.encode(written))
    for checkpoint in (root / "_checkpoints").iterdir():
        checkpoint.unlink()
    assert log.write_checkpoint(pipeline.snapshots, 37) == 30
    assert sum(f.rollup is None for f in published_files(pipeline.snapshots)) == 5
    assert backfill_rollups(pipeline.snapshots).manifest == 38
    feed(jsonl([event(timestamp="2026-10-20T11:00:00Z", eventId=f"late-{n}") for n in range(2)]))
    snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=1)  # 39, 40 and checkpoint 40
    assert sorted(path.name for path in (root / "_checkpoints").iterdir()) == ["00000030.json", "00000040.json"]
    assert published_files(pipeline.snapshots) == every_manifest(pipeline.snapshots)
    assert all(f.rollup is not None for f in published_files(pipeline.snapshots)) and len(
        published_files(pipeline.snapshots)) == 39

    (root / "_checkpoints" / "00000040.json").write_bytes(b"{damaged")  # passed over: checkpoint 30, then 31-40
    counting.manifests_read = 0
    assert published_files(counting) == every_manifest(pipeline.snapshots)
    assert counting.manifests_read == 10


def test_only_the_two_newest_checkpoints_are_kept(pipeline: Pipeline, feed: Feed,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each checkpoint lists every file so far: kept all, they would grow with the square of the
    store's age. A reader whose checkpoint was deleted under it reads the one before."""
    from pipeline.lake import manifests as log

    monkeypatch.setattr(log, "CHECKPOINT_EVERY", 10)
    root = local(pipeline.snapshots).path("")
    for first, last in ((0, 12), (12, 25), (25, 38), (38, 52)):  # each run writes the checkpoint due as it ends
        feed(jsonl([event(timestamp=f"2026-10-{1 + n % 28:02d}T10:00:00Z") for n in range(first, last)]))
        snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=1)
    names = sorted(path.name for path in (root / "_checkpoints").iterdir())
    assert names == ["00000030.json", "00000050.json"]  # 10 and 20 deleted
    assert published_files(pipeline.snapshots) == every_manifest(pipeline.snapshots)
    assert len(every_manifest(pipeline.snapshots)) == 52
    (root / "_checkpoints" / "00000050.json").unlink()  # deleted under a reader: checkpoint 30 and 31-52
    counting = CountingStore(root)
    assert published_files(counting) == every_manifest(pipeline.snapshots) and counting.manifests_read == 22


@pytest.mark.parametrize(("crash_at", "chunk_rows", "resumed_manifests"), [
    (1, 1_000_000, [1]),  # nothing was committed
    (2, 4, [2]),  # the first chunk was committed; finished with another chunk size
])
def test_a_crash_before_the_commit_leaves_only_orphans(pipeline: Pipeline, settings: Settings, feed: Feed,
                                                       crash_at: int, chunk_rows: int,
                                                       resumed_manifests: list[int]) -> None:
    feed(days_of_traffic({"2026-10-14": 5, "2026-10-15": 5}))
    with pytest.raises(OSError, match="killed before the commit"):
        snapshot(pipeline.ledger, CrashingStore(local(pipeline.snapshots).path(""), crash_at), chunk_rows=chunk_rows)
    committed = {f.key for f in published_files(pipeline.snapshots)}
    orphans = set(stored(settings)) - committed
    assert orphans and {part(key)[1] for key in orphans} == {f"{crash_at:08d}"}
    assert len(committed) == (0 if crash_at == 1 else 1)  # 4 events of 2026-10-14
    assert len(usage_ids(pipeline)) == (crash_at - 1) * 4  # the orphans are on disk but nobody reads them
    feed(days_of_traffic({"2026-10-16": 2}))  # arrives in between
    resumed = snapshot(pipeline.ledger, pipeline.snapshots)
    assert (resumed.rows, resumed.manifests, resumed.cursor) == (12 - len(committed) * 4, resumed_manifests, "12")
    assert set(stored(settings)) >= orphans  # left where they are, still unread
    assert not orphans & {f.key for f in published_files(pipeline.snapshots)}
    assert_published_once(pipeline, 12)


class RacingStore(LocalObjectStore):
    """A store on which another snapshot run (over the same ledger) commits just before this one."""

    def __init__(self, root: Path, rival: Ledger) -> None:
        super().__init__(root)
        self.rival: Ledger | None = rival
        self.rival_result = SnapshotResult()

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        if key.startswith("_manifests/") and self.rival is not None:
            rival, self.rival = self.rival, None
            self.rival_result = snapshot(rival, LocalObjectStore(self.root))
        return super().put(key, data, overwrite=overwrite)


def test_a_run_that_loses_the_race_commits_nothing(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-14": 3, "2026-10-15": 3}))
    racing = RacingStore(local(pipeline.snapshots).path(""), pipeline.ledger)
    with pytest.raises(SnapshotConflict, match="manifest 1 was committed by another snapshot run"):
        snapshot(pipeline.ledger, racing)
    assert (racing.rival_result.rows, racing.rival_result.manifests) == (6, [1])
    [manifest] = manifests(pipeline.snapshots)
    assert sorted(f.key for f in manifest.files) == sorted(key.removeprefix(f"{pipeline.snapshots.url}/")
                                                           for key in racing.rival_result.files)
    assert len(stored(settings)) == 4  # the loser's two files are orphans
    assert_published_once(pipeline, 6)
    assert snapshot(pipeline.ledger, pipeline.snapshots).rows == 0


def test_temporary_files_are_never_read(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-15": 3}))
    snapshot(pipeline.ledger, pipeline.snapshots)
    [(key, (data, _))] = stored(settings).items()
    folder = (settings.home / "snapshots" / key).parent
    (folder / ".part-x.parquet.123.tmp").write_bytes(data)  # a valid copy: reading it would double rows
    (folder / ".part-y.parquet.456.tmp").write_bytes(b"half a fi")
    (folder / "part-99999999-stray.parquet").write_bytes(data)  # valid and visible, but in no manifest
    other = settings.home / "snapshots" / "usage" / "date=2026-10-16"
    other.mkdir()
    (other / ".part-z.parquet.789.tmp").write_bytes(data)
    assert usage_ids(pipeline) == ledger_ids(pipeline)
    assert pipeline.snapshots.list("usage") == sorted([key, f"{key.rsplit('/', 1)[0]}/part-99999999-stray.parquet"])


def test_chunk_rows_small_still_writes_every_row_once(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-13": 4, "2026-10-15": 6}))
    result = snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=3)
    assert (result.rows, result.manifests, result.cursor) == (10, [1, 2, 3, 4], "10")
    committed = manifests(pipeline.snapshots)
    assert [(m.number, m.cursor, sum(f.rows for f in m.files)) for m in committed] == [
        (1, "3", 3), (2, "6", 3), (3, "9", 3), (4, "10", 1)]
    assert {part(f.key)[1] for f in committed[1].files} == {"00000002"}
    assert len(committed[1].files) == 2  # events 4-6 span 2026-10-13 and 2026-10-15
    assert sorted(stored(settings)) == sorted(f.key for f in published_files(pipeline.snapshots))
    assert sum(pq.read_metadata(settings.home / "snapshots" / key).num_rows for key in stored(settings)) == 10
    assert_published_once(pipeline, 10)


def test_local_store_put_without_overwrite_keeps_the_object(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    assert store.put("a/b.bin", b"first", overwrite=False) is True
    assert store.put("a/b.bin", b"second", overwrite=False) is False
    assert store.get("a/b.bin") == b"first"
    assert store.put("a/b.bin", b"third", overwrite=True) is True
    assert store.get("a/b.bin") == b"third"
    assert sorted(p.name for p in (tmp_path / "store" / "a").iterdir()) == ["b.bin"]  # no temporaries left
    assert store.get("a/missing") is None
    assert store.list("a") == ["a/b.bin"]
    with pytest.raises(ValueError, match="leaves the store root"):
        store.put("../outside.bin", b"x", overwrite=True)
    assert not (tmp_path / "outside.bin").exists()


def test_every_field_round_trips_to_parquet(pipeline: Pipeline, write_file: WriteFile) -> None:
    full = event(eventId="evt-full", timestamp="2026-10-16T01:30:00.123456+02:00", subscriptionId="sub-full",
                 productId="product-x", callerAppId="app-x", callerTenantId="tenant-x", callerObjectId="obj-x",
                 costCenter="CC-X", deployment="dep-alpha", model="m-alpha", region="Sweden Central", stream=True,
                 statusCode=200, durationMs=1234, usage={**usage(2048, 300, cached=1024, reasoning=120),
                                                         "audioPromptTokens": 40, "audioCompletionTokens": 7,
                                                         "audioTokens": 3},
                 usageSource="stream", tags={"team": "search", "env": "prod"}, traceId="t-1",
                 serviceTier="flex", serviceTierSource="request", spillover=False)
    bare = event(eventId="evt-nulls", productId=None, callerAppId=None, callerTenantId=None, callerObjectId=None,
                 costCenter=None, model=None, region=None, tags=None, usageSource="none", statusCode=429,
                 durationMs=0)
    for omitted in ("usage", "apiId", "operationId", "region", "tags"):  # optional fields may be left out
        del bare[omitted]
    path = write_file("round-trip.jsonl", jsonl([full, bare]))
    started = datetime.now(UTC)
    ingest(json_lines(str(path)), pipeline.ledger, pipeline.counters, pipeline.dead_letters, pipeline.pricer)
    finished = datetime.now(UTC)
    snapshot(pipeline.ledger, pipeline.snapshots)
    result = open_warehouse(local(pipeline.snapshots)).connection.execute("SELECT * FROM usage ORDER BY event_id")
    names = [column[0] for column in result.description]
    got_full, got_bare = (dict(zip(names, row, strict=True)) for row in result.fetchall())
    ingested = got_full.pop("ingested_at")
    assert started <= ingested <= finished
    assert msgspec.json.decode(got_full.pop("extra")) == {"traceId": "t-1", "usage": {"audioTokens": 3}}
    no_event_hub = {"eventhub_partition": None, "eventhub_sequence_number": None, "eventhub_offset": None,
                    "eventhub_enqueued_time": None}
    assert got_full == {
        "event_id": "evt-full", "timestamp": datetime(2026, 10, 15, 23, 30, 0, 123456, UTC),
        "subscription_id": "sub-full", "product_id": "product-x", "api_id": "azure-openai",
        "operation_id": "chat-completions", "caller_app_id": "app-x", "caller_tenant_id": "tenant-x",
        "caller_object_id": "obj-x", "cost_center": "CC-X", "deployment": "dep-alpha", "model": "m-alpha",
        "region": "Sweden Central", "stream": True, "status_code": 200, "duration_ms": 1234,
        "usage_source": "stream", "prompt_tokens": 2048, "completion_tokens": 300, "total_tokens": 2348,
        "cached_tokens": 1024, "reasoning_tokens": 120, "tags": {"team": "search", "env": "prod"},
        "source": str(path), "source_position": "line 1", **no_event_hub,
        "schema_version": 1, "ledger_seq": 1, "date": date(2026, 10, 15),
        "service_tier": "flex", "service_tier_source": "request", "spillover": False,
        "audio_prompt_tokens": 40, "audio_completion_tokens": 7, "gateway_timeout": False,
        "usage_origin": "stream", "usage_state": "measured", "cached_tokens_unknown": False,  # the view's own
        "billing_tier": "flex", "spilled": False, "audio_classes": 3, "llm_mismatch": False}
    assert got_bare.pop("ingested_at") == ingested  # one batch, one ingestion time
    assert got_bare == {
        "event_id": "evt-nulls", "timestamp": datetime(2026, 10, 15, 12, 30, tzinfo=UTC),
        "subscription_id": "sub-a", "product_id": None, "api_id": None,
        "operation_id": None, "caller_app_id": None, "caller_tenant_id": None,
        "caller_object_id": None, "cost_center": None, "deployment": "chat-gpt4o", "model": None, "region": None,
        "stream": False, "status_code": 429, "duration_ms": 0, "usage_source": "none", "prompt_tokens": None,
        "completion_tokens": None, "total_tokens": None, "cached_tokens": None, "reasoning_tokens": None,
        "tags": None, "extra": None, "source": str(path), "source_position": "line 2", **no_event_hub,
        "schema_version": 1, "ledger_seq": 2, "date": date(2026, 10, 15), "service_tier": None,
        "service_tier_source": None, "spillover": None, "audio_prompt_tokens": None, "audio_completion_tokens": None,
        "gateway_timeout": False, "usage_origin": "none", "usage_state": "none", "cached_tokens_unknown": False,
        "billing_tier": "standard", "spilled": False, "audio_classes": 0, "llm_mismatch": False}


def test_event_hub_origin_round_trips_to_parquet(pipeline: Pipeline) -> None:
    enqueued = datetime(2026, 10, 15, 12, 30, 1, 250000, UTC)
    message = RawMessage(line(event(eventId="evt-hub")), "eventhub:ns-chargeback/apim-usage",
                         "partition 3, sequence 1234", "3", 1234, "8589934592", enqueued)
    result = ingest_batch([message], pipeline.ledger, pipeline.counters, pipeline.dead_letters, pipeline.pricer)
    assert (result.ingested, result.counted) == (1, 1)
    snapshot(pipeline.ledger, pipeline.snapshots)
    got = open_warehouse(local(pipeline.snapshots)).connection.execute(
        "SELECT source, source_position, eventhub_partition, eventhub_sequence_number, eventhub_offset, "
        "eventhub_enqueued_time FROM usage").fetchall()
    assert got == [("eventhub:ns-chargeback/apim-usage", "partition 3, sequence 1234", "3", 1234, "8589934592",
                    enqueued)]


def snapshot_one_event(home: Path) -> LocalObjectStore:
    opened = open_pipeline(Settings(home))
    try:
        ingest([RawMessage(jsonl([event()]).rstrip(b"\n"), "t", "line 1")], opened.ledger, opened.counters,
               opened.dead_letters, opened.pricer)
        snapshot(opened.ledger, opened.snapshots)
    finally:
        opened.close()
    store = open_store(Settings(home), SNAPSHOTS)  # as a reader opens it, from the settings
    assert isinstance(store, LocalObjectStore)
    assert store.root == (home / "snapshots").resolve()
    return store


@pytest.mark.parametrize("name", ["team [finance]", "team-*", "env=prod", "100% #1?"])
def test_snapshots_under_a_home_with_special_characters_are_read(tmp_path: Path, name: str) -> None:
    # CHARGEBACK_HOME is a user-chosen folder; `[`, `]`, `*`, `=`, `%`, `#` and `?` are legal in folder
    # names (and the store URL derived from the home must keep them). The warehouse must read this
    # home's files only (not fail, not also read a neighbour's) and the `usage` view must keep its
    # columns (no Hive partition made up from the folder name).
    snapshot_one_event(tmp_path / "team-a")
    store = snapshot_one_event(tmp_path / name)
    result = open_warehouse(store).connection.execute("SELECT * FROM usage")
    assert [column[0] for column in result.description] == [*USAGE_SCHEMA.names, "date", "usage_origin", "usage_state",
                                                                "cached_tokens_unknown", "billing_tier", "spilled",
                                                                "audio_classes", "llm_mismatch"]
    assert len(result.fetchall()) == 1


class AllocationRecordingStore(LocalObjectStore):
    """A local store that notes the bytes Arrow holds each time a usage file is written."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.held: list[int] = []

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        if key.startswith("usage/"):
            self.held.append(pa.total_allocated_bytes())
        return super().put(key, data, overwrite=overwrite)


def test_a_chunk_across_days_holds_one_days_copy_at_a_time(pipeline: Pipeline, feed: Feed, tmp_path: Path) -> None:
    feed(days_of_traffic({f"2026-10-{day:02d}": 300 for day in range(1, 11)}))  # 10 days, one chunk
    chunk = pipeline.ledger.changes(None, 10_000).table
    chunk_bytes = chunk.get_total_buffer_size()
    del chunk
    before = pa.total_allocated_bytes()
    store = AllocationRecordingStore(tmp_path / "store")
    assert snapshot(pipeline.ledger, store).rows == 3_000
    assert len(store.held) == 10
    # The chunk itself, the day being written and the one before it: never every day's copy at once.
    assert max(store.held) - before < 1.5 * chunk_bytes, (max(store.held) - before, chunk_bytes)


def test_a_large_day_is_written_as_one_file_per_core(pipeline: Pipeline, feed: Feed) -> None:
    from pipeline.stages.snapshot import _cores

    feed(days_of_traffic({"2026-10-14": 150, "2026-10-15": 450}))  # with part_rows=100: 1 and 2+ parts
    result = snapshot(pipeline.ledger, pipeline.snapshots, part_rows=100)
    [manifest] = manifests(pipeline.snapshots)
    by_day = {day: [f for f in manifest.files if f.date == date.fromisoformat(day)]
              for day in ("2026-10-14", "2026-10-15")}
    assert [len(by_day["2026-10-14"]), len(by_day["2026-10-15"])] == [1, min(_cores(), 4)]
    assert len({f.key for f in manifest.files}) == len(manifest.files) == len(result.files)
    assert [f.rows for f in by_day["2026-10-14"]] == [150] and sum(f.rows for f in by_day["2026-10-15"]) == 450
    # The parts in the manifest's order hold the day's rows in the ledger's order, each row once.
    root = local(pipeline.snapshots).path("")
    written = [str(v) for f in manifest.files for v in pq.read_table(root / f.key).column("event_id").to_pylist()]
    assert written == [str(v) for v in pipeline.ledger.changes(None, 10_000).table.column("event_id").to_pylist()]
    assert_published_once(pipeline, 600)
