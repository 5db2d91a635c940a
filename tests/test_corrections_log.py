"""The corrections log: bad files rejected whole (nothing recorded), a lost race taking the next
number, a tampered entry refused, and the whole flow on Azurite (log, stored catalog, published
restatement) through the same code as on a folder."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import msgspec
import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner, Result

from pipeline.adapters.azure.blob_store import open_blob_store
from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import open_store
from pipeline.domain.corrections import Correction, CorrectionError, Kind, correction
from pipeline.domain.periods import month_bounds
from pipeline.entrypoints.cli import main
from pipeline.lake.areas import CORRECTIONS, REPORTS, SNAPSHOTS
from pipeline.lake.warehouse import open_warehouse
from pipeline.ports import ObjectStore
from pipeline.settings import Settings
from pipeline.stages.correct import LogEntry, load_corrections, read_log, record
from pipeline.stages.report.build import build_report
from pipeline.stages.report.publish import publish_report
from tests.conftest import PRICES_CSV, ReferenceFiles, WriteFile
from tests.factories import jsonl
from tests.test_corrections import EVENTS, PRICES_V2, RESTATEMENT_HEADER, V2, flat

AT = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)

BAD_YAML = """\
- {kind: void, reason: forgot what to void}
- {kind: refund, reason: not a kind}
- {kind: reassign, subscription_id: sub-b, cost_center: CC-X, from: 2026-10-01, to: 2026-11-01}
- {kind: reassign, subscription_id: sub-a, cost_center: CC-X, from: 2026-10-10, to: 2026-10-10, reason: r}
- {kind: reprice, catalog: nowhere.csv, from: 2026-10-01, to: 2026-10-02, reason: r}
- {kind: reprice, catalog: negative.csv, from: 2026-10-01, to: 2026-10-02, reason: r}
- {kind: reassign, subscription_id: sub-c, cost_center: CC-1, from: 2026-10-01, to: 2026-10-15, reason: r}
- {kind: reassign, subscription_id: sub-c, cost_center: CC-2, from: 2026-10-14, to: 2026-10-20, reason: r}
- {kind: void, subscription_id: sub-test, from: 2026-13-01, to: 2026-10-02, reason: r}
- {kind: void, subscription_id: sub-test, from: 2026-10-01T10:00:00, to: 2026-10-02, reason: r}
- {kind: void, event_ids: [e-1], cost_center: CC-A, reason: r}
- {kind: void, event_ids: [e-1], reason: "a good one: not recorded either"}
"""
BAD_CSV = """\
kind,event_ids,subscription_id,deployment,cost_center,from,to,catalog,model,reason
void,,sub-test,,,2026-10-01,2026-10-32,,,bad day
reassign,,sub-b,,CC-X,2026-10-01,2026-11-01,,,
void,e-1,,,
# a comment
reprice,,,,,2026-10-01,2026-10-02,,,no catalog
void,e-1;e-2,,,,,,,,fine
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_a_bad_yaml_file_is_rejected_whole(home: Path, write_file: WriteFile,
                                           reference_files: ReferenceFiles) -> None:
    write_file("negative.csv", PRICES_CSV.replace(",4.00\n", ",-4.00\n"))
    path = write_file("bad.yaml", BAD_YAML)
    result = run("correct", str(path), "--by", "alice")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    folder = path.parent
    assert result.output.splitlines() == [
        f"Error: {path}: 10 problems; nothing recorded",
        "  entry 1: a void needs event_ids, or subscription_id with from and to (never everything)",
        "  entry 2: kind 'refund' must be one of void, reassign, reprice",
        "  entry 3: reason is missing",
        "  entry 4: from 2026-10-10 is not before to 2026-10-10 (to is exclusive)",
        f"  entry 5: catalog {folder}/nowhere.csv: No such file or directory",
        f"  entry 6: catalog: {folder}/negative.csv:3: output_per_1m '-4.00' must be a finite price >= 0",
        "  entry 9: from '2026-13-01' is not a UTC date (YYYY-MM-DD) or an instant with an offset "
        "(2026-10-05T10:00Z)",
        "  entry 10: from '2026-10-01T10:00:00' has no UTC offset; add Z or +HH:MM",
        "  entry 11: cost_center does not apply to a void",
        "  entry 8: reassigns sub-c for days that entry 7 reassigns too",
    ]
    assert not (home / CORRECTIONS).exists()  # nothing recorded, not even a catalog


def test_a_bad_csv_file_is_rejected_whole(home: Path, write_file: WriteFile) -> None:
    path = write_file("bad.csv", BAD_CSV)
    result = run("correct", str(path), "--by", "alice")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: {path}: 4 problems; nothing recorded",
        "  line 2: to '2026-10-32' is not a UTC date (YYYY-MM-DD) or an instant with an offset (2026-10-05T10:00Z)",
        "  line 3: reason is missing",
        "  line 4: 5 values for 10 columns",
        "  line 6: catalog is missing",
    ]
    assert not (home / CORRECTIONS).exists()
    fixed = write_file("fixed.csv", "\n".join(BAD_CSV.splitlines()[i] for i in (0, 6)) + "\n")
    assert run("correct", str(fixed), "--by", "alice").exit_code == 0
    [entry] = read_log(open_store(Settings.from_env(), CORRECTIONS))
    assert [c.event_ids for c in entry.corrections] == [("e-1", "e-2")]


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("list.yaml", "kind: void\nreason: x\n", "expected a YAML list of corrections"),
    ("empty.yaml", "", "expected a YAML list of corrections"),
    ("nothing.yaml", "[]\n", "no corrections in the file; nothing recorded"),
    ("broken.yaml", "- kind: [void\n", "not valid YAML"),
    ("notes.txt", "void e-1\n", "expected a .yaml, .yml or .csv corrections file"),
    ("columns.csv", "kind,reason,amount\n", "expected the columns kind,event_ids,"),
    ("empty.csv", "", "empty file; expected the header"),
    ("one.yaml", "- {kind: void, event_ids: [e-1], reason: r}\n- {kind: void, event_ids: [e-1], reason: r}\n",
     "entry 2: the same correction as entry 1; nothing recorded"),
])
def test_one_clear_line_for_a_file_that_is_wrong_as_a_whole(home: Path, write_file: WriteFile, name: str,
                                                             content: str, expected: str) -> None:
    result = run("correct", str(write_file(name, content)), "--by", "alice")
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith("Error: ") and expected in line, line
    assert "Traceback" not in result.output
    assert not (home / CORRECTIONS).exists()


def void(event_id: str) -> Correction:
    return correction(kind=Kind.VOID, reason="r", by="alice", at=AT, event_ids=(event_id,))


class Racing:
    """A store where another writer commits `entry` just before our first log append."""

    def __init__(self, store: ObjectStore, entry: LogEntry) -> None:
        self.inner, self.entry, self.url, self.local_root = store, entry, store.url, store.local_root

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        if key.endswith(".json") and self.entry is not None:
            assert self.inner.put(f"{self.entry.number:08d}.json", msgspec.json.encode(self.entry), overwrite=False)
            self.entry = None  # type: ignore[assignment]
        return self.inner.put(key, data, overwrite=overwrite)

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def open(self, key: str) -> BinaryIO | None:
        return self.inner.open(key)

    def list(self, prefix: str, starting: str = "") -> list[str]:
        return self.inner.list(prefix, starting)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return self.inner.arrow_filesystem()


@pytest.fixture(params=["folder", "azurite"])
def corrections_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "folder":
        return LocalObjectStore(tmp_path / "store" / CORRECTIONS)
    connection_string = request.getfixturevalue("azurite_connection_string")
    return open_blob_store(f"az://t{uuid.uuid4().hex[:12]}/chargeback/{CORRECTIONS}", account_url=None,
                           connection_string=connection_string, create_container=True)


def test_a_lost_race_takes_the_next_number(corrections_store: ObjectStore) -> None:
    theirs = LogEntry(number=1, recorded_at=AT, by="bob", source="b.yaml", corrections=[void("e-1"), void("e-2")])
    result = record(Racing(corrections_store, theirs), [void("e-2"), void("e-3")], {}, by="alice", at=AT,
                    source="a.yaml")
    assert (result.entry, [c.event_ids for c in result.recorded], [c.event_ids for c in result.already]) == (
        2, [("e-3",)], [("e-2",)])
    log = read_log(corrections_store)
    assert [(e.number, e.by, [c.event_ids[0] for c in e.corrections]) for e in log] == [
        (1, "bob", ["e-1", "e-2"]), (2, "alice", ["e-3"])]
    assert [c.event_ids for c in load_corrections(corrections_store).records] == [("e-1",), ("e-2",), ("e-3",)]


def test_a_tampered_entry_is_refused(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / CORRECTIONS)
    record(store, [void("e-1")], {}, by="alice", at=AT, source="a.yaml")
    data = store.get("00000001.json")
    assert data is not None
    store.put("00000001.json", data.replace(b'"reason":"r"', b'"reason":"other"'), overwrite=True)
    with pytest.raises(CorrectionError, match="does not match its content"):
        load_corrections(store)


def test_log_catalog_and_restatement_on_azurite(home: Path, write_file: WriteFile, reference_files: ReferenceFiles,
                                                tmp_path: Path, azurite_connection_string: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_STORE", f"az://t{uuid.uuid4().hex[:12]}/chargeback")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection_string)
    monkeypatch.setenv("CHARGEBACK_CREATE_RESOURCES", "1")
    settings = Settings.from_env()
    assert run("ingest", str(write_file("events.jsonl", jsonl(EVENTS)))).exit_code == 0
    reference = reference_files.load()

    def publish(corrections: Callable[[], object] | None = None) -> list[str]:
        warehouse = open_warehouse(open_store(settings, SNAPSHOTS), None, month_bounds("2026-10"))
        report = build_report(warehouse, reference, "2026-10", load_corrections(open_store(settings, CORRECTIONS)))
        done = publish_report(report, open_store(settings, REPORTS))
        published.append(done.restatement)
        return done.keys

    published: list[object] = []
    assert run("report", "--month", "2026-10", "--out", str(tmp_path / "out"), *reference_files.options()
               ).exit_code == 0  # snapshots the ledger into Blob
    publish()
    write_file("prices-v2.csv", PRICES_V2)
    fix = write_file("fix.yaml", "- {kind: reprice, catalog: prices-v2.csv, model: m-alpha, from: 2026-10-01, "
                                 "to: 2026-10-16, reason: contract price}\n")
    first = run("correct", str(fix), "--by", "alice")
    assert first.exit_code == 0, first.output
    assert "already recorded: 1" in flat(run("correct", str(fix), "--by", "alice").output)
    store = open_store(settings, CORRECTIONS)
    assert store.url.startswith("az://") and store.list("") == ["00000001.json", f"catalogs/{V2}.csv"]
    [reprice] = [c.id for c in load_corrections(store).records]
    assert load_corrections(store).catalogs[V2].version == V2
    publish()
    reports = open_store(settings, REPORTS)
    assert reports.get("chargeback-2026-10-restatement.csv") == (
        RESTATEMENT_HEADER + f"2026-10,CC-A,USD,4,8,4,{reprice}\n"
        f"2026-10,unassigned,USD,2.1,6.1,4,{reprice}\n").encode()
    assert sorted(k for k in reports.list("history")) == [
        "history/chargeback-2026-10-daily.v1.csv", "history/chargeback-2026-10-unpriced.v1.csv",
        "history/chargeback-2026-10.v1.csv", "history/chargeback-2026-10.v1.parquet"]
    publish()  # the same content again: no new version
    assert published[-1] is None and len(reports.list("history")) == 4
