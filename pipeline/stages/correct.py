"""Record corrections in the corrections log, and read them back for reports.

The log lives in the object store's `corrections` area, next to the snapshots, so that the
embedded and the Azure deployments share one code path and a report needs only the store. It
is a log of numbered objects `<n:08d>.json`, each created-if-absent, like the snapshot
manifests: one `chargeback correct` run appends one entry holding every new correction of its
file, so a file is recorded whole or not at all. Two runs racing for the same number cannot both
win; the loser reads the log again (dropping what the winner recorded) and takes the next number.
A reprice's catalog is stored first as `catalogs/<version>.csv` (create-if-absent; the version is
the hash of its bytes), so a report can always re-load exactly that catalog.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec

from pipeline.domain.corrections import (
    Correction,
    CorrectionError,
    Corrections,
    Kind,
    content_id,
    overlaps,
    unique,
)
from pipeline.domain.pricing import CatalogError, PriceCatalog
from pipeline.inputs.catalog import load_price_catalog
from pipeline.ports import ObjectStore

CATALOGS = "catalogs"
MAX_ATTEMPTS = 100
_ENTRY = re.compile(r"^(\d{8})\.json$")


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    recorded_at: datetime
    by: str
    source: str  # the corrections file's name
    corrections: list[Correction]


@dataclass(slots=True)
class RecordResult:
    recorded: list[Correction] = field(default_factory=list)
    already: list[Correction] = field(default_factory=list)  # recorded before (same content id)
    entry: int | None = None  # the log entry written (None: nothing new, or a dry run)
    superseded: list[tuple[Correction, Correction]] = field(default_factory=list)  # (new, earlier) overlaps


def catalog_key(version: str) -> str:
    return f"{CATALOGS}/{version}.csv"


def read_log(store: ObjectStore) -> list[LogEntry]:
    """Every log entry, in order. An entry whose correction ids do not match their content fails."""
    decoder = msgspec.json.Decoder(LogEntry)
    entries = []
    for key in store.list(""):
        if not _ENTRY.match(key):
            continue
        data = store.get(key)
        if data is None:
            continue
        try:
            entry = decoder.decode(data)
        except msgspec.DecodeError as error:
            raise CorrectionError(f"{store.url}/{key}: not a corrections log entry: {error}") from None
        for record in entry.corrections:
            if content_id(record) != record.id:
                raise CorrectionError(f"{store.url}/{key}: correction {record.id} does not match its content")
        entries.append(entry)
    return sorted(entries, key=lambda entry: entry.number)


def recorded(store: ObjectStore) -> list[Correction]:
    """Every recorded correction in log order, each id once (the first record of it)."""
    return unique(c for entry in read_log(store) for c in entry.corrections)


def load_corrections(store: ObjectStore) -> Corrections:
    """The recorded corrections with the catalogs their reprices name, loaded from the store."""
    records = recorded(store)
    catalogs: dict[str, PriceCatalog] = {}
    for record in records:
        version = record.catalog_version
        if record.kind is Kind.REPRICE and version is not None and version not in catalogs:
            catalogs[version] = _load_catalog(store, version, record.id)
    return Corrections(tuple(records), catalogs)


def _load_catalog(store: ObjectStore, version: str, correction_id: str) -> PriceCatalog:
    data = store.get(catalog_key(version))
    if data is None:
        raise CorrectionError(f"correction {correction_id}: catalog {store.url}/{catalog_key(version)} is missing")
    with tempfile.TemporaryDirectory(prefix="chargeback-catalog-") as folder:
        path = Path(folder) / f"{version}.csv"
        path.write_bytes(data)
        try:
            catalog = load_price_catalog(path)
        except CatalogError as error:
            raise CorrectionError(f"correction {correction_id}: stored catalog {version}: {error}") from None
    if catalog.version != version:
        raise CorrectionError(f"correction {correction_id}: stored catalog {version} has changed ({catalog.version})")
    return catalog


def record(store: ObjectStore, corrections: Iterable[Correction], catalogs: Mapping[str, bytes], *,
           by: str, at: datetime, source: str, dry_run: bool = False) -> RecordResult:
    """Append the corrections not recorded yet as one log entry; returns what was new."""
    wanted = list(corrections)
    for _ in range(MAX_ATTEMPTS):
        entries = read_log(store)
        known = {c.id for entry in entries for c in entry.corrections}
        result = RecordResult(recorded=[c for c in wanted if c.id not in known],
                              already=[c for c in wanted if c.id in known])
        earlier = [c for entry in entries for c in entry.corrections]
        result.superseded = [(new, old) for new in result.recorded for old in earlier if _overrides(new, old)]
        if not result.recorded or dry_run:
            return result
        for version in {c.catalog_version for c in result.recorded if c.catalog_version}:
            _store_catalog(store, version, catalogs[version])
        number = entries[-1].number + 1 if entries else 1
        entry = LogEntry(number=number, recorded_at=at, by=by, source=source, corrections=result.recorded)
        if store.put(f"{number:08d}.json", msgspec.json.encode(entry), overwrite=False):
            result.entry = number
            return result
    raise CorrectionError(f"could not append to the corrections log {store.url} after {MAX_ATTEMPTS} attempts")


def _store_catalog(store: ObjectStore, version: str, data: bytes) -> None:
    key = catalog_key(version)
    if not store.put(key, data, overwrite=False) and store.get(key) != data:
        raise CorrectionError(f"{store.url}/{key} holds other bytes than catalog {version}")


def _overrides(new: Correction, old: Correction) -> bool:
    """A later reassign or reprice wins over an earlier one for the days both cover."""
    if new.kind is not old.kind or new.kind is Kind.VOID or not overlaps(new, old):
        return False
    if new.kind is Kind.REASSIGN:
        return new.subscription_id == old.subscription_id
    return new.model is None or old.model is None or new.model == old.model

