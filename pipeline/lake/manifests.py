"""The snapshot log of the `snapshots` area: Parquet files under `usage/date=YYYY-MM-DD/`, made
visible by numbered manifests `_manifests/<n:08d>.json` (pipeline.stages.snapshot writes them).
Readers see only the files a committed manifest names."""

from __future__ import annotations

from datetime import date, datetime

import msgspec

from pipeline.ports import ObjectStore

USAGE_PREFIX = "usage"
MANIFEST_PREFIX = "_manifests"


# The layout of the files a snapshot writes (PublishedFile.layout): from 2 they have the column
# `gateway_timeout` (pipeline.lake.usage).
GATEWAY_TIMEOUT_LAYOUT = 2
SNAPSHOT_LAYOUT = GATEWAY_TIMEOUT_LAYOUT


class PublishedFile(msgspec.Struct, frozen=True):
    key: str
    date: date
    rows: int
    layout: int = 1  # a manifest written before the field: files without `gateway_timeout`
    # The key of the file's rollup (pipeline.lake.rollups) and the version of the SQL that made it:
    # none in a manifest written before rollups, or for a file whose sums pass 64 bits.
    rollup: str | None = None
    rollup_layout: int = 0


class PublishedRollup(msgspec.Struct, frozen=True):
    """A rollup made after its file was committed (pipeline.stages.backfill), for the file `key`."""

    key: str
    rollup: str
    rollup_layout: int


class Manifest(msgspec.Struct, frozen=True):
    number: int
    cursor: str | None
    files: list[PublishedFile]
    created: datetime
    # Rollups of files that earlier manifests committed without one of this version: the files
    # are not committed again, and a reader takes the latest rollup named for each file.
    rollups: list[PublishedRollup] = msgspec.field(default_factory=list)


_decode_manifest = msgspec.json.Decoder(Manifest).decode


def manifests(store: ObjectStore) -> list[Manifest]:
    """Every committed manifest, in commit order."""
    found = []
    for key in store.list(MANIFEST_PREFIX):
        if key.endswith(".json"):
            data = store.get(key)
            if data is not None:
                found.append(_decode_manifest(data))
    return sorted(found, key=lambda manifest: manifest.number)


def latest_manifest(store: ObjectStore) -> Manifest | None:
    """The last committed manifest, the only one read: what a snapshot continues from. A manifest
    is `<n:08d>.json`, so the last name in order is the highest number (a year of 15-minute
    snapshots is 35,040 manifests: reading them all was one object read each, every run)."""
    for key in sorted((key for key in store.list(MANIFEST_PREFIX) if key.endswith(".json")), reverse=True):
        data = store.get(key)
        if data is not None:
            return _decode_manifest(data)
    return None


def published_files(store: ObjectStore, days: tuple[date, date] | None = None) -> list[PublishedFile]:
    """The committed usage files, optionally only those of the days in [start, end), each with
    the latest rollup a manifest names for it."""
    committed = manifests(store)
    later = {item.key: item for manifest in committed for item in manifest.rollups}
    return [
        file if file.key not in later else msgspec.structs.replace(
            file, rollup=later[file.key].rollup, rollup_layout=later[file.key].rollup_layout)
        for manifest in committed for file in manifest.files
        if days is None or days[0] <= file.date < days[1]
    ]
