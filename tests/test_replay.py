"""`chargeback replay` on real files: Event Hubs Capture Avro files written with fastavro in the
exact Capture schema and default blob layout (in a folder, and in Azurite), the dead-letter store
after a fix, JSON-lines files; real SQLite ledger and counters; and --dry-run."""

from __future__ import annotations

import gzip
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import msgspec
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner, Result

from pipeline.adapters.azure.capture import enqueued_time
from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import open_ledger, open_pipeline, open_sources
from pipeline.domain.decode import RawMessage
from pipeline.entrypoints.cli import main
from pipeline.inputs.event_files import json_lines
from pipeline.lake.dead_letters import dead_letter_messages
from pipeline.ports import SourceError
from pipeline.settings import HOME_VARIABLE, Settings
from pipeline.stages.ingest import ingest
from pipeline.stages.replay import Delta, dry_run
from tests.conftest import ReferenceFiles, WriteFile
from tests.factories import CAPTURE_SCHEMA, event, jsonl, line, usage

SOURCE = "capture:ns-usage/apim-usage"
DAY, NEXT_DAY = datetime(2026, 10, 15, 12, tzinfo=UTC), datetime(2026, 10, 16, 9, tzinfo=UTC)


def at(base: datetime, minutes: float) -> datetime:
    return base + timedelta(minutes=minutes)


def capture_time(moment: datetime) -> str:
    """.NET's invariant `M/d/yyyy h:mm:ss tt`, as in real Capture files."""
    return f"{moment.month}/{moment.day}/{moment.year} {moment.hour % 12 or 12}:{moment:%M:%S} {moment:%p}"


def good(seq: int, event_id: str, enqueued: datetime) -> tuple[int, datetime, bytes | None]:
    """A Capture record of a valid event sent a second before it was enqueued."""
    return seq, enqueued, line(event(eventId=event_id, deployment="dep-alpha", model=None, usage=usage(1000, 200),
                                     timestamp=(enqueued - timedelta(seconds=1)).isoformat()))


def write_capture(root: Path, partition: str, window: datetime, records: list[tuple[int, datetime, bytes | None]],
                  codec: str = "null") -> Path:
    path = root / "ns-usage" / "apim-usage" / partition / f"{window:%Y/%m/%d/%H/%M/%S}.avro"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        fastavro.writer(file, CAPTURE_SCHEMA, [
            {"SequenceNumber": seq, "Offset": str(4096 * seq), "EnqueuedTimeUtc": capture_time(enqueued),
             "SystemProperties": {"x-opt-sequence-number": seq}, "Properties": {"origin": "apim", "none": None},
             "Body": data} for seq, enqueued, data in records], codec=codec)
    return path


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """Three partitions, several windows: 9 records, 7 good events c-0..c-6, a null Body, a
    malformed body, and an empty file."""
    root = tmp_path / "capture"
    write_capture(root, "0", DAY, [good(10, "c-0", at(DAY, 1 / 6)), good(11, "c-1", at(DAY, 1)),
                                   good(12, "c-2", at(DAY, 2.5))])
    write_capture(root, "0", at(DAY, 5), [good(13, "c-3", at(DAY, 5.2)), (14, at(DAY, 6), None)], codec="deflate")
    write_capture(root, "1", DAY, [good(20, "c-4", at(DAY, 0.7)), (21, at(DAY, 3), b'{"schemaVersion": 1, "ev')])
    write_capture(root, "1", NEXT_DAY, [good(22, "c-5", at(NEXT_DAY, 0.5)), good(23, "c-6", at(NEXT_DAY, 4))])
    write_capture(root, "2", at(DAY, 5), [])  # Capture writes empty files when idle
    return root


@pytest.fixture
def env(home: Path, reference_files: ReferenceFiles, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, path in (("PRICES", reference_files.prices), ("DEPLOYMENTS", reference_files.deployments),
                       ("COST_CENTERS", reference_files.cost_centers)):
        monkeypatch.setenv(f"CHARGEBACK_{name}", str(path))
    return home


def run(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def out(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def state() -> tuple[int, list[Any]]:
    with_pipeline = open_pipeline(Settings.from_env())
    try:
        return with_pipeline.ledger.count(), with_pipeline.counters.month_to_date("2026-10")
    finally:
        with_pipeline.close()


def usage_rows(home: Path) -> list[dict[str, Any]]:
    table = ds.dataset(home / "snapshots" / "usage", format="parquet", partitioning="hive").to_table()
    rows = sorted(table.drop_columns(["ingested_at", "ledger_seq"]).to_pylist(), key=lambda row: row["event_id"])
    return [{**row, "tags": None if row["tags"] is None else dict(row["tags"])} for row in rows]


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("text", "expected"), [
    ("11/26/2026 5:40:32 AM", datetime(2026, 11, 26, 5, 40, 32, tzinfo=UTC)),
    ("11/26/2026 12:00:01 AM", datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC)),
    ("1/2/2026 12:30:00 PM", datetime(2026, 1, 2, 12, 30, tzinfo=UTC)),
    ("11/16/2016 4:44:11 pm", datetime(2016, 11, 16, 16, 44, 11, tzinfo=UTC)),
    ("11/26/2026 17:40:32.1234567", datetime(2026, 11, 26, 17, 40, 32, 123456, tzinfo=UTC)),
    ("2018-06-11T00:00:08.2250000Z", datetime(2018, 6, 11, 0, 0, 8, 225000, tzinfo=UTC)),
    ("2026-11-26T06:40:32+01:00", datetime(2026, 11, 26, 5, 40, 32, tzinfo=UTC)),
    ("2026-11-26 05:40:32", datetime(2026, 11, 26, 5, 40, 32, tzinfo=UTC)),
])
def test_enqueued_time_formats(text: str, expected: datetime) -> None:
    assert enqueued_time(text) == expected


@pytest.mark.parametrize("text", ["26/11/2026 5:40:32 AM", "11/26/2026 13:40:32 PM", "yesterday", ""])
def test_enqueued_time_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(SourceError, match="EnqueuedTimeUtc"):
        enqueued_time(text, "f.avro")


def test_capture_filters_by_time_and_partition_then_all(env: Path, capture: Path, write_file: WriteFile) -> None:
    window = ["--from", "2026-10-15T12:01:00Z", "--to", "2026-10-15T12:06:00"]  # no offset: UTC
    assert out(run("replay", str(capture), *window, "--partition", "0")) == [
        f"{capture}: received 3: ingested 3, duplicates 0, dead-lettered 0",  # c-1, c-2, c-3; 12:06 excluded
        "total: received 3: ingested 3, duplicates 0, dead-lettered 0"]
    assert out(run("replay", str(capture), *window, "--partition", "1", "--partition", "2"))[:2] == [
        f"{capture}: received 1: ingested 0, duplicates 0, dead-lettered 1", "  dead letter: not-json x1"]
    extra = write_file("late.jsonl", jsonl([event(eventId="c-0", deployment="dep-alpha", model=None),
                                           event(eventId="j-1", deployment="dep-alpha", model=None)]))
    assert out(run("replay", str(capture), str(extra)))[:5] == [
        f"{capture}: received 9: ingested 4, duplicates 3, dead-lettered 2",
        "  dead letter: empty x1", "  dead letter: not-json x1",
        f"{extra}: received 2: ingested 1, duplicates 1, dead-lettered 0",
        "total: received 11: ingested 5, duplicates 4, dead-lettered 2"]
    assert state()[0] == 8


def test_replaying_the_same_capture_twice_changes_nothing(env: Path, capture: Path) -> None:
    assert out(run("replay", str(capture)))[0] == f"{capture}: received 9: ingested 7, duplicates 0, dead-lettered 2"
    assert out(run("snapshot"))[0].startswith("snapshot: 7 events -> 2 new Parquet file(s)")
    assert run("report", "--month", "2026-10").exit_code == 0
    report = (env / "reports" / "chargeback-2026-10.csv").read_bytes()
    before, snapshots = state(), files(env / "snapshots")
    assert out(run("replay", str(capture)))[0] == f"{capture}: received 9: ingested 0, duplicates 7, dead-lettered 2"
    assert out(run("snapshot")) == ["snapshot: nothing new"]
    assert run("report", "--month", "2026-10").exit_code == 0
    assert (state(), files(env / "snapshots")) == (before, snapshots)
    assert (env / "reports" / "chargeback-2026-10.csv").read_bytes() == report
    assert before[0] == 7 and [(row.subscription_id, row.requests) for row in before[1]] == [("sub-a", 7)]
    rows = {row["event_id"]: row for row in usage_rows(env)}
    origin = ("source", "source_position", "eventhub_partition", "eventhub_sequence_number", "eventhub_offset",
              "eventhub_enqueued_time")
    assert [rows["c-3"][name] for name in origin] == [SOURCE, "partition 0, sequence 13", "0", 13, str(4096 * 13),
                                                      datetime(2026, 10, 15, 12, 5, 12, tzinfo=UTC)]
    assert [rows["c-6"][name] for name in origin] == [SOURCE, "partition 1, sequence 23", "1", 23, str(4096 * 23),
                                                      at(NEXT_DAY, 4)]
    # The null Body was dead-lettered with its origin, which a dead-letter replay gets back.
    kept = list(dead_letter_messages(LocalObjectStore(env / "dead-letters")))
    assert RawMessage(b"", SOURCE, "partition 0, sequence 14", "0", 14) in kept and len(kept) == 4


def test_dead_letters_are_accepted_after_the_fix_then_duplicates(env: Path, write_file: WriteFile) -> None:
    # A consumer whose clock ran two weeks behind took fresh events for ones more than 7 days ahead.
    path = write_file("events.jsonl", jsonl([event(eventId="late-1", deployment="dep-alpha", model=None,
                                                   timestamp="2026-10-15T12:30:00Z")]) + b"not json\n")
    with_pipeline = open_pipeline(Settings.from_env())
    try:
        result = ingest(json_lines(str(path)), with_pipeline.ledger, with_pipeline.counters,
                        with_pipeline.dead_letters, with_pipeline.pricer, now=datetime(2026, 10, 1, tzinfo=UTC))
    finally:
        with_pipeline.close()
    assert result.reasons == {"timestamp-out-of-range": 1, "not-json": 1}
    letters = files(env / "dead-letters")
    assert out(run("replay", "dead-letters"))[:3] == [  # the clock is right now
        "dead-letters: received 2: ingested 1, duplicates 0, dead-lettered 1 (still rejected: left in the "
        "dead-letter store)", "  dead letter: not-json x1", "total: received 2: ingested 1, duplicates 0, "
        "dead-lettered 1"]
    assert out(run("replay", "dead-letters"))[0].startswith(
        "dead-letters: received 2: ingested 0, duplicates 1, dead-lettered 1")
    assert files(env / "dead-letters") == letters  # still-bad ones are not copied on every replay
    assert out(run("replay", "dead-letters", "--to", "2026-01-01"))[0].startswith("dead-letters: received 0:")
    assert out(run("snapshot"))[0].startswith("snapshot: 1 events")
    [row] = usage_rows(env)
    assert (row["event_id"], row["source"], row["source_position"]) == ("late-1", str(path), "line 1")


DRY = [  # priced by hand with the test catalog (tests/conftest.py)
    # m-alpha to 2026-10-15: (800k * 1.00 + 200k * 0.50 + 100k * 4.00) / 1M = 1.30
    event(eventId="dry-1", deployment="dep-alpha", model=None, timestamp="2026-10-15T10:00:00Z",
          usage=usage(1_000_000, 100_000, cached=200_000)),
    # m-alpha from 2026-10-16: (1234 * 2.00 + 567 * 8.00) / 1M = 0.007004
    event(eventId="dry-2", deployment="dep-alpha", model=None, timestamp="2026-10-16T10:00:00Z",
          usage=usage(1234, 567)),
    # m-beta, no cached price, sub-b is CC-B2 from the 20th: (3M * 0.10 + 500k * 0.40) / 1M = 0.50
    event(eventId="dry-3", subscriptionId="sub-b", deployment="dep-beta", model=None,
          timestamp="2026-10-25T10:00:00Z", usage=usage(3_000_000, 500_000, cached=1_000_000)),
    # (10 * 0.10 + 5 * 0.40) / 1M = 0.000003, in November
    event(eventId="dry-4", subscriptionId="sub-b", deployment="dep-beta", model=None,
          timestamp="2026-11-02T10:00:00Z", usage=usage(10, 5)),
    event(eventId="dry-5", deployment="dep-noprice", model=None),
    event(eventId="dry-6", deployment="dep-alpha", usage=None, usageSource="none", statusCode=500),
    event(eventId="held", deployment="dep-alpha", model=None),
]


def test_dry_run_prints_the_exact_cost_delta_and_writes_nothing(env: Path, write_file: WriteFile,
                                                               reference_files: ReferenceFiles) -> None:
    assert out(run("ingest", str(write_file("held.jsonl", jsonl(DRY[-1:])))))
    path = write_file("dry.jsonl", jsonl([*DRY, DRY[0]]) + b"not json\n")
    before = files(env)
    assert out(run("replay", str(path), "--dry-run")) == [
        "dry run: nothing written",
        f"{path}: received 9: would ingest 6, duplicates 2, would dead-letter 1", "  dead letter: not-json x1",
        "total: received 9: would ingest 6, duplicates 2, would dead-letter 1", "  dead letter: not-json x1",
        "would add 6 event(s): dry-1, dry-2, dry-3, dry-4, dry-5, ...",
        "cost delta by cost center and month:",
        "  CC-A 2026-10: +1.31 USD over 2 request(s)",
        "  CC-B2 2026-10: +0.50 USD over 1 request(s)",
        "  CC-B2 2026-11: +0.00 USD over 1 request(s)",
        "unpriced, not in the cost delta:",
        "  no-price: 1 request(s), e.g. no price for m-gamma (global, region *) on 2026-10-15",
        "  no-usage: 1 request(s), e.g. request carried no token usage (usageSource none)"]
    assert files(env) == before
    ledger = open_ledger(Settings.from_env())
    try:
        plan = dry_run(open_sources([str(path)], Settings.from_env()), ledger, reference_files.load())
    finally:
        ledger.close()
    assert plan.costs == {("CC-A", "2026-10", "USD"): Delta(2, Decimal("1.307004")),
                          ("CC-B2", "2026-10", "USD"): Delta(1, Decimal("0.5")),
                          ("CC-B2", "2026-11", "USD"): Delta(1, Decimal("0.000003"))}
    assert plan.new_ids == ["dry-1", "dry-2", "dry-3", "dry-4", "dry-5", "dry-6"]
    sql = "SELECT cost_center, month, sum(cost) AS cost FROM costs WHERE cost IS NOT NULL GROUP BY ALL ORDER BY ALL"
    held = msgspec.json.decode(run("query", sql, "--format", "json").stdout)
    packed = write_file("dry.jsonl.gz", gzip.compress(path.read_bytes()))
    assert out(run("replay", str(packed), "--dry-run"))[1] == (
        f"{packed}: received 9: would ingest 6, duplicates 2, would dead-letter 1")
    assert out(run("replay", str(path)))[0] == f"{path}: received 9: ingested 6, duplicates 2, dead-lettered 1"
    assert out(run("replay", str(packed)))[0] == f"{packed}: received 9: ingested 0, duplicates 8, dead-lettered 1"
    after = msgspec.json.decode(run("query", sql, "--format", "json").stdout)
    costs = {(r["cost_center"], r["month"]): Decimal(r["cost"]) for r in after}
    for r in held:
        costs[r["cost_center"], r["month"]] -= Decimal(r["cost"])
    assert {key: cost for key, cost in costs.items() if cost} == {
        (cc, month): delta.cost for (cc, month, _), delta in plan.costs.items()}  # what the report prices


def test_dry_run_on_a_new_home_creates_no_ledger(env: Path, capture: Path) -> None:
    assert out(run("replay", str(capture), "--dry-run", "--partition", "1"))[1] == (
        f"{capture}: received 4: would ingest 3, duplicates 0, would dead-letter 1")
    assert not env.exists()


def test_a_capture_source_without_files_says_why(env: Path, capture: Path, tmp_path: Path) -> None:
    """A folder that holds no Capture file (the wrong one, say) or none of the partitions and
    times asked for: `received 0` and a note saying which, replayed and dry-run alike."""
    empty = tmp_path / "not-capture"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    wrong = ("  note: no Event Hubs Capture file (.avro) under it: name the folder or az://CONTAINER/PREFIX above "
             "{Namespace}/{EventHub}/{PartitionId}/{Year}/... (where Capture writes)")
    filtered = "  note: no Capture file under it of the partitions and times asked for (--partition, --from, --to)"
    assert out(run("replay", str(empty))) == [
        f"{empty}: received 0: ingested 0, duplicates 0, dead-lettered 0", wrong,
        "total: received 0: ingested 0, duplicates 0, dead-lettered 0"]
    assert out(run("replay", str(capture), "--partition", "7"))[:2] == [
        f"{capture}: received 0: ingested 0, duplicates 0, dead-lettered 0", filtered]
    assert out(run("replay", str(empty), "--from", "2026-10-01"))[1] == wrong  # no file at all, whatever the times
    assert out(run("replay", "--dry-run", str(capture), "--from", "2027-01-01"))[1:3] == [
        f"{capture}: received 0: would ingest 0, duplicates 0, would dead-letter 0", filtered]
    assert all("note:" not in line for line in out(run("replay", str(capture))))


def test_cli_errors_are_one_line(env: Path, capture: Path, write_file: WriteFile, tmp_path: Path) -> None:
    garbage = capture / "ns-usage" / "apim-usage" / "3" / "2026" / "10" / "15" / "12" / "00" / "00.avro"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"not avro at all")
    other = tmp_path / "other" / "ns" / "hub" / "0" / "2026" / "10" / "15" / "12" / "00" / "00.avro"
    other.parent.mkdir(parents=True)
    with other.open("wb") as file:
        fastavro.writer(file, fastavro.parse_schema({"type": "record", "name": "R", "fields": []}), [{}])
    cases = {
        ("replay", "nowhere.jsonl"): "nowhere.jsonl: no such file or folder",
        ("replay", str(write_file("events.txt", "x"))): "not a source replay knows",
        ("replay", "dead-letters", "--from", "yesterday"): "--from 'yesterday': expected an ISO 8601 date",
        ("replay", "dead-letters", "--from", "2026-10-02", "--to", "2026-10-01"): "is not before --to",
        ("replay", str(capture)): "00.avro: not a readable Avro file",
        ("replay", str(tmp_path / "other")): "not of Event Hubs Capture's Microsoft.ServiceBus.Messaging.EventData",
        ("replay", str(capture / "ns-usage")): "not in Capture's layout",
        ("replay", "az://Bad_Name/x"): "is not a valid Blob container name",
        ("replay", "az://capture/x"): "set CHARGEBACK_STORAGE_ACCOUNT_URL",
    }
    for args, message in cases.items():
        result = run(*args)
        assert (result.exit_code, len(result.output.strip().splitlines())) == (1, 1), (args, result.output)
        assert message in result.output, (args, result.output)
    # A damaged file outside --from/--to is skipped by its name and never opened.
    assert out(run("replay", str(capture), "--from", "2026-10-16"))[0].startswith(f"{capture}: received 2:")


def test_capture_in_azurite_reads_as_from_a_folder(env: Path, capture: Path, tmp_path: Path,
                                                   azurite_connection_string: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(azurite_connection_string).create_container(
        f"capture-{uuid.uuid4().hex[:12]}")
    for path in capture.rglob("*.avro"):
        container.upload_blob(f"eventhubs/{path.relative_to(capture).as_posix()}", path.read_bytes())
    args = ["--from", "2026-10-15T12:00:30Z", "--partition", "0", "--partition", "1"]
    from_folder = out(run("replay", str(capture), *args))
    assert out(run("snapshot"))
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home-azurite"))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection_string)
    url = f"az://{container.container_name}/eventhubs"
    from_blob = out(run("replay", url, *args))
    assert from_blob[:4] == [text.replace(str(capture), url) for text in from_folder[:4]]
    assert from_blob[0] == f"{url}: received 8: ingested 6, duplicates 0, dead-lettered 2"
    assert out(run("snapshot"))
    assert usage_rows(tmp_path / "home-azurite") == usage_rows(env)
    container.delete_container()


def test_capture_batches_hold_the_messages_iteration_gives(tmp_path: Path, reference_files: ReferenceFiles,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Capture files go to the decoding workers as whole files, about a batch of events per
    batch by their bytes; a file larger than two batches is read here in lists. Either way the
    messages, their order and their origins are those of reading the files one record at a time."""
    from pipeline.adapters.azure import capture as capture_module
    from pipeline.adapters.azure.capture import CaptureBatch, capture_files, capture_messages
    from pipeline.domain.live import LivePricer
    from pipeline.domain.periods import TimeRange
    from pipeline.stages import decode_ahead

    root = tmp_path / "capture"
    small = [write_capture(root, "0", at(DAY, 15 * n), [good(100 * n + k, f"s-{n}-{k}", at(DAY, 15 * n + k))
                                                        for k in range(4)]) for n in range(6)]
    write_capture(root, "1", DAY, [good(900 + k, f"big-{k}", at(DAY, k / 2)) for k in range(60)])
    store = LocalObjectStore(root)
    monkeypatch.setattr(capture_module, "BYTES_PER_EVENT", min(p.stat().st_size for p in small) // 2)  # 2 files a batch
    for when in (TimeRange(), TimeRange(at(DAY, 16), at(DAY, 61))):
        messages = capture_messages(store, capture_files(store), when)
        batches = list(messages.batches(4))
        kinds = [(type(b).__name__, len(b.files) if isinstance(b, CaptureBatch) else len(b)) for b in batches]
        assert kinds[:3] == [("CaptureBatch", 2)] * 3
        assert {kind for kind, _ in kinds[3:]} == {"list"} and all(size <= 4 for _, size in kinds[3:])
        assert all(isinstance(content, Path) for b in batches if isinstance(b, CaptureBatch)
                   for _, _, content in b.files)  # on this machine: read where the batch is decoded
        read = [m for b in batches for m in (b if isinstance(b, list) else b.messages())]
        assert read == list(messages)
    assert [m.position for m in read[:2]] == ["partition 0, sequence 101", "partition 0, sequence 102"]
    assert len(read) == 12 + 28  # enqueued in minutes 16-61: 12 events of the small files, 28 of the big one

    # A file removed after it was listed, before a worker read it: its name, and what happened.
    [first, *_] = capture_messages(store, capture_files(store)).batches(4)
    assert isinstance(first, CaptureBatch)
    first.files[1][2].unlink()  # type: ignore[union-attr]
    with pytest.raises(SourceError, match=r"apim-usage/0/2026/10/15/12/15/00\.avro: gone while reading"):
        first.messages()

    # A damaged file in a batch a worker reads: the ingest stops with the file's name, as when read here.
    damaged = root / "ns-usage" / "apim-usage" / "0" / f"{at(DAY, 200):%Y/%m/%d/%H/%M/%S}.avro"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"Obj\x01 truncated")
    monkeypatch.setattr(decode_ahead, "worth_a_worker", lambda: True)
    units = capture_messages(store, capture_files(store)).batches(4)
    with pytest.raises(SourceError, match=r"00\.avro: not a readable Avro file"):
        list(decode_ahead.prepared_batches(units, LivePricer(reference_files.load()), columnar=True))
