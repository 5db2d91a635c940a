"""The price catalog (CSV, prices per 1M tokens), loaded and checked whole: every problem is
listed at once (overlapping effective ranges, negative or malformed prices, unknown currencies,
and unit mistakes: a `unit` column or price columns that say per 1K tokens, or a price 100x or
more away from the shipped catalog's for the same model, deployment type and currency, the
classic per-1K-vs-per-1M slip). Lines starting with `#` are comments (the shipped catalog names
its source and date there)."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path

from pipeline.domain.pricing import (
    SERVICE_TIERS,
    STANDARD,
    CatalogError,
    Price,
    PriceCatalog,
    base_model,
    loose_key,
    overlap_problems,
)
from pipeline.inputs.csv_rows import (
    amount,
    currency,
    day,
    optional_amount,
    optional_day,
    read_file,
    required,
    table_rows,
)

PRICE_COLUMNS = ("model", "deployment_type", "region", "effective_from", "effective_to", "currency",
                 "input_per_1m", "cached_input_per_1m", "output_per_1m")
# Optional columns: `service_tier` (blank = standard), the audio token prices (blank = none: audio
# tokens of that model are then unpriced, never priced as text).
OPTIONAL_PRICE_COLUMNS = ("service_tier", "audio_input_per_1m", "audio_output_per_1m")
PRICE_KINDS = ("input_per_1m", "cached_input_per_1m", "output_per_1m")
AUDIO_KINDS = ("audio_input_per_1m", "audio_output_per_1m")
# A price this many times away from the shipped catalog's (same model, type, currency) is a unit mistake.
UNIT_MISTAKE_RATIO = Decimal(100)
_PER_OTHER_UNIT = re.compile(r"^(input|cached_input|output)_per_(1k|1000|k|token|tokens|1|1b|100)$", re.IGNORECASE)
_UNITS_PER_1M = {"1m", "1mtokens", "m", "million", "milliontokens", "1000000", "1000000tokens", "1e6"}
_UNITS_PER_1K = {"1k", "1ktokens", "k", "thousand", "thousandtokens", "1000", "1000tokens", "1e3"}
_UNITS_PER_TOKEN = {"1", "token", "1token", "tokens"}


def shipped_catalog_path() -> Path:
    return Path(str(resources.files("pipeline") / "data" / "prices.csv"))


@dataclass(slots=True)
class CatalogCheck:
    """A price catalog checked whole: its prices, or every problem found."""

    path: Path
    version: str
    prices: list[Price] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not errors: what was not or could not be checked
    comments: list[str] = field(default_factory=list)  # the file's `#` lines

    @property
    def ok(self) -> bool:
        return not self.errors

    def catalog(self) -> PriceCatalog:
        if self.errors:
            shown = self.errors[:20]
            more = f"\n... and {len(self.errors) - len(shown)} more" if len(self.errors) > len(shown) else ""
            raise CatalogError("\n".join(shown) + more)
        return PriceCatalog(self.prices, self.version)


def load_price_catalog(path: Path) -> PriceCatalog:
    """The catalog in `path`, or a CatalogError listing every problem."""
    return check_price_catalog(path).catalog()


def check_price_catalog(path: Path, shipped: PriceCatalog | None = None) -> CatalogCheck:
    """Check a catalog whole. `shipped` (default: the shipped catalog) is what prices are
    compared with to catch unit mistakes; a file identical to the shipped one is not compared."""
    data = read_file(path)
    check = CatalogCheck(path, hashlib.sha256(data).hexdigest()[:12])
    check.comments = _comment_lines(data)
    unit_column = False

    def header_check(header: list[str], where: str) -> None:
        nonlocal unit_column
        unit_column = "unit" in header
        wrong = [h for h in header if _PER_OTHER_UNIT.match(h)]
        if wrong:
            raise CatalogError(f"{where}: column(s) {', '.join(wrong)} are not per 1M tokens: this catalog takes "
                               f"prices per 1M tokens ({', '.join(PRICE_KINDS)}); a per-1K price x 1000 is the "
                               "per-1M price")

    for where, row in table_rows(path, data, PRICE_COLUMNS, header_check=header_check, problems=check.errors):
        try:
            if unit_column:
                _check_unit(row["unit"], where)
            check.prices.append(_price_row(row, where))
        except CatalogError as error:
            check.errors.append(str(error))
    if not check.prices and not check.errors:
        check.errors.append(f"{path}: the price catalog has no prices")
    check.errors.extend(overlap_problems(check.prices))
    reference = shipped if shipped is not None else _shipped_catalog()
    if reference is not None and reference.version != check.version:
        _compare_units(check, reference)
    return check


def _price_row(row: dict[str, str], where: str) -> Price:
    cached = row["cached_input_per_1m"].strip()
    problems: list[str] = []

    def attempt(parse: Callable[[], object]) -> object:
        try:
            return parse()
        except CatalogError as error:
            problems.append(str(error))
            return None

    values = {
        "service_tier": attempt(lambda: _tier(row, where)),
        "audio_input_per_1m": attempt(lambda: optional_amount(row, "audio_input_per_1m", where)),
        "audio_output_per_1m": attempt(lambda: optional_amount(row, "audio_output_per_1m", where)),
        "model": attempt(lambda: required(row, "model", where)),
        "deployment_type": attempt(lambda: required(row, "deployment_type", where)),
        "effective_from": attempt(lambda: day(row, "effective_from", where)),
        "effective_to": attempt(lambda: optional_day(row, "effective_to", where)),
        "currency": attempt(lambda: currency(row, where)),
        "input_per_1m": attempt(lambda: amount(row, "input_per_1m", where)),
        # No cached price means no cache discount: cached tokens cost the input price.
        "cached_input_per_1m": attempt(lambda: amount(row, "cached_input_per_1m" if cached else "input_per_1m",
                                                      where)),
        "output_per_1m": attempt(lambda: amount(row, "output_per_1m", where)),
    }
    if problems:
        raise CatalogError("\n".join(dict.fromkeys(problems)))
    price = Price(region=row["region"].strip() or "*", origin=where, **values)  # type: ignore[arg-type]
    if price.effective_to is not None and price.effective_to <= price.effective_from:
        raise CatalogError(f"{where}: effective_to {price.effective_to} is not after "
                           f"effective_from {price.effective_from}")
    return price


def _tier(row: dict[str, str], where: str) -> str:
    tier = (row.get("service_tier") or "").strip().lower() or STANDARD
    if tier not in SERVICE_TIERS:
        raise CatalogError(f"{where}: service_tier {tier!r} is not one of {', '.join(SERVICE_TIERS)} "
                           "(blank = standard)")
    return tier


def _check_unit(value: str, where: str) -> None:
    unit = re.sub(r"[\s_/-]|per", "", value.strip().lower())
    if unit in _UNITS_PER_1M:
        return
    if unit in _UNITS_PER_1K:
        raise CatalogError(f"{where}: unit {value.strip()!r}: prices here are per 1M tokens; multiply a per-1K "
                           "price by 1000 and write unit 1M")
    if unit in _UNITS_PER_TOKEN:
        raise CatalogError(f"{where}: unit {value.strip()!r}: prices here are per 1M tokens; multiply a per-token "
                           "price by 1,000,000 and write unit 1M")
    raise CatalogError(f"{where}: unit {value.strip()!r} is not known; prices here are per 1M tokens (unit 1M)")


def _compare_units(check: CatalogCheck, shipped: PriceCatalog) -> None:
    """A price 100x or more away from the shipped one for the same model (or its base name),
    deployment type and currency is a unit mistake (per 1K vs per 1M, or per token)."""
    skipped_currencies: set[str] = set()
    for price in check.prices:
        known = [p for p in shipped.prices
                 if p.model in (price.model, base_model(price.model))
                 and loose_key(p.deployment_type) == loose_key(price.deployment_type)
                 and p.service_tier == price.service_tier]
        if not known:
            continue
        same = [p for p in known if p.currency == price.currency]
        if not same:
            skipped_currencies.add(price.currency)
            continue
        ref = next((p for p in same if p.in_force(price.effective_from)), same[-1])
        for kind in (*PRICE_KINDS, *AUDIO_KINDS):
            mine, theirs = getattr(price, kind), getattr(ref, kind)
            if mine is None or theirs is None or mine == 0 or theirs == 0:
                continue
            ratio = mine / theirs
            if ratio >= UNIT_MISTAKE_RATIO or ratio <= 1 / UNIT_MISTAKE_RATIO:
                times = f"{ratio:,.0f}x" if ratio > 1 else f"1/{1 / ratio:,.0f}"
                hint = ("a price per 1K tokens? Prices here are per 1M tokens: multiply per-1K prices by 1000"
                        if ratio < 1 else "a price per 1K tokens multiplied by 1000 again, or per 1B tokens? "
                        "Prices here are per 1M tokens")
                check.errors.append(
                    f"{price.origin}: {kind} {mine} for {price.model} ({price.deployment_type}, {price.currency}) is "
                    f"{times} the shipped catalog's {theirs} ({ref.origin.rsplit('/', 1)[-1]}): {hint}")
    for code in sorted(skipped_currencies):
        check.notes.append(f"prices in {code} were not compared with the shipped catalog (it is in "
                           f"{', '.join(sorted({p.currency for p in shipped.prices}))})")


def _comment_lines(data: bytes) -> list[str]:
    text = data.decode("utf-8-sig", errors="replace")
    return [line.strip().lstrip("#").strip() for line in text.splitlines() if line.lstrip().startswith("#")]


@functools.cache
def _shipped_catalog() -> PriceCatalog | None:
    path = shipped_catalog_path()
    if not path.is_file():
        return None
    check = check_price_catalog(path, shipped=PriceCatalog((), "none"))
    return check.catalog()
