"""Azure Retail Prices API pages (JSON, `Items` + `NextPageLink`) turned into catalog rows.

Meter names are abbreviated inconsistently across model families (`gpt 4.1 mini Inp glbl`,
`GPT 5 Mini cchd Inpt Glbl`, `5.4 mini Inp Gl`); the rules below read them word by word. A meter
the rules cannot read is listed in `unmapped`, never guessed. Money stays exact: pages are parsed
with `parse_float=Decimal`; a `1K` price x 1000 is the per-1M price."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pipeline.domain.errors import UserError
from pipeline.domain.pricing import STANDARD

REQUIRED = ("meterId", "meterName", "retailPrice", "unitOfMeasure", "effectiveStartDate", "armRegionName",
            "currencyCode", "type")
TOKEN_CLASSES = ("input", "cached_input", "output", "audio_input", "audio_output")
OUT_COLUMNS = ("model", "deployment_type", "region", "effective_from", "effective_to", "currency",
               "input_per_1m", "cached_input_per_1m", "output_per_1m", "service_tier", "audio_input_per_1m",
               "audio_output_per_1m")
_UNITS = {"1K": Decimal(1000), "1M": Decimal(1)}
_CACHED = {"cchd", "cd", "cached", "cache", "cchd."}
_INPUT = {"inp", "inpt", "input", "in"}
_OUTPUT = {"outp", "outpt", "opt", "output", "out"}
_AUDIO = {"aud", "audio"}
_GLOBAL = {"glbl", "gl", "global", "glb"}
_DATAZONE = {"dzone", "dz", "datazone"}
_REGIONAL = {"rgnl", "regional", "regnl"}
_TIERS = {"flex": "flex", "priority": "priority", "prio": "priority"}
_NOISE = {"std", "standard", "tokens", "token", "1k", "1m"}  # `1K Tokens`, `1M Tokens` end some names
# Context-length tiers (`5.6 sol ShortCo Inp Std Gl`, `... LongCo ...`) are priced apart; the catalog
# has no context dimension, so such meters are listed for --overrides, never folded into one price.
_CONTEXT_TIERS = {"shortco", "longco"}


class RetailPricesError(UserError):
    """A Retail Prices page that cannot be read: names the file, the item and the problem."""


@dataclass(frozen=True, slots=True)
class MeterMapping:
    model: str
    token_class: str
    deployment_type: str
    service_tier: str


@dataclass(slots=True)
class ImportResult:
    """What an import did: rows written, and every meter skipped or left unmapped, with why."""

    rows: list[dict[str, str]] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # "meterName (meterId): reason"
    skipped: list[str] = field(default_factory=list)   # on purpose: PTU, reservations, tiers, dev/test
    incomplete: list[str] = field(default_factory=list)  # rows without an input or output price: not written
    items: int = 0


def read_page(path: Path, data: bytes) -> list[dict[str, object]]:
    """The items of one page, each with the required fields, or one RetailPricesError line."""
    try:
        page = json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as error:
        raise RetailPricesError(f"{path}: not JSON ({error})") from None
    if not isinstance(page, dict):
        raise RetailPricesError(f"{path}: not a Retail Prices page (a JSON object with `Items`)")
    items = page.get("Items")
    if not isinstance(items, list):
        raise RetailPricesError(f"{path}: no `Items` list: not a Retail Prices page")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise RetailPricesError(f"{path}: item {index} is not an object")
        missing = [name for name in REQUIRED if item.get(name) in (None, "")]
        if missing:
            raise RetailPricesError(f"{path}: item {index} (meterId {item.get('meterId', '?')}) lacks "
                                    f"{', '.join(missing)}")
        if not isinstance(item["retailPrice"], (Decimal, int)):
            raise RetailPricesError(f"{path}: item {index} (meterId {item['meterId']}) retailPrice is not a number")
    return items


def map_meter(name: str) -> MeterMapping | str:
    """The meter's model, token class, deployment type and tier, or why the rules cannot tell."""
    words = re.sub(r"[-_]", " ", name).split()
    lowered = [w.lower() for w in words]
    cached = any(w in _CACHED for w in lowered)
    audio = any(w in _AUDIO for w in lowered)
    inp = any(w in _INPUT for w in lowered)
    out = any(w in _OUTPUT for w in lowered)
    if inp == out:
        return "neither or both of input/output in the name"
    if any(w in _CONTEXT_TIERS for w in lowered):
        return "a context-length tier (ShortCo/LongCo): the catalog has no context dimension; map it with --overrides"
    if cached and out:
        return "cached output is not a token class"
    if audio and cached:
        return "cached audio is not a token class here"
    token_class = ("audio_" if audio else "cached_" if cached else "") + ("input" if inp else "output")
    kinds = [w for w, t in (("global", _GLOBAL), ("datazone", _DATAZONE), ("regional", _REGIONAL))
             if any(x in t for x in lowered)]
    batch = "batch" in lowered
    data_zone = " ".join(lowered).count("data zone") > 0
    if data_zone:
        kinds.append("datazone")
    if len(set(kinds)) > 1:
        return f"several deployment types in the name ({', '.join(sorted(set(kinds)))})"
    deployment_type = "batch" if batch else (kinds[0] if kinds else "")
    if not deployment_type:
        return "no deployment type (glbl/DZone/Rgnl/Batch) in the name"
    if batch and kinds and kinds[0] == "datazone":
        return "data zone batch has no catalog deployment type"
    tier = next((_TIERS[w] for w in lowered if w in _TIERS), STANDARD)
    known = _CACHED | _AUDIO | _INPUT | _OUTPUT | _GLOBAL | _DATAZONE | _REGIONAL | set(_TIERS) | _NOISE | {"batch"}
    rest = [w for w, low in zip(words, lowered, strict=True)
            if low not in known and not (data_zone and low in {"data", "zone"})]
    if not rest:
        return "no model in the name"
    model = "-".join(w.lower() for w in rest)
    if re.match(r"^\d", model):  # `5.4 mini` is gpt-5.4-mini; `o3 mini` stays o3-mini
        model = "gpt-" + model
    return MeterMapping(model, token_class, deployment_type, tier)


def read_overrides(path: Path, data: bytes) -> dict[str, MeterMapping | None]:
    """meterId or meterName -> mapping (None: `skip`). CSV: meter,model,token_class,deployment_type,service_tier."""
    overrides: dict[str, MeterMapping | None] = {}
    for number, line in enumerate(data.decode("utf-8-sig").splitlines(), start=1):
        cells = [c.strip() for c in line.split(",")]
        if not line.strip() or line.startswith("#") or cells[0] == "meter":
            continue
        if len(cells) >= 2 and cells[1].lower() == "skip":
            overrides[cells[0]] = None
            continue
        if len(cells) != 5 or cells[2] not in TOKEN_CLASSES:
            raise RetailPricesError(f"{path}:{number}: expected meter,model,token_class,deployment_type,"
                                    f"service_tier (token_class one of {', '.join(TOKEN_CLASSES)}) or meter,skip")
        overrides[cells[0]] = MeterMapping(cells[1], cells[2], cells[3], cells[4] or STANDARD)
    return overrides


def import_pages(pages: list[list[dict[str, object]]], region: str | None = None,
                 overrides: dict[str, MeterMapping | None] | None = None) -> ImportResult:
    """Catalog rows (one per model, deployment type, region, tier and start date) from the pages' items."""
    overrides = overrides or {}
    result = ImportResult()
    prices: dict[tuple[str, str, str, str, str, str], dict[str, Decimal]] = {}
    for items in pages:
        for item in items:
            result.items += 1
            meter = f"{item['meterName']} ({item['meterId']})"
            if item["type"] != "Consumption":
                result.skipped.append(f"{meter}: type {item['type']}")
                continue
            unit = str(item["unitOfMeasure"])
            if unit in {"1/Hour", "1/Month", "1/Year"}:
                result.skipped.append(f"{meter}: unit {unit} (provisioned capacity, not priced per token)")
                continue
            if Decimal(str(item.get("tierMinimumUnits") or 0)) > 0:
                result.skipped.append(f"{meter}: tierMinimumUnits {item['tierMinimumUnits']} (a volume tier)")
                continue
            key = str(item["meterId"]) if str(item["meterId"]) in overrides else str(item["meterName"])
            if key in overrides:
                mapping = overrides[key]
                if mapping is None:
                    result.skipped.append(f"{meter}: skip in the overrides")
                    continue
            else:
                found = map_meter(str(item["meterName"]))
                if isinstance(found, str):
                    result.unmapped.append(f"{meter}: {found}")
                    continue
                mapping = found
            if unit not in _UNITS:
                result.unmapped.append(f"{meter}: unit {unit} is neither 1K nor 1M")
                continue
            per_1m = Decimal(item["retailPrice"]) * _UNITS[unit]  # type: ignore[arg-type]
            row_region = region or str(item["armRegionName"])
            start = str(item["effectiveStartDate"])[:10]
            row = (mapping.model, mapping.deployment_type, row_region, mapping.service_tier, str(item["currencyCode"]),
                   start)
            prices.setdefault(row, {})[mapping.token_class] = per_1m.normalize()
    result.rows = _dated_rows(prices, result)
    return result


def _dated_rows(prices: dict[tuple[str, str, str, str, str, str], dict[str, Decimal]],
                result: ImportResult) -> list[dict[str, str]]:
    """A row per key, in key order; a key's row ends where the next start of the same model,
    type, region, tier and currency begins (the next key in that order)."""
    rows: list[dict[str, str]] = []
    keys = sorted(prices)
    for index, key in enumerate(keys):
        model, kind, region, tier, currency, start = key
        following = keys[index + 1] if index + 1 < len(keys) else None
        end = following[5] if following is not None and following[:5] == key[:5] else ""
        found = prices[key]
        if "input" not in found or "output" not in found:
            result.incomplete.append(f"{model} {kind} {region} {tier} from {start}: no "
                                     f"{'input' if 'input' not in found else 'output'} price")
            continue
        rows.append({"model": model, "deployment_type": kind, "region": region, "effective_from": start,
                     "effective_to": end, "currency": currency,
                     "input_per_1m": _text(found.get("input")), "cached_input_per_1m": _text(found.get("cached_input")),
                     "output_per_1m": _text(found.get("output")),
                     "service_tier": "" if tier == STANDARD else tier,
                     "audio_input_per_1m": _text(found.get("audio_input")),
                     "audio_output_per_1m": _text(found.get("audio_output"))})
    return rows


def _text(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def catalog_text(result: ImportResult, source: str, on: str) -> str:
    lines = [f"# source: Azure Retail Prices API ({source}), list prices per 1M tokens",
             f"# date: {on}", ",".join(OUT_COLUMNS)]
    lines += [",".join(row[c] for c in OUT_COLUMNS) for row in result.rows]
    return "\n".join(lines) + "\n"
