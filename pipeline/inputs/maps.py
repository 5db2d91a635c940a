"""The deployment map, the cost-center map and the budgets, from CSV files."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from pipeline.domain.live import MICROS, Budget, Budgets, BudgetScope
from pipeline.domain.mappings import CostCenterAssignment, CostCenterMap, Deployment, DeploymentMap
from pipeline.domain.pricing import CatalogError
from pipeline.inputs.csv_rows import amount, currency, optional_day, read_file, required, table_rows

DEPLOYMENT_COLUMNS = ("deployment", "model", "deployment_type", "region")  # then spillover_deployment, account
_ACCOUNT_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/"
                         r"accounts/[^/]+$", re.IGNORECASE)
COST_CENTER_COLUMNS = ("subscription_id", "cost_center", "effective_from", "effective_to")
BUDGET_COLUMNS = ("scope", "key", "monthly_budget", "currency")


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
    """Monthly budgets: scope `subscription` or `cost-center`, the id, the amount, the currency."""
    budgets = []
    for where, row in table_rows(path, read_file(path), BUDGET_COLUMNS):
        scope = row["scope"].strip()
        if scope not in {s.value for s in BudgetScope}:
            raise CatalogError(f"{where}: scope {scope!r} must be one of {', '.join(s.value for s in BudgetScope)}")
        monthly = amount(row, "monthly_budget", where, unit="currency units")
        if monthly == 0:
            raise CatalogError(f"{where}: monthly_budget must be more than 0")
        budgets.append(Budget(BudgetScope(scope), required(row, "key", where), int(monthly * MICROS),
                              currency(row, where)))
    return Budgets(budgets)
