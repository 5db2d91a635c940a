"""The snapshot log of the `snapshots` area: Parquet files under `usage/date=YYYY-MM-DD/`, made
visible by numbered manifests `_manifests/<n:08d>.json` (pipeline.stages.snapshot writes them),
summed up every so often by checkpoints `_checkpoints/<n:08d>.json`. Readers see only the files a
committed manifest names."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime

import msgspec

from pipeline.ports import ObjectStore

USAGE_PREFIX = "usage"
MANIFEST_PREFIX = "_manifests"
# Every CHECKPOINT_EVERY manifests, a checkpoint `_checkpoints/<n:08d>.json` lists every file
# committed so far, so that a reader reads it and the manifests after it, not every manifest: a
# year of 15-minute snapshots is 35,040 manifests, one object read each (Checkpoint).
CHECKPOINT_PREFIX = "_checkpoints"
CHECKPOINT_EVERY = 100
# Checkpoints kept: each holds every file so far, so keeping them all would grow the area with the
# square of its age (a year of one-file manifests: 350 checkpoints, 860 MB); the one before the
# newest stays for a reader that finds the newest damaged.
CHECKPOINTS_KEPT = 2
LISTED_DIGITS = 5  # manifests are listed by the first 5 of their 8 digits: a thousand at a time
READERS = 8  # manifests read at once from a remote store (under the SDK session's 10 pooled connections)


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


class Compaction(msgspec.Struct, frozen=True):
    """Committed files of one day rewritten as one (pipeline.stages.compaction): `file` holds
    exactly the rows of the files `replaces`, which stay for a week (compaction.RETAIN)."""

    file: PublishedFile
    replaces: list[str]


class Manifest(msgspec.Struct, frozen=True):
    number: int
    cursor: str | None
    files: list[PublishedFile]
    created: datetime
    # Rollups of files that earlier manifests committed without one of this version: the files
    # are not committed again, and a reader takes the latest rollup named for each file.
    rollups: list[PublishedRollup] = msgspec.field(default_factory=list)
    # Files committed before, each set replaced by one file of the same rows. A version before
    # compactions does not know the field and reads the files replaced, which stay a week after
    # the commit: either way each row is read once.
    compactions: list[Compaction] = msgspec.field(default_factory=list)


_decode_manifest = msgspec.json.Decoder(Manifest).decode


def manifests(store: ObjectStore) -> list[Manifest]:
    """Every committed manifest, in commit order."""
    found = [manifest for key in store.list(MANIFEST_PREFIX) if key.endswith(".json")
             for manifest in (_read_manifest(store, key),) if manifest is not None]
    return sorted(found, key=lambda manifest: manifest.number)


def latest_manifest(store: ObjectStore) -> Manifest | None:
    """The last committed manifest, the only one read: what a snapshot continues from. A manifest
    is `<n:08d>.json`, so its name says its number (a year of 15-minute snapshots is 35,040
    manifests: reading them all was one object read each, every run)."""
    checkpoints = numbered_objects(store, CHECKPOINT_PREFIX)  # its name says its number: not read here
    after = checkpoints[-1][0] - 1 if checkpoints else 0
    for _, key in reversed(numbered_after(store, MANIFEST_PREFIX, after)):
        manifest = _read_manifest(store, key)
        if manifest is not None:
            return manifest
    return None


def published_files(store: ObjectStore, days: tuple[date, date] | None = None) -> list[PublishedFile]:
    """The committed usage files, optionally only those of the days in [start, end), each with
    the latest rollup a manifest names for it."""
    return [file for file in committed_files(store) if days is None or days[0] <= file.date < days[1]]


def committed_days(store: ObjectStore) -> tuple[date, date] | None:
    """The first and the last day of the committed usage files; None when no file is committed
    (a store never snapshotted into, or the wrong one): what a command that found no usage says."""
    days = [file.date for file in committed_files(store)]
    return (min(days), max(days)) if days else None


class Checkpoint(msgspec.Struct, frozen=True):
    """Every file manifests 1..number committed, in commit order, each with the latest rollup they
    name and their compactions applied: what a reader takes instead of reading those manifests
    one by one. Derived: written after manifest `number` (`write_checkpoint`), never needed (a
    reader without one reads every manifest), and one that cannot be read is passed over."""

    number: int
    files: list[PublishedFile]


_decode_checkpoint = msgspec.json.Decoder(Checkpoint).decode


def committed_files(store: ObjectStore, through: int | None = None) -> list[PublishedFile]:
    """Every file committed by manifests 1..`through` (all when None), in commit order, each with
    the latest rollup they name, the files a compaction replaced left out for its own: the latest
    checkpoint at or before it, then the manifests after it (listed by `numbered_after`, read by
    `_read_manifests`)."""
    base = _checkpoint(store, through)
    after = base.number if base else 0
    keys = [key for number, key in numbered_after(store, MANIFEST_PREFIX, after)
            if through is None or number <= through]
    later = [manifest for manifest in _read_manifests(store, keys) if manifest is not None]
    rollups = {item.key: item for manifest in later for item in manifest.rollups}
    files = list(base.files) if base else []
    for manifest in later:
        files.extend(manifest.files)
        if manifest.compactions:
            files = _compacted(files, manifest.compactions)
    return [file if file.key not in rollups else msgspec.structs.replace(
        file, rollup=rollups[file.key].rollup, rollup_layout=rollups[file.key].rollup_layout) for file in files]


def _compacted(files: list[PublishedFile], compactions: list[Compaction]) -> list[PublishedFile]:
    """The files with each compaction applied: its file in the place of the first it replaces.
    A compaction is passed over unless every file it replaces is committed (once) and their rows
    add up to its file's: a damaged or hand-made manifest can never make a row read twice."""
    rows = {file.key: file.rows for file in files}
    replaced: dict[str, Compaction] = {}
    made: set[str] = set()
    for compaction in compactions:
        keys, key = set(compaction.replaces), compaction.file.key
        if (len(keys) == len(compaction.replaces) and keys <= rows.keys() and keys.isdisjoint(replaced)
                and key not in rows and key not in made and sum(rows[k] for k in keys) == compaction.file.rows):
            replaced.update(dict.fromkeys(keys, compaction))
            made.add(key)
    if not replaced:
        return files
    kept: list[PublishedFile] = []
    placed: set[str] = set()
    for file in files:
        replacing = replaced.get(file.key)
        if replacing is None:
            kept.append(file)
        elif replacing.file.key not in placed:
            kept.append(replacing.file)
            placed.add(replacing.file.key)
    return kept


def write_checkpoint(store: ObjectStore, latest: int) -> int | None:
    """Write the checkpoint due at manifest `latest` (the last multiple of CHECKPOINT_EVERY at or
    before it) when it is not there, and delete all but the CHECKPOINTS_KEPT newest; returns its
    number when written. Its files come from the manifests up to that number only, so a snapshot
    committing meanwhile changes nothing. A reader whose checkpoint is deleted under it reads the
    one before, or the manifests (a checkpoint is never needed)."""
    due = latest // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    key = f"{CHECKPOINT_PREFIX}/{due:08d}.json"
    if due == 0 or store.exists(key):
        return None
    checkpoint = Checkpoint(due, committed_files(store, through=due))
    if not store.put(key, msgspec.json.encode(checkpoint), overwrite=False):
        return None
    for _, older in numbered_objects(store, CHECKPOINT_PREFIX)[:-CHECKPOINTS_KEPT]:
        store.delete(older)
    return due


def _checkpoint(store: ObjectStore, through: int | None) -> Checkpoint | None:
    """The latest readable checkpoint at or before manifest `through` (any when None)."""
    for number, key in reversed(numbered_objects(store, CHECKPOINT_PREFIX)):
        if through is not None and number > through:
            continue
        data = store.get(key)
        try:
            checkpoint = _decode_checkpoint(data) if data is not None else None
        except msgspec.DecodeError:  # damaged (or not ours): the manifests it sums are read instead
            continue
        if checkpoint is not None and checkpoint.number == number:
            return checkpoint
    return None


def numbered_objects(store: ObjectStore, prefix: str) -> list[tuple[int, str]]:
    """(n, key) of the objects `<prefix>/<n:08d>.json`, in order of n."""
    return _numbered(store.list(prefix))


def numbered_after(store: ObjectStore, prefix: str, after: int) -> list[tuple[int, str]]:
    """(n, key) of the objects `<prefix>/<n:08d>.json` with n > `after`, in order of n, listed a
    thousand numbers at a time from `after`'s thousand until a thousand holds none: a listing of
    every manifest (35,040 a year of 15-minute snapshots) took 15 s and 11 s of CPU on Azurite,
    one thousand 0.25-0.45 s. Manifests are numbered without gaps (each commit is the number
    after the latest, create-if-absent), so the first empty thousand is past the last one."""
    if after <= 0:
        return numbered_objects(store, prefix)
    found: list[tuple[int, str]] = []
    for block in itertools.count((after + 1) // 10 ** (8 - LISTED_DIGITS)):
        keys = store.list(prefix, f"{block:0{LISTED_DIGITS}d}")
        if not keys:
            return found
        found.extend((number, key) for number, key in _numbered(keys) if number > after)
    raise AssertionError("unreachable")


def _numbered(keys: list[str]) -> list[tuple[int, str]]:
    found = []
    for key in keys:
        name = key.rsplit("/", 1)[-1].removesuffix(".json")
        if key.endswith(".json") and name.isdigit():
            found.append((int(name), key))
    return sorted(found)


def manifest_at(store: ObjectStore, number: int) -> Manifest | None:
    """Manifest `number`; None when none has that number (yet)."""
    return _read_manifest(store, f"{MANIFEST_PREFIX}/{number:08d}.json")


def _read_manifests(store: ObjectStore, keys: list[str]) -> list[Manifest | None]:
    """The manifests of these keys, in their order. A remote store's are read READERS at a time:
    up to CHECKPOINT_EVERY - 1 of them follow a checkpoint, each a request (on Blob Storage a round
    trip of milliseconds), and a scheduled run reads them for its snapshot, backfill, compaction
    and day rollups."""
    if store.local_root is not None or len(keys) < 2:
        return [_read_manifest(store, key) for key in keys]
    with ThreadPoolExecutor(min(READERS, len(keys)), thread_name_prefix="manifests") as pool:
        return list(pool.map(lambda key: _read_manifest(store, key), keys))


def _read_manifest(store: ObjectStore, key: str) -> Manifest | None:
    data = store.get(key)
    return None if data is None else _decode_manifest(data)
