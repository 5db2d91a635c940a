"""The FOCUS 1.3 split cost allocation rules of tests.focus_conformance (its docstring lists them)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

ALLOCATED = ("AllocatedMethodDetails", "AllocatedMethodId", "AllocatedResourceId", "AllocatedResourceName",
             "AllocatedTags")


def check_allocations(rows: list[dict[str, Any]]) -> list[str]:
    """FOCUS 1.3 split cost allocation (allocatedmethodid.md, allocatedmethoddetails.md,
    allocatedresourceid.md, allocatedtags.md): the rules of the module docstring. An origin charge
    is told by its ResourceId and charge period (the spec has no origin column; these rows say it so)."""
    problems: list[str] = []
    origins: dict[tuple[Any, ...], Decimal] = {}
    for index, row in enumerate(rows):
        where = f"row {index + 1}"
        method = row.get("AllocatedMethodId")
        if method is None:
            problems += [f"{where}: {name} is set on a row that is not allocated" for name in ALLOCATED
                         if row.get(name) is not None]
            continue
        if row.get("AllocatedResourceId") is None:
            problems.append(f"{where}: AllocatedResourceId is null on an allocated row")
        details = row.get("AllocatedMethodDetails")
        if details is None:
            continue  # Recommended, so it may be absent; without it no ratio is stated
        try:
            parsed = json.loads(details, parse_float=Decimal, parse_int=Decimal)
        except (json.JSONDecodeError, TypeError):
            problems.append(f"{where}: AllocatedMethodDetails is not JSON")
            continue
        if not isinstance(parsed, dict) or not isinstance(parsed.get("Elements"), list):
            problems.append(f"{where}: AllocatedMethodDetails is not an object with an Elements array")
            continue
        problems += [f"{where}: AllocatedMethodDetails key {key!r} does not start with x_" for key in parsed
                     if key != "Elements" and not key.startswith("x_")]
        for element in parsed["Elements"]:
            if not isinstance(element, dict) or not isinstance(element.get("AllocatedRatio"), Decimal):
                problems.append(f"{where}: an Elements entry has no Decimal AllocatedRatio")
                continue
            if "UsageQuantity" in element and "UsageUnit" not in element:
                problems.append(f"{where}: UsageQuantity without UsageUnit")
            problems += [f"{where}: Elements key {key!r} is not FOCUS-defined and does not start with x_"
                         for key in element if key not in ("AllocatedRatio", "UsageUnit", "UsageQuantity")
                         and not key.startswith("x_")]
            origin = (row.get("ResourceId"), row.get("ChargePeriodStart"), row.get("ChargePeriodEnd"))
            origins[origin] = origins.get(origin, Decimal(0)) + element["AllocatedRatio"]
    problems += [f"origin charge {origin}: AllocatedRatio values sum to {total}, not 1"
                 for origin, total in origins.items() if total != 1]
    return problems
