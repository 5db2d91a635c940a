"""One contract for every ObjectStore: the local folder and Blob Storage (a real Azurite from
scripts/services.sh, each test in a fresh container that is deleted afterwards).

The Blob stores here use a 4 MiB single-put limit and 1 MiB blocks, so large objects go through
staged blocks and a block-list commit, the path production takes above 64 MiB."""

from __future__ import annotations

import io
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from azure.storage.blob import ContainerClient

from pipeline.adapters.azure import blob_store
from pipeline.adapters.azure.blob_store import BlobObjectStore, open_blob_store, parse_blob_url
from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.ports import MissingResource, ObjectStore

pytest_plugins = ["tests.servers"]

MiB = 1024 * 1024
BLOB_PREFIX = "snapshots/area"


def fresh_container(connection_string: str, **options: Any) -> ContainerClient:
    container = ContainerClient.from_connection_string(
        connection_string, f"test-{uuid.uuid4().hex}", max_single_put_size=4 * MiB, max_block_size=1 * MiB,
        **options)
    container.create_container()
    return container


@pytest.fixture
def container(azurite_connection_string: str) -> Iterator[ContainerClient]:
    client = fresh_container(azurite_connection_string)
    try:
        yield client
    finally:
        client.delete_container()


@pytest.fixture(params=["local", "blob"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "store")
    client: ContainerClient = request.getfixturevalue("container")
    return BlobObjectStore(client, BLOB_PREFIX)


# ------------------------------------------------------------------------------------ the contract


def test_put_then_get_round_trips(store: ObjectStore) -> None:
    assert store.put("a/b/c.bin", b"\x00payload\xff", overwrite=False) is True
    assert store.get("a/b/c.bin") == b"\x00payload\xff"
    assert store.put("empty", b"", overwrite=False) is True
    assert store.get("empty") == b""


def test_overwrite_true_replaces(store: ObjectStore) -> None:
    store.put("report.csv", b"first", overwrite=True)
    assert store.put("report.csv", b"second", overwrite=True) is True
    assert store.get("report.csv") == b"second"


def test_overwrite_false_keeps_the_first_and_returns_false(store: ObjectStore) -> None:
    assert store.put("_manifests/00000001.json", b"first", overwrite=False) is True
    assert store.put("_manifests/00000001.json", b"second", overwrite=False) is False
    assert store.get("_manifests/00000001.json") == b"first"


@pytest.mark.parametrize("size", [1024, 5 * MiB], ids=["small", "5MiB-staged-blocks"])
def test_concurrent_create_if_absent_has_exactly_one_winner(store: ObjectStore, size: int) -> None:
    writers = 8
    payloads = [bytes([n]) * size for n in range(writers)]
    results: list[bool | None] = [None] * writers
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        try:
            start.wait(timeout=30)
            results[n] = store.put("_manifests/00000007.json", payloads[n], overwrite=False)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert results.count(True) == 1, results
    assert results.count(False) == writers - 1, results
    winner = results.index(True)
    assert store.get("_manifests/00000007.json") == payloads[winner]


def test_list_is_sorted_relative_to_the_root_and_hides_dot_names(store: ObjectStore) -> None:
    keys = [
        "usage/date=2026-10-02/part-2.parquet",
        "usage/date=2026-10-01/part-1.parquet",
        "usage/date=2026-10-01/part-0.parquet",
        "usage/readme",
        "usagex/not-under-usage",
        "_manifests/00000001.json",
    ]
    for key in keys:
        assert store.put(key, key.encode(), overwrite=False)
    for hidden in ("usage/.in-flight.tmp", ".top-level", "usage/date=2026-10-01/.part-3.parquet.tmp"):
        assert store.put(hidden, b"hidden", overwrite=False)

    assert store.list("usage") == [
        "usage/date=2026-10-01/part-0.parquet",
        "usage/date=2026-10-01/part-1.parquet",
        "usage/date=2026-10-02/part-2.parquet",
        "usage/readme",
    ]
    assert store.list("usage/") == store.list("usage")
    assert store.list("usage/date=2026-10-01") == [
        "usage/date=2026-10-01/part-0.parquet", "usage/date=2026-10-01/part-1.parquet"]
    assert store.list("") == sorted(keys)
    assert store.list("missing") == []
    assert store.list("usage/readme") == []  # a key is not a folder


def test_delete_removes_the_object_once(store: ObjectStore) -> None:
    store.put("gateway/budgets/sub-a.json", b"{}", overwrite=True)
    store.put("gateway/budgets/sub-b.json", b"{}", overwrite=True)
    assert store.delete("gateway/budgets/sub-a.json") is True
    assert store.delete("gateway/budgets/sub-a.json") is False  # gone already
    assert store.get("gateway/budgets/sub-a.json") is None
    assert store.list("gateway/budgets") == ["gateway/budgets/sub-b.json"]


def test_exists_says_whether_an_object_is_there(store: ObjectStore) -> None:
    assert not store.exists("reports/a.csv")
    assert store.put("reports/a.csv", b"x", overwrite=False)
    assert store.exists("reports/a.csv")
    assert not store.exists("reports")  # a folder is not an object
    assert store.delete("reports/a.csv") and not store.exists("reports/a.csv")


def test_get_of_a_missing_key_is_none(store: ObjectStore) -> None:
    assert store.get("nothing/here.json") is None
    store.put("some/key", b"x", overwrite=False)
    assert store.get("some/other") is None


def test_get_of_a_folder_is_none(store: ObjectStore) -> None:
    store.put("some/key", b"x", overwrite=False)
    assert store.get("some") is None  # a folder is not an object


def test_keys_with_spaces_and_unicode(store: ObjectStore) -> None:
    keys = ["reports/2026 10/chargeback – Zürich ✓.csv", "reports/日本語/コスト センター.parquet",
            "reports/plus+percent%20hash#.txt"]
    for number, key in enumerate(keys):
        assert store.put(key, f"payload {number}".encode(), overwrite=False) is True
        assert store.put(key, b"again", overwrite=False) is False
    for number, key in enumerate(keys):
        assert store.get(key) == f"payload {number}".encode()
    assert store.list("reports") == sorted(keys)


def test_a_20_mib_object(store: ObjectStore) -> None:
    data = os.urandom(20 * MiB)
    assert store.put("big/object.bin", data, overwrite=False) is True
    assert store.put("big/object.bin", b"small", overwrite=False) is False
    assert store.get("big/object.bin") == data
    replacement = data[::-1]
    assert store.put("big/object.bin", replacement, overwrite=True) is True
    assert store.get("big/object.bin") == replacement


@pytest.mark.parametrize("key", ["../outside", "a/../../outside"])
def test_keys_cannot_leave_the_root(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="leaves the store root"):
        store.put(key, b"x", overwrite=True)


# ------------------------------------------------------------------------------------ Parquet readers


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def test_parquet_written_through_the_store_reads_back_through_arrow_filesystem(store: ObjectStore) -> None:
    days = {
        "2026-10-01": pa.table({"event_id": ["a", "b"], "tokens": [10, 20]}),
        "2026-10-02": pa.table({"event_id": ["c"], "tokens": [30]}),
    }
    for day, table in days.items():
        store.put(f"usage/date={day}/part-00000001-run.parquet", parquet_bytes(table), overwrite=False)
    store.put("usage/date=2026-10-02/.part-00000002-run.parquet.tmp", b"not parquet", overwrite=False)

    filesystem, base = store.arrow_filesystem()
    partitioning = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    expected = [
        {"event_id": "a", "tokens": 10, "date": "2026-10-01"},
        {"event_id": "b", "tokens": 20, "date": "2026-10-01"},
        {"event_id": "c", "tokens": 30, "date": "2026-10-02"},
    ]

    # The way the warehouse reads: the listed files, never a glob.
    listed = ds.dataset([f"{base}/{key}" for key in store.list("usage")], filesystem=filesystem,
                        format="parquet", partitioning=partitioning, partition_base_dir=f"{base}/usage")
    assert listed.to_table().sort_by("event_id").to_pylist() == expected

    # Discovery over the folder works too (pyarrow skips names starting with "." or "_").
    discovered = ds.dataset(f"{base}/usage", filesystem=filesystem, format="parquet", partitioning=partitioning)
    assert discovered.to_table().sort_by("event_id").to_pylist() == expected


# ------------------------------------------------------------------------------------ Blob only


def test_blob_keys_are_relative_to_the_prefix(container: ContainerClient) -> None:
    store = BlobObjectStore(container, BLOB_PREFIX)
    assert store.url == f"az://{container.container_name}/{BLOB_PREFIX}"
    store.put("usage/a.parquet", b"a", overwrite=False)
    container.upload_blob("snapshots/other/b.parquet", b"b")   # beside the prefix
    container.upload_blob("snapshots/areab/c.parquet", b"c")   # shares the prefix's first characters
    assert [blob.name for blob in container.list_blobs()] == [
        "snapshots/area/usage/a.parquet", "snapshots/areab/c.parquet", "snapshots/other/b.parquet"]
    assert store.list("") == ["usage/a.parquet"]
    assert BlobObjectStore(container).list("snapshots") == [
        "snapshots/area/usage/a.parquet", "snapshots/areab/c.parquet", "snapshots/other/b.parquet"]
    assert BlobObjectStore(container).url == f"az://{container.container_name}"


def test_blob_list_hides_every_dot_segment(container: ContainerClient) -> None:
    store = BlobObjectStore(container, BLOB_PREFIX)
    store.put("usage/.staging/part.parquet", b"x", overwrite=False)
    store.put("usage/kept.parquet", b"x", overwrite=False)
    assert store.list("usage") == ["usage/kept.parquet"]


def test_blob_retried_create_that_finds_its_own_write_reports_true(
        container: ContainerClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A create whose response was lost and that the SDK retried meets its own object: True."""
    store = BlobObjectStore(container, BLOB_PREFIX)
    token = uuid.uuid4().hex
    monkeypatch.setattr(blob_store, "writer_token", lambda: token)
    assert store.put("_manifests/00000001.json", b"mine", overwrite=False) is True
    assert store.put("_manifests/00000001.json", b"mine", overwrite=False) is True  # the same writer's retry
    monkeypatch.undo()
    assert store.put("_manifests/00000001.json", b"other", overwrite=False) is False
    assert store.get("_manifests/00000001.json") == b"mine"


def test_open_blob_store_with_a_connection_string(azurite_connection_string: str) -> None:
    name = f"test-{uuid.uuid4().hex}"
    with pytest.raises(MissingResource, match=f"Blob container '{name}' does not exist"):  # never created unless asked
        open_blob_store(f"az://{name}/area", account_url=None, connection_string=azurite_connection_string)
    store = open_blob_store(f"az://{name}/area/", account_url="https://ignored.blob.core.windows.net",
                            connection_string=azurite_connection_string, create_container=True)
    try:
        assert store.url == f"az://{name}/area"
        assert store.put("x", b"x", overwrite=False) is True
        again = open_blob_store(f"az://{name}/area", account_url=None,
                                connection_string=azurite_connection_string, create_container=True)
        assert again.get("x") == b"x"  # an existing container is kept
    finally:
        store.container.delete_container()


def test_open_blob_store_needs_an_account_or_a_connection_string() -> None:
    with pytest.raises(ValueError, match="CHARGEBACK_STORAGE_ACCOUNT_URL") as raised:
        open_blob_store("az://snapshots/area", account_url=None, connection_string=None)
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(raised.value)


@pytest.mark.parametrize(("url", "expected"), [
    ("az://snapshots", ("snapshots", "")),
    ("az://snapshots/", ("snapshots", "")),
    ("az://snap-shots/a/b/", ("snap-shots", "a/b")),
])
def test_parse_blob_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_blob_url(url) == expected


@pytest.mark.parametrize("url", ["file:///tmp/x", "az:///prefix", "az://Upper/x", "az://a/x", "az://c--c/x",
                                 "az://snapshots/x?sig=1"])
def test_parse_blob_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match=r"az://CONTAINER/PREFIX|container name"):
        parse_blob_url(url)


def test_arrow_filesystem_for_an_account_with_identity_takes_no_key() -> None:
    """Production: https://ACCOUNT.blob.core.windows.net and DefaultAzureCredential. pyarrow gets
    the account and no key, so it uses its own default credential chain (nothing is contacted)."""
    client = ContainerClient("https://chargebackprod.blob.core.windows.net", "snapshots")
    filesystem, base = BlobObjectStore(client, "prod/snapshots").arrow_filesystem()
    assert base == "snapshots/prod/snapshots"
    options = filesystem.__reduce__()[1][0]
    assert options["account_name"] == "chargebackprod"
    assert options["account_key"] == ""
    assert options["blob_storage_authority"] == ".blob.core.windows.net"
    assert options["dfs_storage_authority"] == ".dfs.core.windows.net"
    assert options["blob_storage_scheme"] == "https"
    assert options["client_id"] == ""  # no identity named: pyarrow's chain picks one


def test_arrow_filesystem_signs_in_with_the_user_assigned_identity() -> None:
    """The Function App has a user-assigned identity only: pyarrow's C++ credential chain ignores
    AZURE_CLIENT_ID and would ask for the system-assigned one, so the store hands it the client id."""
    client = ContainerClient("https://chargebackprod.blob.core.windows.net", "snapshots")
    identity = "11111111-2222-3333-4444-555555555555"
    filesystem, _ = BlobObjectStore(client, "prod/snapshots", client_id=identity).arrow_filesystem()
    options = filesystem.__reduce__()[1][0]
    assert (options["client_id"], options["account_key"], options["client_secret"]) == (identity, "", "")


def test_arrow_filesystem_for_azurite_uses_the_connection_string(azurite_connection_string: str) -> None:
    client = ContainerClient.from_connection_string(azurite_connection_string, "snapshots")
    filesystem, base = BlobObjectStore(client).arrow_filesystem()
    assert base == "snapshots"
    options = filesystem.__reduce__()[1][0]
    assert options["account_name"] == "devstoreaccount1"
    assert options["account_key"]
    assert options["blob_storage_scheme"] == "http"
    assert options["blob_storage_authority"] == options["dfs_storage_authority"]
    assert not options["blob_storage_authority"].startswith(".")  # path-style: host:port/ACCOUNT


def test_arrow_filesystem_for_a_local_store(tmp_path: Path) -> None:
    filesystem, base = LocalObjectStore(tmp_path).arrow_filesystem()
    assert filesystem.type_name == "local"
    assert base == str(tmp_path.resolve())


def test_list_starting_keeps_the_names_that_start_so(store: ObjectStore) -> None:
    for key in ("m/00001.json", "m/00002.json", "m/00010.json", "m/10000.json", "m/0000x/deep.json", "n/00001.json"):
        store.put(key, b"{}", overwrite=False)
    assert store.list("m", "0000") == ["m/00001.json", "m/00002.json", "m/0000x/deep.json"]
    assert store.list("m", "1") == ["m/10000.json"] and store.list("m", "2") == []
    assert store.list("m") == store.list("m", "") and len(store.list("m")) == 5


def test_the_committed_files_come_in_commit_order_from_every_store(store: ObjectStore) -> None:
    """Manifests after a checkpoint, across a thousand, read in parallel from Blob Storage: every
    file in the order committed, a later rollup applied, a missing manifest number passed over, a
    manifest before the checkpoint not read (the checkpoint holds its files)."""
    from datetime import UTC, date, datetime

    import msgspec

    from pipeline.lake.manifests import (
        CHECKPOINT_PREFIX,
        MANIFEST_PREFIX,
        Checkpoint,
        Manifest,
        PublishedFile,
        PublishedRollup,
        committed_files,
        latest_manifest,
    )

    def file(n: int) -> PublishedFile:
        return PublishedFile(f"usage/date=2026-10-01/{n:04d}.parquet", date(2026, 10, 1), n)

    def put(manifest: Manifest) -> None:
        store.put(f"{MANIFEST_PREFIX}/{manifest.number:08d}.json", msgspec.json.encode(manifest), overwrite=False)

    created = datetime(2026, 10, 2, tzinfo=UTC)
    later = [n for n in range(1961, 2041) if n != 2020]  # no manifest 2020
    store.put(f"{CHECKPOINT_PREFIX}/00001900.json", msgspec.json.encode(Checkpoint(1900, [file(0)])), overwrite=False)
    put(Manifest(500, "500", [file(500)], created))  # before the checkpoint: its files are the checkpoint's
    put(Manifest(1900, "1900", [file(1900)], created))
    for n in later:
        rollups = [PublishedRollup(file(0).key, "rollups/0.parquet", 1)] if n == 2030 else []
        put(Manifest(n, str(n), [file(n)], created, rollups=rollups))
    files = committed_files(store)
    assert [f.rows for f in files] == [0, *later]
    assert files[0].rollup == "rollups/0.parquet" and all(f.rollup is None for f in files[1:])
    assert [f.rows for f in committed_files(store, through=2005)] == [0, *range(1961, 2006)]
    latest = latest_manifest(store)
    assert latest is not None and latest.number == 2040
