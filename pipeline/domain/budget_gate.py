"""Budgets turned into gateway state: each budget's month-to-date spend, share, forecast and state,
and, per APIM subscription, the state the gateway enforces.

A budget is `warn` from its `warn_at` percent, and `block` at 100% when its action is `block`
(an `alert` budget at 100% stays `warn`). A subscription is blocked when a `block` budget at
100% covers it: its own, its cost center's (as the cost-center map assigns it that day) or its
product's; else `warn` when one of those is `warn`; else `ok`. The deciding budget is the one
with the highest state, then the highest share, then scope and key (so every publisher decides
alike).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import IntEnum

from pipeline.domain.live import Budget, BudgetAction, BudgetAlert, Budgets, BudgetScope
from pipeline.domain.periods import midnight, month_bounds

_PERCENT = Decimal("0.01")


class GateState(IntEnum):
    OK = 0
    WARN = 1
    BLOCK = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: Budget
    month: str
    spend_micros: int
    forecast_micros: int  # the spend at this pace by the month's end (the spend itself once it is over)

    @property
    def share(self) -> Decimal:
        """Spend in percent of the budget."""
        return (Decimal(self.spend_micros) * 100 / self.budget.monthly_micros).quantize(_PERCENT, ROUND_HALF_EVEN)

    @property
    def state(self) -> GateState:
        spend, budget = self.spend_micros, self.budget.monthly_micros
        if self.budget.action is BudgetAction.BLOCK and spend >= budget:
            return GateState.BLOCK
        return GateState.WARN if spend * 100 >= self.budget.warn_at * budget else GateState.OK

    @property
    def spend(self) -> Decimal:
        return _money(self.spend_micros)

    @property
    def amount(self) -> Decimal:
        return _money(self.budget.monthly_micros)

    @property
    def forecast(self) -> Decimal:
        return _money(self.forecast_micros)


@dataclass(frozen=True, slots=True)
class SubscriptionGate:
    """What the gateway enforces for one subscription, and the budget that decided it."""

    subscription_id: str
    state: GateState
    status: BudgetStatus

    def message(self) -> str:
        budget, status = self.status.budget, self.status
        scope = {BudgetScope.SUBSCRIPTION: "this subscription", BudgetScope.COST_CENTER: f"cost center {budget.key}",
                 BudgetScope.PRODUCT: f"product {budget.key}"}[budget.scope]
        if self.state is GateState.BLOCK:
            return (f"The monthly budget of {scope} ({status.amount} {budget.currency}) is used up for {status.month}: "
                    f"{status.spend} {budget.currency} spent. Requests are refused until the budget is raised or the "
                    "month ends.")
        return (f"{status.share}% of the monthly budget of {scope} ({status.amount} {budget.currency}) is used in "
                f"{status.month}.")

    def document(self, updated_at: datetime) -> dict[str, str]:
        """The JSON the gateway reads (gateway/budgets/<subscriptionId>.json)."""
        status = self.status
        return {"subscriptionId": self.subscription_id, "state": self.state.label,
                "scope": status.budget.scope.value, "key": status.budget.key, "spend": format(status.spend, "f"),
                "budget": format(status.amount, "f"), "currency": status.budget.currency, "month": status.month,
                "message": self.message(), "updatedAt": updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def budget_status(budget: Budget, month: str, spend_micros: int, now: datetime) -> BudgetStatus:
    """The budget's spend and its forecast to the end of the month (at the pace so far)."""
    start, end = month_bounds(month)
    first, last = midnight(start), midnight(end)
    elapsed, whole = (min(now, last) - first).total_seconds(), (last - first).total_seconds()
    forecast = spend_micros if elapsed >= whole or elapsed <= 0 else int(spend_micros * whole / elapsed)
    return BudgetStatus(budget, month, spend_micros, forecast)


def subscription_gates(subscriptions: Iterable[str], statuses: Mapping[tuple[BudgetScope, str], BudgetStatus],
                       cost_center_of: Mapping[str, str], products_of: Mapping[str, frozenset[str]]
                       ) -> list[SubscriptionGate]:
    """The gate of every subscription that some budget covers, by subscription id."""
    gates = []
    for subscription in sorted(set(subscriptions)):
        covering = [statuses.get((BudgetScope.SUBSCRIPTION, subscription))]
        center = cost_center_of.get(subscription)
        if center is not None:
            covering.append(statuses.get((BudgetScope.COST_CENTER, center)))
        covering += [statuses.get((BudgetScope.PRODUCT, product)) for product in sorted(products_of.get(subscription,
                                                                                                         ()))]
        found = [status for status in covering if status is not None]
        if not found:
            continue
        deciding = max(found, key=lambda s: (s.state, s.share, s.budget.scope.value, s.budget.key))
        gates.append(SubscriptionGate(subscription, deciding.state, deciding))
    return gates


def _money(micros: int) -> Decimal:
    """Micro-units as an exact amount (`45125000` -> 45.125)."""
    amount = Decimal(micros).scaleb(-6)
    return amount.quantize(Decimal(1)) if amount == amount.to_integral_value() else amount.normalize()


def crosses_block(alerts: Iterable[BudgetAlert], budgets: Budgets, month: str) -> bool:
    """Whether these alerts (first raised, exactly once across consumers) include a `block`
    budget reaching 100% in `month` (the current one): the gateway state is then published at
    once, not at the next minute."""
    for alert in alerts:
        budget = budgets.get(alert.scope, alert.key)
        if (alert.threshold >= 100 and alert.month == month and budget is not None
                and budget.action is BudgetAction.BLOCK):
            return True
    return False
