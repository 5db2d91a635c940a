"""Corrections: append-only, attributable records applied when a report is built.

History is never rewritten: the ledger and the snapshots stay as they are, and every report
(and the `costs` view) applies the recorded corrections on the fly. Three kinds:

- `void`: events left out of reports, named by eventId, or by a filter: one subscription over a
  UTC time range [start, end), optionally one deployment. Never "everything".
- `reassign`: a subscription's cost center for the UTC days [start, end). It wins over the
  cost-center map and over a caller-sent cost center.
- `reprice`: the UTC days [start, end) priced with another catalog (named by its version, the
  catalog's bytes are kept with the log), optionally for one model only.

How they compose: a voided event is gone before anything is priced, so a reprice or a reassign
of the same days never sees it. For the rest, the latest recorded reprice that covers a day (and
matches the model) picks the catalog, and the latest recorded reassign that covers a day picks
the cost center: a later correction overrides an earlier one for the days both cover.

A correction's id is a hash of its kind, parameters and reason (not of who or when), so the same
correction recorded twice is one correction.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

import msgspec

from pipeline.domain.costing import PeriodMemo, Reference, Resolution, Unpriced, UsageKey
from pipeline.domain.pricing import CatalogError, PriceCatalog, base_model

ID_LENGTH = 16
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CorrectionError(CatalogError):
    """A corrections file or log that cannot be used, with the place and the reason."""


class Kind(StrEnum):
    VOID = "void"
    REASSIGN = "reassign"
    REPRICE = "reprice"


class Correction(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One correction as recorded. `start`/`end` are UTC instants; for reassign and reprice
    they are midnights (whole UTC days)."""

    id: str
    kind: Kind
    reason: str
    by: str
    at: datetime
    event_ids: tuple[str, ...] = ()
    subscription_id: str | None = None
    deployment: str | None = None
    cost_center: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    catalog_version: str | None = None
    model: str | None = None

    def covers(self, day: date) -> bool:
        return (self.start is not None and self.end is not None
                and self.start.date() <= day < self.end.date())

    def matches_model(self, model: str | None) -> bool:
        return self.model is None or (model is not None and self.model in (model, base_model(model)))

    def months(self) -> list[str]:
        """The months its range touches ([] for a void by eventIds: those depend on the events)."""
        if self.start is None or self.end is None:
            return []
        months, day, last = [], self.start.date().replace(day=1), (self.end - timedelta(microseconds=1)).date()
        while day <= last:
            months.append(f"{day:%Y-%m}")
            day = (day + timedelta(days=32)).replace(day=1)
        return months

    def describe(self) -> str:
        """One line for people: what it does (the reason is shown next to it)."""
        if self.kind is Kind.VOID:
            if self.event_ids:
                return f"void {len(self.event_ids)} event id(s)"
            return (f"void {self.subscription_id}{f' / {self.deployment}' if self.deployment else ''} "
                    f"from {_instant(self.start)} to {_instant(self.end)}")
        days = f"from {_instant(self.start)} to {_instant(self.end)}"
        if self.kind is Kind.REASSIGN:
            return f"reassign {self.subscription_id} to {self.cost_center} {days}"
        return f"reprice{f' {self.model}' if self.model else ''} with catalog {self.catalog_version} {days}"


def _instant(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    if moment.time() == time(0):
        return moment.date().isoformat()
    return moment.isoformat().replace("+00:00", "Z")


def content_id(correction: Correction) -> str:
    """The hash of what a correction says (kind, parameters, reason), not of who or when."""
    content = msgspec.structs.replace(correction, id="", by="", at=EPOCH)
    return hashlib.sha256(msgspec.json.encode(content)).hexdigest()[:ID_LENGTH]


def correction(**fields: object) -> Correction:
    """A Correction with its content id filled in; event ids are sorted and deduplicated."""
    ids = fields.pop("event_ids", ())
    draft = Correction(id="", event_ids=tuple(sorted(set(ids))), **fields)  # type: ignore[arg-type, call-overload]
    return msgspec.structs.replace(draft, id=content_id(draft))


def unique(records: Iterable[Correction]) -> list[Correction]:
    """Each id once, at its first place (a correction recorded twice by racing runs counts once)."""
    first: dict[str, Correction] = {}
    for record in records:
        first.setdefault(record.id, record)
    return list(first.values())


def overlaps(a: Correction, b: Correction) -> bool:
    """Two ranges share an instant."""
    if a.start is None or a.end is None or b.start is None or b.end is None:
        return False
    return a.start < b.end and b.start < a.end


@dataclass(frozen=True, slots=True)
class Corrections:
    """The recorded corrections in log order (each id once), with the catalogs reprices name."""

    records: tuple[Correction, ...] = ()
    catalogs: Mapping[str, PriceCatalog] = field(default_factory=dict)
    _by_kind: dict[Kind, tuple[Correction, ...]] = field(default_factory=dict, init=False, repr=False,
                                                         compare=False)
    # The resolutions of the last reference resolved against (a report resolves ~1 key per group).
    _memo: tuple[Reference, PeriodMemo] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(unique(self.records)))
        for kind in Kind:
            self._by_kind[kind] = tuple(c for c in self.records if c.kind is kind)
        for record in self.of(Kind.REPRICE):
            if record.catalog_version not in self.catalogs:
                raise CorrectionError(f"correction {record.id}: catalog {record.catalog_version} is not available")

    def of(self, kind: Kind) -> list[Correction]:
        return list(self._by_kind[kind])

    def by_id(self, ids: Iterable[str]) -> list[Correction]:
        wanted = set(ids)
        return [c for c in self.records if c.id in wanted]

    def void_ids(self) -> list[tuple[str, str]]:
        """(eventId, correction id) of every void by id."""
        return [(event_id, c.id) for c in self.of(Kind.VOID) for event_id in c.event_ids]

    def void_filters(self) -> list[Correction]:
        return [c for c in self.of(Kind.VOID) if not c.event_ids]

    def resolve(self, reference: Reference, key: UsageKey) -> Resolution:
        """The reference's resolution, then the corrections in force for the key's day."""
        if not self.records:
            return reference.resolve(key)
        memo = self._memo
        if memo is None or memo[0] is not reference:
            memo = (reference, PeriodMemo(self.boundaries(reference)))
            object.__setattr__(self, "_memo", memo)
        return memo[1].get(key, lambda k, _: self._resolve(reference, k))

    def boundaries(self, reference: Reference) -> set[date]:
        """The days on which the resolution of a key may change: the reference's, the
        corrections' and those of the catalogs reprices name."""
        days = reference.boundaries()
        for record in self.records:
            days.update(moment.date() for moment in (record.start, record.end) if moment is not None)
        for record in self._by_kind[Kind.REPRICE]:
            if record.catalog_version is not None:
                days |= self.catalogs[record.catalog_version].boundaries()
        return days

    def _resolve(self, reference: Reference, key: UsageKey) -> Resolution:
        base = reference.resolve(key)
        resolved, applied = base, []
        reprice = _last(c for c in self._by_kind[Kind.REPRICE] if c.covers(key.day) and c.matches_model(base.model))
        if reprice is not None and reprice.catalog_version is not None:
            catalog = self.catalogs[reprice.catalog_version]
            repriced = dataclasses.replace(reference, catalog=catalog).resolve(key)
            # the other catalog was consulted (never for provisioned usage, which has no per-token price)
            if not repriced.provisioned and repriced.unpriced in (None, Unpriced.NO_PRICE):
                detail = f"{repriced.detail} in catalog {catalog.version} (correction {reprice.id})"
                resolved = dataclasses.replace(repriced, detail=detail if repriced.detail else "")
                applied.append(reprice.id)
        reassign = _last(self._reassigns(key))
        if reassign is not None and reassign.cost_center is not None:
            resolved = dataclasses.replace(resolved, cost_center=reassign.cost_center)
            applied.append(reassign.id)
        if not applied:
            return base
        return dataclasses.replace(resolved, corrections=tuple(applied), uncorrected=base)

    def reassigned_to(self, key: UsageKey) -> set[str]:
        """Every cost center a reassign recorded for the key's subscription and day names (the
        latest wins; the others explain where cost moved from when it overrode them)."""
        if not self._by_kind[Kind.REASSIGN]:
            return set()
        return {c.cost_center for c in self._reassigns(key) if c.cost_center is not None}

    def _reassigns(self, key: UsageKey) -> list[Correction]:
        return [c for c in self._by_kind[Kind.REASSIGN]
                if c.subscription_id == key.subscription_id and c.covers(key.day)]


def _last(found: Iterable[Correction]) -> Correction | None:
    latest = None
    for latest in found:  # noqa: B007 - the last one recorded wins
        pass
    return latest


NO_CORRECTIONS = Corrections()
