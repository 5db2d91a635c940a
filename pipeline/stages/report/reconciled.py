"""A published reconciliation with Azure Monitor (`reconciliation-<label>.csv`, written by
`chargeback reconcile-azure` or the daily Functions timer) read back per deployment, for the
report's HTML page."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from pipeline.domain.pricing import money_sum
from pipeline.ports import ObjectStore
from pipeline.stages.azure_reconcile import AZURE_ONLY, GAP, METERED_ONLY, PARTIAL
from pipeline.stages.report.model import ReconciledDeployment, Report

GAP_STATUSES = frozenset({GAP, AZURE_ONLY, METERED_ONLY})


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
    account: str
    metered: int = 0
    azure: int = 0
    prompt_gap: int = 0
    completion_gap: int = 0
    worst: Decimal = Decimal("0.00")
    gap_days: int = 0
    costs: list[Decimal] = field(default_factory=list)
    currency: str = ""


def reconciled_deployments(data: bytes) -> list[ReconciledDeployment]:
    """The deployments of a reconciliation CSV."""
    return deployment_totals(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def deployment_totals(rows: Iterable[Mapping[str, object]]) -> list[ReconciledDeployment]:
    """The month per deployment, from reconciliation rows (the CSV's, or ReconciliationRow.values()):
    partial days are left out of the worst gap; a gap, azure-only or metered-only day counts."""
    sums: dict[str, _Sums] = {}
    for row in rows:
        entry = sums.setdefault(str(row["deployment"]), _Sums(str(row["account"])))
        entry.metered += int(str(row["metered_requests"]))
        entry.azure += int(str(row["azure_requests"]))
        entry.prompt_gap += int(str(row["prompt_tokens_gap"]))
        entry.completion_gap += int(str(row["completion_tokens_gap"]))
        if row["status"] != PARTIAL:
            entry.worst = max(entry.worst, Decimal(str(row["gap_pct"])))
        entry.gap_days += row["status"] in GAP_STATUSES
        if row["gap_cost"]:
            entry.costs.append(Decimal(str(row["gap_cost"])))
            entry.currency = str(row["currency"])
    return [ReconciledDeployment(name, e.metered, e.azure, e.prompt_gap, e.completion_gap, e.worst, e.gap_days,
                                 money_sum(e.costs) if e.costs else None, e.currency, e.account)
            for name, e in sums.items()]
