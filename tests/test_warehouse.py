"""The warehouse reads exactly the committed files of a local store with DuckDB's own Parquet
scan, whatever the folder is called: the same rows and types as reading them through Arrow."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.domain.corrections import Corrections, Kind, correction
from pipeline.lake import snapshot_scans
from pipeline.lake.manifests import SNAPSHOT_LAYOUT, published_files
from pipeline.lake.usage import USAGE_SCHEMA
from pipeline.lake.views import NOT_VOIDED
from pipeline.lake.warehouse import Limits, open_warehouse, register_corrections
from pipeline.ports import UserError
from tests.test_snapshot import snapshot_one_event

ALL = "SELECT * FROM usage ORDER BY event_id"


def rows_and_types(store: LocalObjectStore) -> tuple[list[tuple[object, ...]], list[tuple[str, str]]]:
    result = open_warehouse(store, now=datetime(2026, 10, 15, 13, tzinfo=UTC)).connection.execute(ALL)
    return result.fetchall(), [(column[0], str(column[1])) for column in result.description]


def snapshotted(home: Path, bodies: list[dict[str, object]]) -> LocalObjectStore:
    """The snapshots of a home that ingested these events, one line each."""
    from pipeline.app import open_pipeline
    from pipeline.domain.decode import RawMessage
    from pipeline.settings import Settings
    from pipeline.stages.ingest import ingest
    from pipeline.stages.snapshot import snapshot
    from tests.factories import jsonl

    opened = open_pipeline(Settings(home))
    try:
        ingest([RawMessage(jsonl([body]).rstrip(b"\n"), "t", f"line {n}") for n, body in enumerate(bodies)],
               opened.ledger, opened.counters, opened.dead_letters, opened.pricer)
        snapshot(opened.ledger, opened.snapshots)
    finally:
        opened.close()
    return LocalObjectStore(home / "snapshots")


def through_arrow(store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[object, ...]],
                                                                                        list[tuple[str, str]]]:
    with monkeypatch.context() as patch:
        patch.setattr(snapshot_scans, "read_local_files", lambda *args: None)
        return rows_and_types(store)


# `abc` is what `a[b]c` matches as a pattern, `team-a` what `team-*` matches (each neighbour
# holds a copy of the same files); `x\[y]` is a name
# DuckDB's glob cannot be made to match literally (the Arrow reader takes it); `date=1999-01-01`
# would be a Hive partition of the whole path.
@pytest.mark.parametrize(("name", "neighbour"), [
    ("a[b]c", "abc"), ("team-*", "team-a"), ("100% #1?", "100% #12"), ("**", "x"), ("{a,b}", "a"),
    ("x\\[y]", "x\\y"), ("date=1999-01-01", "date=1999-01-02"), ("env=prod, it's", "env=prod"),
])
def test_a_home_whose_name_is_a_pattern_reads_its_own_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            name: str, neighbour: str) -> None:
    store = snapshot_one_event(tmp_path / name)
    shutil.copytree(tmp_path / name, tmp_path / neighbour)  # the same file names, one folder over
    [file] = published_files(store)
    copy = tmp_path / neighbour / store.root.relative_to(tmp_path / name) / file.key
    table = pq.read_table(copy)
    pq.write_table(table.set_column(0, "event_id", pa.array(["neighbour's"])), copy)
    rows, types = rows_and_types(store)
    assert [column for column, _ in types] == [*USAGE_SCHEMA.names, "date", "usage_origin", "usage_state",
                                                "cached_tokens_unknown", "billing_tier", "spilled", "audio_classes",
                                                "llm_mismatch"]
    assert len(rows) == 1
    assert rows[0][0] != "neighbour's"
    assert rows[0][len(USAGE_SCHEMA)] == date(2026, 10, 15)  # the day of the committed key
    assert (rows, types) == through_arrow(store, monkeypatch)
    assert file.layout == SNAPSHOT_LAYOUT  # its manifest says it has `gateway_timeout`: no tags read for it


def test_files_of_an_older_schema_read_with_their_missing_columns_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = snapshot_one_event(tmp_path / "home")
    [file] = published_files(store)
    path = store.root / file.key
    pq.write_table(pq.read_table(path).drop_columns(["reasoning_tokens", "tags", "ledger_seq"]), path)
    rows, types = rows_and_types(store)
    names = [column for column, _ in types]
    assert [rows[0][names.index(c)] for c in ("reasoning_tokens", "tags", "ledger_seq")] == [None, None, None]
    assert (rows, types) == through_arrow(store, monkeypatch)


def test_not_voided_leaves_out_exactly_the_voided_events(tmp_path: Path) -> None:
    store = snapshot_one_event(tmp_path / "home")
    connection = open_warehouse(store).connection
    count = f"SELECT count(*) FROM usage u WHERE {NOT_VOIDED}"
    assert connection.execute(count).fetchall() == [(1,)]
    [(event_id,)] = connection.execute("SELECT event_id FROM usage").fetchall()
    at = datetime(2026, 11, 1, tzinfo=UTC)
    register_corrections(connection, Corrections((
        correction(kind=Kind.VOID, reason="test", by="t", at=at, event_ids=(event_id,)),)))
    assert connection.execute(count).fetchall() == [(0,)]
    register_corrections(connection, Corrections((
        correction(kind=Kind.VOID, reason="other", by="t", at=at, event_ids=("evt-other",)),)))
    assert connection.execute(count).fetchall() == [(1,)]
    register_corrections(connection, Corrections())
    assert connection.execute(count).fetchall() == [(1,)]


def test_streamed_events_wait_for_their_usage_in_the_files_of_recent_days_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The files of days before the cutoff's are scanned without `timestamp` (every event in them
    # is older than the cutoff); the others test each event's time. Same rows as through Arrow.
    from tests.factories import event

    def streamed(at: str, event_id: str) -> dict[str, object]:
        return event(eventId=event_id, timestamp=at, stream=True, usage=None, usageSource="stream")

    bodies = [streamed("2026-10-14T23:59:59Z", "a-settled-day"), streamed("2026-10-15T11:00:00Z", "b-expired"),
              streamed("2026-10-15T13:00:00Z", "c-pending"), event(eventId="d-measured")]
    store = snapshotted(tmp_path, bodies)
    now = datetime(2026, 10, 16, 12, 30, tzinfo=UTC)  # the usage window ends at 2026-10-15 12:30

    def states(connection: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
        query = "SELECT event_id, date, usage_origin, usage_state FROM usage ORDER BY event_id"
        return connection.execute(query).fetchall()

    local = open_warehouse(store, now=now).connection
    assert states(local) == [("a-settled-day", date(2026, 10, 14), "none", "expired"),
                             ("b-expired", date(2026, 10, 15), "none", "expired"),
                             ("c-pending", date(2026, 10, 15), "none", "pending"),
                             ("d-measured", date(2026, 10, 15), "response", "measured")]
    assert local.execute("SELECT count(*) FROM usage_events").fetchall() == [(4,)]
    with monkeypatch.context() as patch:
        patch.setattr(snapshot_scans, "read_local_files", lambda *args: None)
        assert states(open_warehouse(store, now=now).connection) == states(local)


def test_duckdb_spills_under_an_absolute_folder_and_takes_the_memory_limit(tmp_path: Path) -> None:
    store = snapshot_one_event(tmp_path / "home")
    default = open_warehouse(store).connection
    [(folder,)] = default.execute("SELECT current_setting('temp_directory')").fetchall()
    assert Path(folder).is_absolute() and Path(folder).name == "chargeback-duckdb"  # never a relative .tmp
    limited = open_warehouse(store, limits=Limits(tmp_path / "spill", "256MB")).connection
    assert limited.execute("SELECT current_setting('temp_directory'), current_setting('memory_limit')").fetchall() == [
        (str(tmp_path / "spill"), "244.1 MiB")]
    with pytest.raises(UserError, match="CHARGEBACK_DUCKDB_MEMORY_LIMIT 'lots': Parser Error"):
        open_warehouse(store, limits=Limits(tmp_path / "spill", "lots"))


def test_a_gateway_timeout_is_timed_out_in_files_written_with_and_before_the_flag_column(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `usage_state` reads `gateway_timeout`, not the `tags` map; a file written before that column
    # existed gets it from its tags (in its own scan), so both days say timed-out, as through Arrow.
    from tests.factories import event

    tags = {"apimErrorSource": "forward-request", "apimErrorReason": "Timeout", "chargebackError": "gateway-timeout"}
    bodies = [event(eventId=f"timeout-{day}", timestamp=f"2026-10-{day}T10:00:00Z", usage=None, usageSource="none",
                    statusCode=500, tags=tags) for day in (14, 15)]
    bodies += [event(eventId="other-error", timestamp="2026-10-15T11:00:00Z", usage=None, usageSource="none",
                     statusCode=500, tags={**tags, "chargebackError": "something-else"})]
    store = snapshotted(tmp_path, bodies)
    [before, _] = sorted(published_files(store), key=lambda file: file.date)
    path = store.root / before.key
    pq.write_table(pq.read_table(path).drop_columns(["gateway_timeout"]), path)
    # ... as a snapshot of before wrote it: its manifest's files have no `layout`
    [manifest] = (store.root / "_manifests").glob("*.json")
    written = msgspec.json.decode(manifest.read_bytes())
    written["files"] = [{k: v for k, v in f.items() if k != "layout"} if f["key"] == before.key else f
                        for f in written["files"]]
    manifest.write_bytes(msgspec.json.encode(written))
    query = "SELECT event_id, usage_state, gateway_timeout FROM usage ORDER BY event_id"
    expected = [("other-error", "none", False), ("timeout-14", "timed-out", True), ("timeout-15", "timed-out", True)]
    assert open_warehouse(store).connection.execute(query).fetchall() == expected
    with monkeypatch.context() as patch:
        patch.setattr(snapshot_scans, "read_local_files", lambda *args: None)
        assert open_warehouse(store).connection.execute(query).fetchall() == expected
