"""Read a corrections file (YAML: a list of mappings; CSV: one correction per line), validated whole.

Fields: kind (void | reassign | reprice), reason (always), and per kind:
    void      event_ids (a list, or ids separated by `;` or spaces)
              or subscription_id + from + to (UTC dates or instants with an offset), optional deployment
    reassign  subscription_id, cost_center, from, to (UTC dates; `to` exclusive)
    reprice   catalog (a price catalog CSV; relative to the corrections file), from, to, optional model
Every problem of every entry is collected; `parse_corrections_file` raises one CorrectionError
listing them (by line for CSV, by entry number for YAML), so nothing is recorded from a file
with any mistake in it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from pipeline.domain.corrections import Correction, CorrectionError, Kind, correction, overlaps
from pipeline.domain.errors import ChargebackError
from pipeline.domain.pricing import CatalogError, base_model
from pipeline.inputs.catalog import load_price_catalog
from pipeline.inputs.csv_rows import data_rows

COLUMNS = ("kind", "event_ids", "subscription_id", "deployment", "cost_center", "from", "to", "catalog",
           "model", "reason")
FIELDS = {
    Kind.VOID: {"event_ids", "subscription_id", "deployment", "from", "to"},
    Kind.REASSIGN: {"subscription_id", "cost_center", "from", "to"},
    Kind.REPRICE: {"catalog", "from", "to", "model"},
}
MAX_TEXT = 256
MAX_REASON = 2000
EARLIEST = date(2015, 1, 1)
_SEPARATORS = re.compile(r"[;\s]+")


@dataclass(slots=True)
class ParsedFile:
    path: Path
    corrections: list[Correction] = field(default_factory=list)
    catalogs: dict[str, bytes] = field(default_factory=dict)  # version -> the catalog file's bytes


class _Problem(ChargebackError):
    pass


def parse_corrections_file(path: Path, by: str, at: datetime) -> ParsedFile:
    """Every correction of the file (recorded by `by` at `at`), or CorrectionError naming each mistake."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorrectionError(f"cannot read {path}: {error.strerror}") from None
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        raise CorrectionError(f"{path}: expected a .yaml, .yml or .csv corrections file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CorrectionError(f"{path}: not UTF-8 text") from None
    entries = _csv_entries(path, text) if suffix == ".csv" else _yaml_entries(path, text)
    parsed, problems = ParsedFile(path), []
    places: list[str] = []
    for where, values in entries:
        try:
            parsed.corrections.append(_entry(values, path.parent, by, at, parsed.catalogs))
            places.append(where)
        except _Problem as problem:
            problems.append(f"{where}: {problem}")
    problems.extend(_conflicts(parsed.corrections, places))
    if not parsed.corrections and not problems:
        problems.append("no corrections in the file")
    if problems:
        head = f"{path}: " + (problems[0] if len(problems) == 1 else f"{len(problems)} problems")
        raise CorrectionError("\n  ".join([f"{head}; nothing recorded", *problems[len(problems) == 1:]]))
    return parsed


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but dates and timestamps stay text: they are read here, entry by
    entry, so that a bad one is reported with its entry instead of failing the whole file."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

Entries = Iterator[tuple[str, dict[str, Any] | str]]  # (place, fields or what is wrong with them)


def _yaml_entries(path: Path, text: str) -> Entries:
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise CorrectionError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(document, list):
        raise CorrectionError(f"{path}: expected a YAML list of corrections (- kind: ...)")
    for index, item in enumerate(document, start=1):
        yield f"entry {index}", item if isinstance(item, dict) else "expected a mapping (kind: ..., reason: ...)"


def _csv_entries(path: Path, text: str) -> Entries:
    header: list[str] | None = None
    for where, values in data_rows(text, path, line="line {}".format, error=CorrectionError):
        if header is None:
            header = [h.strip() for h in values]
            unknown = [h for h in header if h not in COLUMNS]
            if unknown or "kind" not in header or "reason" not in header:
                raise CorrectionError(f"{path}:{where}: expected the columns {','.join(COLUMNS)} "
                                      f"(kind and reason at least); got {','.join(header)}")
            continue
        if len(values) != len(header):
            yield where, f"{len(values)} values for {len(header)} columns"
            continue
        yield where, {name: value for name, value in zip(header, values, strict=True) if value.strip()}
    if header is None:
        raise CorrectionError(f"{path}: empty file; expected the header {','.join(COLUMNS)}")


def _entry(values: dict[str, Any] | str, folder: Path, by: str, at: datetime,
           catalogs: dict[str, bytes]) -> Correction:
    if isinstance(values, str):
        raise _Problem(values)
    unknown = sorted(str(name) for name in values if name not in COLUMNS)
    if unknown:
        raise _Problem(f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(COLUMNS)}")
    kind_text = _text(values, "kind")
    if kind_text not in {k.value for k in Kind}:
        raise _Problem(f"kind {kind_text!r} must be one of void, reassign, reprice")
    kind = Kind(kind_text)
    reason = _text(values, "reason", limit=MAX_REASON)
    extra = sorted(name for name in values if name not in FIELDS[kind] | {"kind", "reason"})
    if extra:
        raise _Problem(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to a {kind}")
    common: dict[str, Any] = {"kind": kind, "reason": reason, "by": by, "at": at}
    if kind is Kind.VOID:
        if "event_ids" in values:
            if {"subscription_id", "from", "to", "deployment"} & values.keys():
                raise _Problem("a void names either event_ids or subscription_id with from/to, not both")
            return correction(**common, event_ids=_ids(values["event_ids"]))
        if not {"subscription_id", "from", "to"} <= values.keys():
            raise _Problem("a void needs event_ids, or subscription_id with from and to (never everything)")
        start, end = _range(values, dates_only=False)
        return correction(**common, subscription_id=_text(values, "subscription_id"), start=start, end=end,
                          deployment=_text(values, "deployment") if "deployment" in values else None)
    start, end = _range(values, dates_only=True)
    if kind is Kind.REASSIGN:
        return correction(**common, subscription_id=_text(values, "subscription_id"),
                          cost_center=_text(values, "cost_center"), start=start, end=end)
    catalog_path = folder / _text(values, "catalog", limit=4096)
    try:
        data = catalog_path.read_bytes()
        catalog = load_price_catalog(catalog_path)
    except OSError as error:
        raise _Problem(f"catalog {catalog_path}: {error.strerror}") from None
    except CatalogError as error:
        raise _Problem(f"catalog: {error}") from None
    if hashlib.sha256(data).hexdigest()[:len(catalog.version)] != catalog.version:
        raise _Problem(f"catalog {catalog_path} changed while it was read")
    catalogs[catalog.version] = data
    model = _text(values, "model") if "model" in values else None
    if model is not None and not {model, base_model(model)} & catalog.models:
        raise _Problem(f"model {model!r} has no price in catalog {catalog_path}")
    return correction(**common, catalog_version=catalog.version, model=model, start=start, end=end)


def _text(values: dict[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    value = values.get(name)
    if value is None or isinstance(value, (dict, list)):
        raise _Problem(f"{name} is missing" if value is None else f"{name} must be a single value")
    text = str(value).strip()
    if not text:
        raise _Problem(f"{name} is empty")
    if len(text) > limit:
        raise _Problem(f"{name} is longer than {limit} characters")
    return text


def _ids(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else _SEPARATORS.split(str(value or ""))
    ids = tuple(str(item).strip() for item in items if item is not None and str(item).strip())
    if not ids:
        raise _Problem("event_ids is empty")
    if any(len(i) > MAX_TEXT or _SEPARATORS.search(i) for i in ids):
        raise _Problem("event_ids: an id is longer than 256 characters or holds a space or ';'")
    return ids


def _range(values: dict[str, Any], dates_only: bool) -> tuple[datetime, datetime]:
    start, end = (_moment(values, name, dates_only) for name in ("from", "to"))
    if start >= end:
        raise _Problem(f"from {values['from']} is not before to {values['to']} (to is exclusive)")
    return start, end


def _moment(values: dict[str, Any], name: str, dates_only: bool) -> datetime:
    if values.get(name) is None:
        raise _Problem(f"{name} is missing")
    value = values[name]
    text = str(value).strip()
    wanted = "a UTC date (YYYY-MM-DD)" + ("" if dates_only else " or an instant with an offset (2026-10-05T10:00Z)")
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        elif dates_only:
            raise ValueError(text)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Problem(f"{name} {text!r} is not {wanted}") from None
    if moment.tzinfo is None:
        raise _Problem(f"{name} {text!r} has no UTC offset; add Z or +HH:MM")
    moment = moment.astimezone(UTC)
    if moment.date() < EARLIEST or moment.year > 9998:
        raise _Problem(f"{name} {text!r} is out of range")
    return moment


def _conflicts(corrections: list[Correction], places: list[str]) -> Iterator[str]:
    for (a, where_a), (b, where_b) in combinations(zip(corrections, places, strict=True), 2):
        if a.id == b.id:
            yield f"{where_b}: the same correction as {where_a}"
        elif a.kind is b.kind is Kind.REASSIGN and a.subscription_id == b.subscription_id and overlaps(a, b):
            yield f"{where_b}: reassigns {b.subscription_id} for days that {where_a} reassigns too"
        elif (a.kind is b.kind is Kind.REPRICE and overlaps(a, b)
              and (a.model is None or b.model is None or a.model == b.model)):
            yield f"{where_b}: reprices days that {where_a} reprices too, for the same model(s)"
