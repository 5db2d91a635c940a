"""The deployment map, the cost-center map and the budgets, from CSV files."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from pipeline.domain.live import DEFAULT_WARN_AT, MICROS, Budget, BudgetAction, Budgets, BudgetScope
from pipeline.domain.mappings import CostCenterAssignment, CostCenterMap, Deployment, DeploymentMap
from pipeline.domain.pricing import CatalogError
from pipeline.inputs.csv_rows import amount, currency, optional_day, read_file, required, table_rows

DEPLOYMENT_COLUMNS = ("deployment", "model", "deployment_type", "region")  # then spillover_deployment, account
_ACCOUNT_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/"
                         r"accounts/[^/]+$", re.IGNORECASE)
COST_CENTER_COLUMNS = ("subscription_id", "cost_center", "effective_from", "effective_to")
BUDGET_COLUMNS = ("scope", "key", "monthly_budget", "currency")  # then action, warn_at


def load_deployments(path: Path) -> DeploymentMap:
    deployments = [
        Deployment(
            name=required(row, "deployment", where),
            model=row["model"].strip() or None,
            deployment_type=required(row, "deployment_type", where),
            region=row["region"].strip() or None,
            origin=where,
            spillover_deployment=(row.get("spillover_deployment") or "").strip() or None,
            account=_account(row, where),
        )
        for where, row in table_rows(path, read_file(path), DEPLOYMENT_COLUMNS)
    ]
    return DeploymentMap(deployments)


def _account(row: dict[str, str], where: str) -> str | None:
    """The optional `account` column: an Azure resource id of a Cognitive Services account."""
    account = (row.get("account") or "").strip().rstrip("/")
    if not account:
        return None
    if not _ACCOUNT_ID.match(account):
        raise CatalogError(f"{where}: account {account!r} is not the resource id of an Azure OpenAI account "
                           "(/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.CognitiveServices/"
                           "accounts/<name>)")
    return account


def load_cost_centers(path: Path) -> CostCenterMap:
    assignments = []
    for where, row in table_rows(path, read_file(path), COST_CENTER_COLUMNS):
        assignment = CostCenterAssignment(
            subscription_id=required(row, "subscription_id", where),
            cost_center=required(row, "cost_center", where),
            effective_from=optional_day(row, "effective_from", where) or date.min,
            effective_to=optional_day(row, "effective_to", where),
            origin=where,
        )
        if assignment.effective_to is not None and assignment.effective_to <= assignment.effective_from:
            raise CatalogError(f"{where}: effective_to is not after effective_from")
        assignments.append(assignment)
    return CostCenterMap(assignments)


def load_budgets(path: Path) -> Budgets:
    """Monthly budgets: scope `subscription`, `cost-center` or `product`, the id, the amount, the
    currency; optional `action` (`alert`, the default, or `block`) and `warn_at` (percent, default
    80). A scope and key may have one budget."""
    budgets: dict[tuple[BudgetScope, str], Budget] = {}
    for where, row in table_rows(path, read_file(path), BUDGET_COLUMNS):
        scope = row["scope"].strip()
        if scope not in {s.value for s in BudgetScope}:
            raise CatalogError(f"{where}: scope {scope!r} must be one of {', '.join(s.value for s in BudgetScope)}")
        text = row["monthly_budget"].strip()
        if text.startswith("-"):
            raise CatalogError(f"{where}: monthly_budget {text!r} is negative: a budget is an amount above 0")
        monthly = amount(row, "monthly_budget", where, unit="currency units")
        if monthly == 0:
            raise CatalogError(f"{where}: monthly_budget must be more than 0")
        action = (row.get("action") or "").strip().lower() or BudgetAction.ALERT.value
        if action not in {a.value for a in BudgetAction}:
            raise CatalogError(f"{where}: action {action!r} must be one of "
                               f"{', '.join(a.value for a in BudgetAction)} (blank = alert)")
        budget = Budget(BudgetScope(scope), required(row, "key", where), int(monthly * MICROS), currency(row, where),
                        BudgetAction(action), _warn_at(row, where), where)
        first = budgets.get((budget.scope, budget.key))
        if first is not None:
            raise CatalogError(f"{where}: a second budget for {scope} {budget.key!r} (first at {first.origin})")
        budgets[(budget.scope, budget.key)] = budget
    return Budgets(budgets.values())


def _warn_at(row: dict[str, str], where: str) -> int:
    text = (row.get("warn_at") or "").strip().rstrip("%")
    if not text:
        return DEFAULT_WARN_AT
    if not text.isdigit() or not 0 < int(text) <= 100:
        raise CatalogError(f"{where}: warn_at {text!r} must be a whole percent from 1 to 100 (blank = "
                           f"{DEFAULT_WARN_AT})")
    return int(text)
