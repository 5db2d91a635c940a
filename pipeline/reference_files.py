"""Load the price catalog, deployment map, cost-center map, provisioned capacity and PTU
weights from CSV files, validated.

Lines starting with `#` are comments (the shipped catalog names its source and date there).
Every error names the file, the line and what to fix. A price catalog is checked whole: every
problem is listed at once (overlapping effective ranges, negative or malformed prices, unknown
currencies, and unit mistakes: a `unit` column or price columns that say per 1K tokens, or a
price 100x or more away from the shipped catalog's for the same model, deployment type and
currency, the classic per-1K-vs-per-1M slip).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

from pipeline.domain.capacity import (
    ANY_MODEL,
    Capacity,
    CapacityPlan,
    PtuWeight,
    PtuWeights,
)
from pipeline.domain.costing import Reference
from pipeline.domain.currencies import is_currency
from pipeline.domain.live import MICROS, Budget, Budgets, BudgetScope
from pipeline.domain.mappings import CostCenterAssignment, CostCenterMap, Deployment, DeploymentMap
from pipeline.domain.pricing import (
    MAX_PRICE_DECIMALS,
    CatalogError,
    Price,
    PriceCatalog,
    _key,
    base_model,
    overlap_problems,
)

PRICE_COLUMNS = ("model", "deployment_type", "region", "effective_from", "effective_to", "currency",
                 "input_per_1m", "cached_input_per_1m", "output_per_1m")
DEPLOYMENT_COLUMNS = ("deployment", "model", "deployment_type", "region")
COST_CENTER_COLUMNS = ("subscription_id", "cost_center", "effective_from", "effective_to")
BUDGET_COLUMNS = ("scope", "key", "monthly_budget", "currency")
CAPACITY_COLUMNS = ("deployment", "ptu", "price_per_ptu_hour", "currency", "effective_from", "effective_to")
CAPACITY_OPTIONAL = ("idle_owner",)
WEIGHT_COLUMNS = ("model", "input_weight", "cached_input_weight", "output_weight")
WEIGHT_OPTIONAL = ("input_tpm_per_ptu",)
PRICE_KINDS = ("input_per_1m", "cached_input_per_1m", "output_per_1m")
# A price this many times away from the shipped catalog's (same model, type, currency) is a unit mistake.
UNIT_MISTAKE_RATIO = Decimal(100)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PER_OTHER_UNIT = re.compile(r"^(input|cached_input|output)_per_(1k|1000|k|token|tokens|1|1b|100)$", re.IGNORECASE)
_UNITS_PER_1M = {"1m", "1mtokens", "m", "million", "milliontokens", "1000000", "1000000tokens", "1e6"}
_UNITS_PER_1K = {"1k", "1ktokens", "k", "thousand", "thousandtokens", "1000", "1000tokens", "1e3"}
_UNITS_PER_TOKEN = {"1", "token", "1token", "tokens"}


def shipped_catalog_path() -> Path:
    return Path(str(resources.files("pipeline") / "data" / "prices.csv"))


def shipped_weights_path() -> Path:
    return Path(str(resources.files("pipeline") / "data" / "ptu-weights.csv"))


def load_reference(prices: Path | None, deployments: Path | None, cost_centers: Path | None,
                   capacity: Path | None = None, weights: Path | None = None,
                   idle_owner: str | None = None) -> Reference:
    """The catalog (shipped one by default), the maps (empty when the file is absent) and the
    provisioned capacity (none when its file is absent; PTU weights: the shipped ones by default)."""
    return Reference(
        catalog=load_price_catalog(prices or shipped_catalog_path()),
        deployments=load_deployments(deployments) if deployments and deployments.exists() else DeploymentMap(),
        cost_centers=(load_cost_centers(cost_centers) if cost_centers and cost_centers.exists()
                      else CostCenterMap()),
        capacity=load_capacity(capacity if capacity and capacity.exists() else None, weights, idle_owner),
    )


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
    data = _read(path)
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

    for where, row in _rows(path, data, PRICE_COLUMNS, header_check=header_check, problems=check.errors):
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
        "model": attempt(lambda: _required(row, "model", where)),
        "deployment_type": attempt(lambda: _required(row, "deployment_type", where)),
        "effective_from": attempt(lambda: _date(row, "effective_from", where)),
        "effective_to": attempt(lambda: _optional_date(row, "effective_to", where)),
        "currency": attempt(lambda: _currency(row, where)),
        "input_per_1m": attempt(lambda: _price(row, "input_per_1m", where)),
        # No cached price means no cache discount: cached tokens cost the input price.
        "cached_input_per_1m": attempt(lambda: _price(row, "cached_input_per_1m" if cached else "input_per_1m",
                                                      where)),
        "output_per_1m": attempt(lambda: _price(row, "output_per_1m", where)),
    }
    if problems:
        raise CatalogError("\n".join(dict.fromkeys(problems)))
    price = Price(region=row["region"].strip() or "*", origin=where, **values)  # type: ignore[arg-type]
    if price.effective_to is not None and price.effective_to <= price.effective_from:
        raise CatalogError(f"{where}: effective_to {price.effective_to} is not after "
                           f"effective_from {price.effective_from}")
    return price


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
                 and _key(p.deployment_type) == _key(price.deployment_type)]
        if not known:
            continue
        same = [p for p in known if p.currency == price.currency]
        if not same:
            skipped_currencies.add(price.currency)
            continue
        ref = next((p for p in same if p.in_force(price.effective_from)), same[-1])
        for kind in PRICE_KINDS:
            mine, theirs = getattr(price, kind), getattr(ref, kind)
            if mine == 0 or theirs == 0:
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
    for currency in sorted(skipped_currencies):
        check.notes.append(f"prices in {currency} were not compared with the shipped catalog (it is in "
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


def load_capacity(path: Path | None, weights: Path | None = None, idle_owner: str | None = None) -> CapacityPlan:
    """The provisioned-capacity file (none: no PTU deployments) with the PTU weights (the
    shipped ones by default) and the default idle owner."""
    owner = idle_owner.strip() if idle_owner and idle_owner.strip() else None
    if path is None and weights is None:
        return CapacityPlan((), PtuWeights(), owner)  # no PTU deployment: the weights are never used
    plan_weights = load_ptu_weights(weights or shipped_weights_path())
    if path is None:
        return CapacityPlan((), plan_weights, owner)
    data = _read(path)
    rows: list[Capacity] = []
    problems: list[str] = []
    for where, row in _rows(path, data, CAPACITY_COLUMNS, problems=problems):
        try:
            rows.append(_capacity_row(row, where))
        except CatalogError as error:
            problems.append(str(error))
    if problems:
        raise CatalogError("\n".join(problems))
    return CapacityPlan(rows, plan_weights, owner, version=hashlib.sha256(data).hexdigest()[:12])


def _capacity_row(row: dict[str, str], where: str) -> Capacity:
    ptu_text = row["ptu"].strip()
    if not ptu_text.isdigit() or int(ptu_text) <= 0:
        raise CatalogError(f"{where}: ptu {ptu_text!r} must be a whole number of PTUs above 0")
    start = _instant(row, "effective_from", where)
    if start is None:
        raise CatalogError(f"{where}: effective_from is empty")
    end = _instant(row, "effective_to", where)
    if end is not None and end <= start:
        raise CatalogError(f"{where}: effective_to is not after effective_from")
    price = _price(row, "price_per_ptu_hour", where, unit="currency units per PTU-hour")
    owner = (row.get("idle_owner") or "").strip() or None
    return Capacity(_required(row, "deployment", where), int(ptu_text), price, _currency(row, where), start, end,
                    owner, where)


def _instant(row: dict[str, str], column: str, where: str) -> datetime | None:
    """A UTC date (midnight) or date-time on a whole hour, with an explicit UTC offset."""
    value = row[column].strip()
    if not value:
        return None
    if len(value) == 10:
        return datetime.combine(_date(row, column, where), time(0), UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise CatalogError(f"{where}: {column} {value!r} is not a date (YYYY-MM-DD) or a date-time with a UTC "
                           "offset (2026-10-01T08:00:00Z)")
    moment = moment.astimezone(UTC)
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise CatalogError(f"{where}: {column} {value!r} is not on a whole hour (PTUs are billed per hour)")
    return moment


def load_ptu_weights(path: Path) -> PtuWeights:
    weights: list[PtuWeight] = []
    problems: list[str] = []
    for where, row in _rows(path, _read(path), WEIGHT_COLUMNS, problems=problems):
        try:
            throughput = (row.get("input_tpm_per_ptu") or "").strip()
            if throughput and (not throughput.isdigit() or int(throughput) <= 0):
                raise CatalogError(f"{where}: input_tpm_per_ptu {throughput!r} must be a whole number above 0")
            weights.append(PtuWeight(
                model=_required(row, "model", where),
                input=_price(row, "input_weight", where, unit="input-token equivalents"),
                cached_input=_price(row, "cached_input_weight", where, unit="input-token equivalents"),
                output=_price(row, "output_weight", where, unit="input-token equivalents"),
                input_tpm_per_ptu=int(throughput) if throughput else None,
                origin=where,
            ))
        except CatalogError as error:
            problems.append(str(error))
    if problems:
        raise CatalogError("\n".join(problems))
    if not any(w.model == ANY_MODEL for w in weights):
        weights.append(PtuWeight(ANY_MODEL, origin="default"))
    return PtuWeights(weights)


def load_deployments(path: Path) -> DeploymentMap:
    deployments = [
        Deployment(
            name=_required(row, "deployment", where),
            model=row["model"].strip() or None,
            deployment_type=_required(row, "deployment_type", where),
            region=row["region"].strip() or None,
            origin=where,
        )
        for where, row in _rows(path, _read(path), DEPLOYMENT_COLUMNS)
    ]
    return DeploymentMap(deployments)


def load_cost_centers(path: Path) -> CostCenterMap:
    assignments = []
    for where, row in _rows(path, _read(path), COST_CENTER_COLUMNS):
        assignment = CostCenterAssignment(
            subscription_id=_required(row, "subscription_id", where),
            cost_center=_required(row, "cost_center", where),
            effective_from=_optional_date(row, "effective_from", where) or date.min,
            effective_to=_optional_date(row, "effective_to", where),
            origin=where,
        )
        if assignment.effective_to is not None and assignment.effective_to <= assignment.effective_from:
            raise CatalogError(f"{where}: effective_to is not after effective_from")
        assignments.append(assignment)
    return CostCenterMap(assignments)


def load_budgets(path: Path) -> Budgets:
    """Monthly budgets: scope `subscription` or `cost-center`, the id, the amount, the currency."""
    budgets = []
    for where, row in _rows(path, _read(path), BUDGET_COLUMNS):
        scope = row["scope"].strip()
        if scope not in {s.value for s in BudgetScope}:
            raise CatalogError(f"{where}: scope {scope!r} must be one of {', '.join(s.value for s in BudgetScope)}")
        amount = _price(row, "monthly_budget", where, unit="currency units")
        if amount == 0:
            raise CatalogError(f"{where}: monthly_budget must be more than 0")
        budgets.append(Budget(BudgetScope(scope), _required(row, "key", where), int(amount * MICROS),
                              _currency(row, where)))
    return Budgets(budgets)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CatalogError(f"cannot read {path}: {error.strerror}") from None


def _rows(path: Path, data: bytes, columns: tuple[str, ...],
          header_check: Callable[[list[str], str], None] | None = None,
          problems: list[str] | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """(`file:line`, row) for each data row; blank lines and `#` comment lines are skipped. A row
    that cannot be read (wrong number of values, a line break in a value) is an error; with
    `problems`, it is recorded there and skipped so that every problem is found in one pass."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    ended = 0  # the line the previous row ended on; a row starts on the next one
    try:
        for values in reader:
            where, ended = f"{path}:{ended + 1}", reader.line_num
            if not any(v.strip() for v in values) or values[0].lstrip().startswith("#"):
                continue
            if any("\n" in v or "\r" in v for v in values):
                _problem(problems, f"{where}: a value contains a line break: {values[0]!r}")
                continue
            if header is None:
                header = [h.strip() for h in values]
                if header_check is not None:
                    header_check(header, where)
                missing = [c for c in columns if c not in header]
                if missing:
                    raise CatalogError(f"{where}: missing column(s) {', '.join(missing)}; "
                                       f"expected {','.join(columns)}")
                continue
            if len(values) != len(header):
                _problem(problems, f"{where}: {len(values)} values for {len(header)} columns")
                continue
            yield where, dict(zip(header, values, strict=True))
    except csv.Error as error:
        raise CatalogError(f"{path}:{reader.line_num}: not valid CSV: {error}") from None
    if header is None:
        raise CatalogError(f"{path}: empty file; expected the header {','.join(columns)}")


def _problem(problems: list[str] | None, message: str) -> None:
    if problems is None:
        raise CatalogError(message)
    problems.append(message)


def _required(row: dict[str, str], column: str, where: str) -> str:
    value = row[column].strip()
    if not value:
        raise CatalogError(f"{where}: {column} is empty")
    return value


def _date(row: dict[str, str], column: str, where: str) -> date:
    value = row[column].strip()
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise CatalogError(f"{where}: {column} {value!r} is not a date (YYYY-MM-DD, UTC)")


def _optional_date(row: dict[str, str], column: str, where: str) -> date | None:
    return _date(row, column, where) if row[column].strip() else None


def _currency(row: dict[str, str], where: str) -> str:
    value = row["currency"].strip()
    if not _CURRENCY.match(value):
        raise CatalogError(f"{where}: currency {value!r} is not an ISO 4217 code such as USD")
    if not is_currency(value):
        raise CatalogError(f"{where}: currency {value!r} is unknown: not an ISO 4217 currency code (USD, EUR, ...)")
    return value


def _price(row: dict[str, str], column: str, where: str, unit: str = "per 1M tokens") -> Decimal:
    value = row[column].strip()
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise CatalogError(f"{where}: {column} {value!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise CatalogError(f"{where}: {column} {value!r} must be a finite price >= 0")
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PRICE_DECIMALS:
        raise CatalogError(f"{where}: {column} {value!r} has more than {MAX_PRICE_DECIMALS} decimals "
                           f"({column} is in {unit})")
    return price
