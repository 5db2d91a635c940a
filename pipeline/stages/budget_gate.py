"""Publish the budgets' gateway state (pipeline.domain.budget_gate) where APIM reads it: for each
subscription whose state is not ok, `budgets/<subscriptionId>.json` in the store's `gateway`
area (the APIM fragment apim_policies/fragments/chargeback-budget-gate.xml reads it with the
gateway's managed identity); a subscription back to ok (a new month, a raised budget) has its
file removed.

Spend is the live counters' month to date (subscription and cost-center spend, priced at
ingest); a product's spend is that of its subscriptions, which the month's snapshots name
(events carry productId). Publishing is idempotent and safe to run from several places at once:
a file is rewritten only when what it says changes (its `updatedAt` is when that happened), so
concurrent publishers with the same counters write one state.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.domain.budget_gate import BudgetStatus, GateState, SubscriptionGate, budget_status, subscription_gates
from pipeline.domain.costing import Reference
from pipeline.domain.live import Budget, Budgets, BudgetScope
from pipeline.domain.mappings import UNASSIGNED
from pipeline.domain.periods import Period
from pipeline.domain.pricing import CatalogError
from pipeline.lake.warehouse import Warehouse
from pipeline.ports import Counters, ObjectStore

PREFIX = "budgets"
PRODUCTS_SQL = ("SELECT DISTINCT subscription_id, product_id FROM usage u WHERE u.date >= ? AND u.date < ? "
                "AND product_id IS NOT NULL")


@dataclass(slots=True)
class BudgetBoard:
    month: str
    statuses: list[BudgetStatus]
    gates: list[SubscriptionGate]
    notes: list[str] = field(default_factory=list)

    @property
    def not_ok(self) -> list[SubscriptionGate]:
        return [gate for gate in self.gates if gate.state is not GateState.OK]


@dataclass(slots=True)
class Published:
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # unchanged since the last publish
    removed: list[str] = field(default_factory=list)


def product_members(warehouse: Warehouse, period: Period) -> dict[str, frozenset[str]]:
    """Subscription -> the APIM products its events of the period name."""
    members: dict[str, set[str]] = defaultdict(set)
    for subscription, product in warehouse.connection.execute(PRODUCTS_SQL, [period.start, period.end]).fetchall():
        members[subscription].add(product)
    return {subscription: frozenset(products) for subscription, products in members.items()}


def budget_board(budgets: Budgets, counters: Counters, reference: Reference, month: str, now: datetime,
                 products: Mapping[str, frozenset[str]] | None = None) -> BudgetBoard:
    """Every budget's status this month, and every covered subscription's gate."""
    check_currencies(budgets, reference)
    spend = {row.subscription_id: row.spend_micros for row in counters.month_to_date(month)}
    centers = counters.cost_center_spend(month)
    products = products or {}
    product_spend: dict[str, int] = defaultdict(int)
    for subscription, names in products.items():
        for product in names:
            product_spend[product] += spend.get(subscription, 0)
    by_scope = {BudgetScope.SUBSCRIPTION: spend, BudgetScope.COST_CENTER: centers, BudgetScope.PRODUCT: product_spend}
    statuses = {(b.scope, b.key): budget_status(b, month, by_scope[b.scope].get(b.key, 0), now) for b in budgets}
    period = Period.month(month)
    today = min(max(now.date(), period.start), period.end - timedelta(days=1))  # the month's day the map is read on
    subscriptions = {*spend, *products, *reference.cost_centers.subscriptions(),
                     *(b.key for b in budgets if b.scope is BudgetScope.SUBSCRIPTION)}
    cost_center_of = {s: c for s in subscriptions
                      if (c := reference.cost_centers.cost_center(s, today, None)) != UNASSIGNED}
    notes = []
    if any(b.scope is BudgetScope.PRODUCT for b in budgets) and not products:
        notes.append("product budgets: no snapshot of this month names a product yet (events' productId)")
    notes += _unknown_keys(budgets, {*spend, *reference.cost_centers.subscriptions()},
                           {*centers, *reference.cost_centers.cost_centers()})
    gates = subscription_gates(subscriptions, statuses, cost_center_of, products)
    return BudgetBoard(month, sorted(statuses.values(), key=lambda s: (s.budget.scope.value, s.budget.key)), gates,
                       notes)


def _unknown_keys(budgets: Iterable[Budget], subscriptions: set[str], cost_centers: set[str]) -> list[str]:
    """A budget whose key neither the cost-center map nor this month's live usage knows: most
    likely a typo (keys are case-sensitive), and such a budget never warns nor blocks."""
    known = {BudgetScope.SUBSCRIPTION: subscriptions, BudgetScope.COST_CENTER: cost_centers}
    return [f"{budget.origin or 'budgets'}: {budget.scope.value} {budget.key!r} is in neither the cost-center map "
            "nor this month's usage (keys are case-sensitive): a typo never warns or blocks"
            for budget in budgets if budget.scope in known and budget.key not in known[budget.scope]]


def check_currencies(budgets: Iterable[Budget], reference: Reference) -> None:
    """A budget in another currency than the live spend (the price catalog's) cannot be compared."""
    spent = {price.currency for price in reference.catalog.prices}
    if not spent:
        return
    for budget in budgets:
        if budget.currency not in spent:
            raise CatalogError(f"{budget.origin or 'budgets'}: currency {budget.currency}: the live spend is in "
                               f"{', '.join(sorted(spent))} (the price catalog's currency); a budget in another "
                               "currency cannot be compared with it")


def publish_gates(store: ObjectStore, board: BudgetBoard, now: datetime) -> Published:
    """Write the file of every subscription that is not ok (when what it says changed), and remove
    the files of those that are ok again."""
    published = Published()
    wanted = {}
    for gate in board.not_ok:
        if "/" in gate.subscription_id or gate.subscription_id.startswith("."):
            board.notes.append(f"subscription {gate.subscription_id!r} cannot name a file: not published")
            continue
        wanted[f"{PREFIX}/{gate.subscription_id}.json"] = gate
    for key, gate in sorted(wanted.items()):
        document = gate.document(now)
        old = store.get(key)
        if old is not None and _same(old, document):
            published.kept.append(key)
            continue
        store.put(key, json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n", overwrite=True)
        published.written.append(key)
    for key in store.list(PREFIX):
        if key.endswith(".json") and key not in wanted and store.delete(key):
            published.removed.append(key)
    return published


def _same(old: bytes, document: dict[str, str]) -> bool:
    try:
        previous = json.loads(old)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(previous, dict) and {k: v for k, v in previous.items() if k != "updatedAt"} == {
        k: v for k, v in document.items() if k != "updatedAt"}
