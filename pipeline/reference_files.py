"""Load the price catalog, deployment map and cost-center map from CSV files, validated.

Lines starting with `#` are comments (the shipped catalog names its source and date there).
Every error names the file, the line and what to fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

from pipeline.domain.costing import Reference
from pipeline.domain.live import MICROS, Budget, Budgets, BudgetScope
from pipeline.domain.mappings import CostCenterAssignment, CostCenterMap, Deployment, DeploymentMap
from pipeline.domain.pricing import MAX_PRICE_DECIMALS, CatalogError, Price, PriceCatalog

PRICE_COLUMNS = ("model", "deployment_type", "region", "effective_from", "effective_to", "currency",
                 "input_per_1m", "cached_input_per_1m", "output_per_1m")
DEPLOYMENT_COLUMNS = ("deployment", "model", "deployment_type", "region")
COST_CENTER_COLUMNS = ("subscription_id", "cost_center", "effective_from", "effective_to")
BUDGET_COLUMNS = ("scope", "key", "monthly_budget", "currency")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def shipped_catalog_path() -> Path:
    return Path(str(resources.files("pipeline") / "data" / "prices.csv"))


def load_reference(prices: Path | None, deployments: Path | None, cost_centers: Path | None) -> Reference:
    """The catalog (shipped one by default) and the maps (empty when the file is absent)."""
    return Reference(
        catalog=load_price_catalog(prices or shipped_catalog_path()),
        deployments=load_deployments(deployments) if deployments and deployments.exists() else DeploymentMap(),
        cost_centers=(load_cost_centers(cost_centers) if cost_centers and cost_centers.exists()
                      else CostCenterMap()),
    )


def load_price_catalog(path: Path) -> PriceCatalog:
    data = _read(path)
    version = hashlib.sha256(data).hexdigest()[:12]
    prices = []
    for where, row in _rows(path, data, PRICE_COLUMNS):
        cached = row["cached_input_per_1m"].strip()
        price = Price(
            model=_required(row, "model", where),
            deployment_type=_required(row, "deployment_type", where),
            region=row["region"].strip() or "*",
            effective_from=_date(row, "effective_from", where),
            effective_to=_optional_date(row, "effective_to", where),
            currency=_currency(row, where),
            input_per_1m=_price(row, "input_per_1m", where),
            # No cached price means no cache discount: cached tokens cost the input price.
            cached_input_per_1m=_price(row, "cached_input_per_1m", where) if cached
            else _price(row, "input_per_1m", where),
            output_per_1m=_price(row, "output_per_1m", where),
            origin=where,
        )
        if price.effective_to is not None and price.effective_to <= price.effective_from:
            raise CatalogError(f"{where}: effective_to {price.effective_to} is not after "
                               f"effective_from {price.effective_from}")
        prices.append(price)
    if not prices:
        raise CatalogError(f"{path}: the price catalog has no prices")
    return PriceCatalog(prices, version)


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


def _rows(path: Path, data: bytes, columns: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """(`file:line`, row) for each data row; blank lines and `#` comment lines are skipped."""
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
                raise CatalogError(f"{where}: a value contains a line break: {values[0]!r}")
            if header is None:
                header = [h.strip() for h in values]
                missing = [c for c in columns if c not in header]
                if missing:
                    raise CatalogError(f"{where}: missing column(s) {', '.join(missing)}; "
                                       f"expected {','.join(columns)}")
                continue
            if len(values) != len(header):
                raise CatalogError(f"{where}: {len(values)} values for {len(header)} columns")
            yield where, dict(zip(header, values, strict=True))
    except csv.Error as error:
        raise CatalogError(f"{path}:{reader.line_num}: not valid CSV: {error}") from None
    if header is None:
        raise CatalogError(f"{path}: empty file; expected the header {','.join(columns)}")


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
