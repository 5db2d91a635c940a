"""Snapshot stage and the local object store: real Parquet files, read back with pyarrow and DuckDB."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from pipeline.adapters.local_store import LocalObjectStore
from pipeline.bootstrap import Pipeline, open_pipeline
from pipeline.domain.decode import RawMessage
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest
from pipeline.stages.snapshot import STATE_KEY, SnapshotState, load_state, snapshot
from pipeline.usage_schema import USAGE_SCHEMA
from pipeline.warehouse import open_warehouse
from tests.conftest import Feed
from tests.factories import event, jsonl, usage


def days_of_traffic(days: dict[str, int]) -> bytes:
    return jsonl([event(timestamp=f"{day}T{n % 24:02d}:15:00Z", usage=usage(10 + n, n))
                  for day, count in days.items() for n in range(count)])


def parquet_files(settings: Settings) -> dict[str, tuple[bytes, int]]:
    """Every published file under usage/, with its bytes and mtime."""
    root = settings.snapshots_root
    return {path.relative_to(root).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(root.glob("usage/date=*/part-*.parquet"))}


def usage_ids(pipeline: Pipeline) -> list[str]:
    rows = open_warehouse(pipeline.snapshots).connection.execute("SELECT event_id FROM usage").fetchall()
    return sorted(str(row[0]) for row in rows)


def ledger_ids(pipeline: Pipeline) -> list[str]:
    batches = pipeline.ledger.read(0, pipeline.ledger.head(), 10_000)
    return sorted(str(v) for batch in batches for v in batch.column("event_id").to_pylist())


def test_files_are_partitioned_typed_and_compressed(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-14": 3, "2026-10-15": 5}))
    result = snapshot(pipeline.ledger, pipeline.snapshots)
    files = parquet_files(settings)
    assert sorted(files) == ["usage/date=2026-10-14/part-000000000001-000000000008.parquet",
                             "usage/date=2026-10-15/part-000000000001-000000000008.parquet"]
    assert sorted(result.files) == [f"{pipeline.snapshots.url}/{key}" for key in sorted(files)]
    assert (result.rows, result.watermark_from, result.watermark_to) == (8, 0, 8)
    total = 0
    for key in files:
        path = settings.snapshots_root / key
        schema = pq.read_schema(path)
        assert schema.equals(USAGE_SCHEMA)
        assert schema.metadata[b"chargeback.table"] == b"usage"
        metadata = pq.ParquetFile(path).metadata
        codecs = {metadata.row_group(g).column(c).compression
                  for g in range(metadata.num_row_groups) for c in range(metadata.num_columns)}
        assert codecs == {"ZSTD"}
        table = pq.read_table(path)
        day = key.split("/")[1].removeprefix("date=")
        assert {ts.date().isoformat() for ts in table.column("timestamp").to_pylist()} == {day}
        total += table.num_rows
    assert total == pipeline.ledger.count() == 8
    assert usage_ids(pipeline) == ledger_ids(pipeline)


def test_second_snapshot_with_nothing_new_writes_nothing(pipeline: Pipeline, settings: Settings,
                                                         feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-15": 4}))
    snapshot(pipeline.ledger, pipeline.snapshots)
    before = parquet_files(settings)
    state = (settings.snapshots_root / STATE_KEY).read_bytes()
    again = snapshot(pipeline.ledger, pipeline.snapshots)
    assert (again.rows, again.files, again.already_published) == (0, [], 0)
    assert parquet_files(settings) == before
    assert (settings.snapshots_root / STATE_KEY).read_bytes() == state
    assert load_state(pipeline.snapshots) == SnapshotState(watermark=4)


def test_late_events_become_new_files(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-15": 4}))
    snapshot(pipeline.ledger, pipeline.snapshots)
    before = parquet_files(settings)
    feed(jsonl([event(timestamp="2026-10-12T08:00:00Z"), event(timestamp="2026-10-15T23:59:59Z")]))
    late = snapshot(pipeline.ledger, pipeline.snapshots)
    after = parquet_files(settings)
    assert {key: after[key] for key in before} == before  # same bytes, same mtime
    assert sorted(set(after) - set(before)) == [
        "usage/date=2026-10-12/part-000000000005-000000000006.parquet",
        "usage/date=2026-10-15/part-000000000005-000000000006.parquet"]
    assert (late.rows, late.watermark_from, late.watermark_to, len(late.files)) == (2, 4, 6, 2)
    assert usage_ids(pipeline) == ledger_ids(pipeline)


def test_resume_after_a_crash_finishes_the_pending_run(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-14": 5, "2026-10-15": 5}))
    first = snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=4)
    published = parquet_files(settings)
    assert len(first.files) == len(published) == 4  # chunks (0,4] (4,8] (8,10]; (4,8] spans both days
    lost = sorted(published)[1]
    (settings.snapshots_root / lost).unlink()
    pipeline.snapshots.put(STATE_KEY, b'{"watermark":0,"pending_upto":10}', overwrite=True)
    feed(days_of_traffic({"2026-10-16": 2}))  # arrives while the run is pending
    resumed = snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=4)
    assert resumed.files == [f"{pipeline.snapshots.url}/{lost}"]
    assert resumed.already_published == 3
    assert resumed.watermark_to == 10
    after = parquet_files(settings)
    assert after[lost][0] == published[lost][0]  # the very same bytes again
    assert {key: after[key] for key in published if key != lost} == {
        key: value for key, value in published.items() if key != lost}
    assert load_state(pipeline.snapshots) == SnapshotState(watermark=10)
    rest = snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=4)
    assert (rest.rows, rest.watermark_to) == (2, 12)
    ids = usage_ids(pipeline)
    assert ids == ledger_ids(pipeline)
    assert len(ids) == len(set(ids)) == 12


def test_temporary_files_are_never_read(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-15": 3}))
    snapshot(pipeline.ledger, pipeline.snapshots)
    [(key, (data, _))] = parquet_files(settings).items()
    folder = (settings.snapshots_root / key).parent
    (folder / ".part-x.parquet.123.tmp").write_bytes(data)  # a valid copy: reading it would double rows
    (folder / ".part-y.parquet.456.tmp").write_bytes(b"half a fi")
    other = settings.snapshots_root / "usage" / "date=2026-10-16"
    other.mkdir()
    (other / ".part-z.parquet.789.tmp").write_bytes(data)
    assert usage_ids(pipeline) == ledger_ids(pipeline)
    assert pipeline.snapshots.list("usage") == [key]


def test_chunk_rows_small_still_writes_every_row_once(pipeline: Pipeline, settings: Settings, feed: Feed) -> None:
    feed(days_of_traffic({"2026-10-13": 4, "2026-10-15": 6}))
    result = snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=3)
    assert result.rows == 10
    names = {key.rsplit("/", 1)[1] for key in parquet_files(settings)}
    assert names == {f"part-{low + 1:012d}-{min(low + 3, 10):012d}.parquet" for low in range(0, 10, 3)}
    assert sum(pq.read_metadata(settings.snapshots_root / key).num_rows for key in parquet_files(settings)) == 10
    ids = usage_ids(pipeline)
    assert ids == ledger_ids(pipeline) and len(set(ids)) == 10


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


def test_every_field_round_trips_to_parquet(pipeline: Pipeline, feed: Feed) -> None:
    full = event(eventId="evt-full", timestamp="2026-10-16T01:30:00.123456+02:00", subscriptionId="sub-full",
                 productId="product-x", callerAppId="app-x", callerTenantId="tenant-x", callerObjectId="obj-x",
                 costCenter="CC-X", deployment="dep-alpha", model="m-alpha", region="Sweden Central", stream=True,
                 statusCode=200, durationMs=1234, usage={**usage(2048, 300, cached=1024, reasoning=120),
                                                         "audioTokens": 3},
                 usageSource="stream", tags={"team": "search", "env": "prod"}, traceId="t-1")
    bare = event(eventId="evt-nulls", productId=None, callerAppId=None, callerTenantId=None, callerObjectId=None,
                 costCenter=None, model=None, region=None, tags=None, usageSource="none", statusCode=429,
                 durationMs=0)
    for omitted in ("usage", "apiId", "operationId", "region", "tags"):  # optional fields may be left out
        del bare[omitted]
    started = datetime.now(UTC)
    feed(jsonl([full, bare]))
    finished = datetime.now(UTC)
    snapshot(pipeline.ledger, pipeline.snapshots)
    result = open_warehouse(pipeline.snapshots).connection.execute("SELECT * FROM usage ORDER BY event_id")
    names = [column[0] for column in result.description]
    got_full, got_bare = (dict(zip(names, row, strict=True)) for row in result.fetchall())
    ingested = got_full.pop("ingested_at")
    assert started <= ingested <= finished
    assert msgspec.json.decode(got_full.pop("extra")) == {"traceId": "t-1", "usage": {"audioTokens": 3}}
    assert got_full == {
        "event_id": "evt-full", "timestamp": datetime(2026, 10, 15, 23, 30, 0, 123456, UTC),
        "subscription_id": "sub-full", "product_id": "product-x", "api_id": "azure-openai",
        "operation_id": "chat-completions", "caller_app_id": "app-x", "caller_tenant_id": "tenant-x",
        "caller_object_id": "obj-x", "cost_center": "CC-X", "deployment": "dep-alpha", "model": "m-alpha",
        "region": "Sweden Central", "stream": True, "status_code": 200, "duration_ms": 1234,
        "usage_source": "stream", "prompt_tokens": 2048, "completion_tokens": 300, "total_tokens": 2348,
        "cached_tokens": 1024, "reasoning_tokens": 120, "tags": {"team": "search", "env": "prod"},
        "schema_version": 1, "ledger_seq": 1, "date": date(2026, 10, 15)}
    assert got_bare.pop("ingested_at") == ingested  # one batch, one ingestion time
    assert got_bare == {
        "event_id": "evt-nulls", "timestamp": datetime(2026, 10, 15, 12, 30, tzinfo=UTC),
        "subscription_id": "sub-a", "product_id": None, "api_id": None,
        "operation_id": None, "caller_app_id": None, "caller_tenant_id": None,
        "caller_object_id": None, "cost_center": None, "deployment": "chat-gpt4o", "model": None, "region": None,
        "stream": False, "status_code": 429, "duration_ms": 0, "usage_source": "none", "prompt_tokens": None,
        "completion_tokens": None, "total_tokens": None, "cached_tokens": None, "reasoning_tokens": None,
        "tags": None, "extra": None, "schema_version": 1, "ledger_seq": 2, "date": date(2026, 10, 15)}


def snapshot_one_event(home: Path) -> LocalObjectStore:
    opened = open_pipeline(Settings(home))
    try:
        ingest([RawMessage(jsonl([event()]).rstrip(b"\n"), "t", "line 1")], opened.ledger, opened.counters,
               opened.dead_letters)
        snapshot(opened.ledger, opened.snapshots)
        return opened.snapshots
    finally:
        opened.close()


@pytest.mark.parametrize("name", ["team [finance]", "team-*", "env=prod"])
def test_snapshots_under_a_home_with_special_characters_are_read(tmp_path: Path, name: str) -> None:
    # CHARGEBACK_HOME is a user-chosen folder; `[`, `]`, `*` and `=` are legal in folder names. The
    # warehouse must read this home's files only (not fail, not also read a neighbour's) and the
    # `usage` view must keep its columns (no Hive partition made up from the folder name).
    snapshot_one_event(tmp_path / "team-a")
    store = snapshot_one_event(tmp_path / name)
    result = open_warehouse(store).connection.execute("SELECT * FROM usage")
    assert [column[0] for column in result.description] == [*USAGE_SCHEMA.names, "date"]
    assert len(result.fetchall()) == 1


def test_resume_with_another_chunk_size_publishes_no_duplicates(pipeline: Pipeline, feed: Feed) -> None:
    # The intent is the cursor range; the chunk size is not recorded with it. A run that died
    # with chunk_rows=4 and is finished by one with the default chunk size (a restart with other
    # settings, or a new release) must still publish each event exactly once.
    feed(days_of_traffic({"2026-10-14": 5, "2026-10-15": 5}))
    snapshot(pipeline.ledger, pipeline.snapshots, chunk_rows=4)
    pipeline.snapshots.put(STATE_KEY, b'{"watermark":0,"pending_upto":10}', overwrite=True)
    snapshot(pipeline.ledger, pipeline.snapshots)
    ids = usage_ids(pipeline)
    assert len(ids) == len(set(ids)) == 10
