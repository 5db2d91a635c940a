"""Usage a report charges to `unassigned`: its subscription had no cost center in the map on its
days, and its events sent none. It is billed to no one, so the terminal summary and the HTML
report name it (its requests, cost and subscriptions) rather than leave a row to be noticed."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from pipeline.domain.mappings import UNASSIGNED
from pipeline.domain.pricing import money_sum
from pipeline.stages.report.model import Report

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class UnassignedUsage:
    requests: int
    subscriptions: list[str]  # sorted
    costs: dict[str, Decimal]  # per currency, exact; unpriced usage has none

    def describe(self, shown: int = 5) -> str:
        """`4,924 requests of 1 subscription(s) ... (22.80 USD): sub-legacy-tool`: the cost rounded
        half-even to cents, as every summary shows money, and at most `shown` subscriptions named."""
        more = ", ..." if len(self.subscriptions) > shown else ""
        costs = ", ".join(f"{amount.quantize(CENT, rounding=ROUND_HALF_EVEN):,.2f} {currency}"
                          for currency, amount in self.costs.items())
        return (f"{self.requests:,} requests of {len(self.subscriptions):,} subscription(s) with no cost center on "
                f"their days are charged to `{UNASSIGNED}`{f' ({costs})' if costs else ''}: "
                f"{', '.join(self.subscriptions[:shown])}{more}")


FIX = "map them in the cost-center file (--cost-centers, CHARGEBACK_COST_CENTERS)"


def unassigned_usage(report: Report) -> UnassignedUsage | None:
    """The report's usage charged to `unassigned` (capacity left idle and true-ups without an
    owner are not usage: they name no subscription); None when there is none."""
    rows = [row for row in report.rows if row.cost_center == UNASSIGNED and row.subscription_id]
    if not rows:
        return None
    costs: dict[str, list[Decimal]] = defaultdict(list)
    for row in rows:
        if row.total_cost is not None:
            costs[row.currency].append(row.total_cost)
    return UnassignedUsage(sum(row.requests for row in rows), sorted({row.subscription_id for row in rows}),
                           {currency: money_sum(amounts) for currency, amounts in sorted(costs.items())})
