"""A published reconciliation with Azure Monitor (`reconciliation-<label>.csv`, written by
`chargeback reconcile-azure` or the daily Functions timer) read back per deployment, for the
report's HTML page."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from pipeline.domain.pricing import money_sum
from pipeline.ports import ObjectStore
from pipeline.stages.report.model import ReconciledDeployment, Report

GAP_STATUSES = frozenset({"gap", "azure-only", "metered-only"})


def reconciliation_key(label: str) -> str:
    return f"reconciliation-{label}.csv"


def attach_reconciliation(report: Report, store: ObjectStore) -> bool:
    """Set `report.reconciliation` from the store's reconciliation of the period, if there is
    one (a file that cannot be read is left out: the report does not depend on it)."""
    data = store.get(reconciliation_key(report.label))
    if data is None:
        return False
    try:
        report.reconciliation = reconciled_deployments(data)
    except (KeyError, ValueError, InvalidOperation, UnicodeDecodeError):
        return False
    return True


@dataclass(slots=True)
class _Sums:
    metered: int = 0
    azure: int = 0
    prompt_gap: int = 0
    completion_gap: int = 0
    worst: Decimal = Decimal("0.00")
    gap_days: int = 0
    costs: list[Decimal] = field(default_factory=list)
    currency: str = ""


def reconciled_deployments(data: bytes) -> list[ReconciledDeployment]:
    sums: dict[str, _Sums] = {}
    for row in csv.DictReader(io.StringIO(data.decode("utf-8-sig"))):
        entry = sums.setdefault(row["deployment"], _Sums())
        entry.metered += int(row["metered_requests"])
        entry.azure += int(row["azure_requests"])
        entry.prompt_gap += int(row["prompt_tokens_gap"])
        entry.completion_gap += int(row["completion_tokens_gap"])
        if row["status"] != "partial-day":
            entry.worst = max(entry.worst, Decimal(row["gap_pct"]))
        entry.gap_days += row["status"] in GAP_STATUSES
        if row["gap_cost"]:
            entry.costs.append(Decimal(row["gap_cost"]))
            entry.currency = row["currency"]
    return [ReconciledDeployment(name, e.metered, e.azure, e.prompt_gap, e.completion_gap, e.worst, e.gap_days,
                                 money_sum(e.costs) if e.costs else None, e.currency)
            for name, e in sums.items()]
