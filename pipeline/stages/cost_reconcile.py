"""Reconcile the metered cost with what Azure billed: per Azure OpenAI account, UTC day and
currency, the Cost Management export's BilledCost (pipeline.inputs.cost_exports) against the
report's cost of the deployments of that account (deployment map column `account`):
pay-as-you-go lines plus the provisioned capacity of its PTU deployments that day.

The gap (billed - metered) is what the metered usage does not explain: usage around APIM, lost
events, unpriced usage, a price list that differs from the agreement. `status` is `gap` when it
is more than the tolerance (percent of the billed cost), else `ok`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from pipeline.domain.costing import Reference
from pipeline.domain.periods import Period
from pipeline.domain.pricing import MONEY, money_sum
from pipeline.inputs.cost_exports import BilledCosts
from pipeline.lake.csv_files import csv_bytes
from pipeline.stages.report.model import Report

COST_RECONCILIATION_COLUMNS = ("date", "account", "currency", "billed_cost", "metered_cost", "gap", "gap_pct",
                               "metered_payg_cost", "metered_ptu_cost", "status")
_PCT = Decimal("0.01")


@dataclass(slots=True)
class CostRow:
    day: date
    account: str
    currency: str
    billed: Decimal = Decimal(0)
    payg: Decimal = Decimal(0)
    ptu: Decimal = Decimal(0)
    status: str = "ok"

    @property
    def metered(self) -> Decimal:
        return MONEY.add(self.payg, self.ptu)

    @property
    def gap(self) -> Decimal:
        return MONEY.subtract(self.billed, self.metered)

    @property
    def gap_pct(self) -> Decimal:
        if self.gap == 0:
            return Decimal("0.00")
        if self.billed == 0:
            return Decimal("100.00")
        return (abs(self.gap) * 100 / abs(self.billed)).quantize(_PCT)

    def values(self) -> dict[str, object]:
        return {"date": self.day.isoformat(), "account": self.account, "currency": self.currency,
                "billed_cost": _text(self.billed), "metered_cost": _text(self.metered), "gap": _text(self.gap),
                "gap_pct": format(self.gap_pct, "f"), "metered_payg_cost": _text(self.payg),
                "metered_ptu_cost": _text(self.ptu), "status": self.status}


@dataclass(slots=True)
class CostReconciliation:
    period: Period
    tolerance: Decimal
    rows: list[CostRow]
    notes: list[str] = field(default_factory=list)

    @property
    def gaps(self) -> list[CostRow]:
        return [row for row in self.rows if row.status == "gap"]

    @property
    def file_name(self) -> str:
        return f"cost-reconciliation-{self.period.label}.csv"

    def csv(self) -> bytes:
        return csv_bytes(COST_RECONCILIATION_COLUMNS, (row.values() for row in self.rows))

    def per_account(self) -> list[tuple[str, str, Decimal, Decimal]]:
        """(account, currency, billed, metered) over the month."""
        sums: dict[tuple[str, str], list[list[Decimal]]] = defaultdict(lambda: [[], []])
        for row in self.rows:
            entry = sums[(row.account, row.currency)]
            entry[0].append(row.billed)
            entry[1].append(row.metered)
        return [(account, currency, money_sum(billed), money_sum(metered))
                for (account, currency), (billed, metered) in sorted(sums.items())]


def reconcile_costs(report: Report, reference: Reference, billed: BilledCosts,
                    tolerance: Decimal) -> CostReconciliation:
    accounts = {d.name: d.account for d in reference.deployments if d.account}
    names = dict(billed.accounts)
    rows: dict[tuple[str, date, str], CostRow] = {}
    unattributed: dict[str, list[Decimal]] = defaultdict(list)

    def row(account: str, day: date, currency: str) -> CostRow:
        key = (account.lower(), day, currency)
        found = rows.get(key)
        if found is None:
            found = rows[key] = CostRow(day, names.setdefault(account.lower(), account), currency)
        return found

    exported = set(billed.accounts)
    outside: set[str] = set()
    for line in report.lines:
        cost = line.cost
        if cost is None or cost == 0:
            continue
        account = accounts.get(line.key.deployment)
        if account is not None and account.lower() not in exported:
            outside.add(account)
            continue
        if account is None:
            unattributed[line.resolution.currency].append(cost)
            continue
        entry = row(account, line.key.day, line.resolution.currency)
        entry.payg = MONEY.add(entry.payg, cost)
    for deployment_day in report.deployment_days:
        account = accounts.get(deployment_day.deployment)
        if account is not None and account.lower() not in exported:
            outside.add(account)
            continue
        if account is None:
            unattributed[deployment_day.currency].append(deployment_day.cost)
            continue
        entry = row(account, deployment_day.day, deployment_day.currency)
        entry.ptu = MONEY.add(entry.ptu, deployment_day.cost)
    for (account, day, currency), amount in billed.amounts.items():
        entry = row(names.get(account, account), day, currency)
        entry.billed = MONEY.add(entry.billed, amount)
    for entry in rows.values():
        entry.status = "gap" if entry.gap_pct > tolerance else "ok"
    notes = [f"{money_sum(amounts):f} {currency} of metered cost is of deployments without an account in the "
             "deployment map (column account): not compared" for currency, amounts in sorted(unattributed.items())]
    notes += [f"account {account} has metered cost but no row in the cost export(s): not compared"
              for account in sorted(outside)]
    if not billed.rows:
        notes.append("the cost export(s) have no row of a Microsoft.CognitiveServices account in this month")
    ordered = sorted(rows.values(), key=lambda r: (r.day, r.account.lower(), r.currency))
    return CostReconciliation(report.period, tolerance, ordered, notes)


def _text(amount: Decimal) -> str:
    return format(MONEY.normalize(amount), "f") if amount else "0"
