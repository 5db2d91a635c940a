"""Provisioned (PTU) capacity and the PTU weights, from CSV files (pipeline.domain.capacity)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time
from importlib import resources
from pathlib import Path

from pipeline.domain.capacity import ANY_MODEL, Capacity, CapacityPlan, PtuWeight, PtuWeights
from pipeline.domain.pricing import CatalogError
from pipeline.inputs.csv_rows import amount, currency, day, read_file, required, table_rows

CAPACITY_COLUMNS = ("deployment", "ptu", "price_per_ptu_hour", "currency", "effective_from", "effective_to")
WEIGHT_COLUMNS = ("model", "input_weight", "cached_input_weight", "output_weight")


def shipped_weights_path() -> Path:
    return Path(str(resources.files("pipeline") / "data" / "ptu-weights.csv"))


def load_capacity(path: Path | None, weights: Path | None = None, idle_owner: str | None = None) -> CapacityPlan:
    """The provisioned-capacity file (none: no PTU deployments) with the PTU weights (the
    shipped ones by default) and the default idle owner."""
    owner = idle_owner.strip() if idle_owner and idle_owner.strip() else None
    if path is None and weights is None:
        return CapacityPlan((), PtuWeights(), owner)  # no PTU deployment: the weights are never used
    plan_weights = load_ptu_weights(weights or shipped_weights_path())
    if path is None:
        return CapacityPlan((), plan_weights, owner)
    data = read_file(path)
    rows: list[Capacity] = []
    problems: list[str] = []
    for where, row in table_rows(path, data, CAPACITY_COLUMNS, problems=problems):
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
    price = amount(row, "price_per_ptu_hour", where, unit="currency units per PTU-hour")
    owner = (row.get("idle_owner") or "").strip() or None
    return Capacity(required(row, "deployment", where), int(ptu_text), price, currency(row, where), start, end,
                    owner, where)


def _instant(row: dict[str, str], column: str, where: str) -> datetime | None:
    """A UTC date (midnight) or date-time on a whole hour, with an explicit UTC offset."""
    value = row[column].strip()
    if not value:
        return None
    if len(value) == 10:
        return datetime.combine(day(row, column, where), time(0), UTC)
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
    for where, row in table_rows(path, read_file(path), WEIGHT_COLUMNS, problems=problems):
        try:
            throughput = (row.get("input_tpm_per_ptu") or "").strip()
            if throughput and (not throughput.isdigit() or int(throughput) <= 0):
                raise CatalogError(f"{where}: input_tpm_per_ptu {throughput!r} must be a whole number above 0")
            weights.append(PtuWeight(
                model=required(row, "model", where),
                input=amount(row, "input_weight", where, unit="input-token equivalents"),
                cached_input=amount(row, "cached_input_weight", where, unit="input-token equivalents"),
                output=amount(row, "output_weight", where, unit="input-token equivalents"),
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
