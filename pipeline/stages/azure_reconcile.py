"""Reconcile the ledger with what Azure itself counted: per UTC day and deployment, the metered
requests, prompt and completion tokens against Azure Monitor's platform metrics
(pipeline.inputs.azure_metrics), the gap and what it costs at the deployment's prices.

Metered = the ledger's events of the deployment and day that carry usage (streamed ones with
their LLM-log usage), voided ones included (Azure served them). Azure = the account's answered
requests (status < 400 when the metrics are split by StatusCode) and its token counts. A row
exists for every deployment-day seen on either side within the days the metrics cover whole:
a deployment Azure saw and the ledger never did (traffic around APIM) is a row too.

A row's `status`: `ok`; `gap` when a gap is more than the tolerance (percent of Azure's count;
any metered count where Azure counted none); `azure-only` / `metered-only` when one side has
nothing; `partial-day` for a day the metrics cover only in part (never a gap).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from pipeline.domain.costing import Reference
from pipeline.domain.mappings import Deployment, is_provisioned_type
from pipeline.domain.periods import Period
from pipeline.domain.pricing import MONEY, money_sum
from pipeline.inputs.azure_metrics import AzureMetrics, MetricsError
from pipeline.lake.csv_files import csv_bytes
from pipeline.lake.warehouse import Warehouse

RECONCILIATION_COLUMNS = (
    "date", "deployment", "metered_requests", "azure_requests", "metered_prompt_tokens", "azure_prompt_tokens",
    "metered_completion_tokens", "azure_completion_tokens",  # the contract; what follows is added at the end only
    "account", "requests_gap", "prompt_tokens_gap", "completion_tokens_gap", "gap_pct", "gap_cost", "currency",
    "azure_failed_requests", "azure_spillover_requests", "metered_spillover_requests", "azure_requests_by_tier",
    "metered_requests_by_tier", "status",
)
DEFAULT_TOLERANCE = Decimal(1)  # percent of Azure's count
OK, GAP, AZURE_ONLY, METERED_ONLY, PARTIAL = "ok", "gap", "azure-only", "metered-only", "partial-day"
_PCT = Decimal("0.01")

# The ledger's side: events that carry usage per day and deployment (all of them, voided too).
METERED_SQL = """
SELECT u.date, u.deployment,
       count(*) FILTER (WHERE u.usage_state = 'measured') AS requests,
       coalesce(sum(u.prompt_tokens) FILTER (WHERE u.usage_state = 'measured'), 0)::BIGINT AS prompt_tokens,
       coalesce(sum(u.completion_tokens) FILTER (WHERE u.usage_state = 'measured'), 0)::BIGINT AS completion_tokens,
       count(*) FILTER (WHERE u.usage_state = 'measured' AND u.spilled) AS spilled,
       list(u.billing_tier) FILTER (WHERE u.usage_state = 'measured') AS tiers
FROM usage u WHERE u.date >= ? AND u.date < ? GROUP BY ALL
"""


@dataclass(slots=True)
class Side:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spillover_requests: int = 0
    tiers: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class ReconciliationRow:
    day: date
    deployment: str
    account: str
    metered: Side
    azure: Side
    azure_failed_requests: int = 0
    gap_cost: Decimal | None = None
    currency: str = ""
    status: str = OK

    @property
    def gaps(self) -> tuple[int, int, int]:
        """Azure's count minus the metered one: requests, prompt tokens, completion tokens."""
        return (self.azure.requests - self.metered.requests, self.azure.prompt_tokens - self.metered.prompt_tokens,
                self.azure.completion_tokens - self.metered.completion_tokens)

    @property
    def gap_pct(self) -> Decimal:
        """The largest gap in percent of Azure's count (100 for any count Azure does not have)."""
        worst = Decimal(0)
        for gap, azure in zip(self.gaps, (self.azure.requests, self.azure.prompt_tokens,
                                          self.azure.completion_tokens), strict=True):
            if gap == 0:
                continue
            share = Decimal(100) if azure == 0 else abs(Decimal(gap)) * 100 / azure
            worst = max(worst, share)
        return worst.quantize(_PCT)

    def values(self) -> dict[str, object]:
        requests_gap, prompt_gap, completion_gap = self.gaps
        return {
            "date": self.day.isoformat(), "deployment": self.deployment,
            "metered_requests": self.metered.requests, "azure_requests": self.azure.requests,
            "metered_prompt_tokens": self.metered.prompt_tokens, "azure_prompt_tokens": self.azure.prompt_tokens,
            "metered_completion_tokens": self.metered.completion_tokens,
            "azure_completion_tokens": self.azure.completion_tokens, "account": self.account,
            "requests_gap": requests_gap, "prompt_tokens_gap": prompt_gap, "completion_tokens_gap": completion_gap,
            "gap_pct": format(self.gap_pct, "f"),
            "gap_cost": "" if self.gap_cost is None else format(MONEY.normalize(self.gap_cost), "f"),
            "currency": self.currency, "azure_failed_requests": self.azure_failed_requests,
            "azure_spillover_requests": self.azure.spillover_requests,
            "metered_spillover_requests": self.metered.spillover_requests,
            "azure_requests_by_tier": _tiers(self.azure.tiers), "metered_requests_by_tier": _tiers(self.metered.tiers),
            "status": self.status,
        }


@dataclass(slots=True)
class Reconciliation:
    period: Period
    tolerance: Decimal
    rows: list[ReconciliationRow]
    notes: list[str] = field(default_factory=list)

    @property
    def gaps(self) -> list[ReconciliationRow]:
        """The rows whose gap exceeds the tolerance."""
        return [row for row in self.rows if row.status in (GAP, AZURE_ONLY, METERED_ONLY)]

    def csv(self) -> bytes:
        return csv_bytes(RECONCILIATION_COLUMNS, (row.values() for row in self.rows))

    @property
    def file_name(self) -> str:
        return f"reconciliation-{self.period.label}.csv"
def reconcile_azure(warehouse: Warehouse, reference: Reference, period: Period, metrics: AzureMetrics,
                    tolerance: Decimal = DEFAULT_TOLERANCE) -> Reconciliation:
    """Every deployment-day of the period on either side, compared."""
    check_accounts(reference, metrics)
    metered: dict[tuple[date, str], tuple[str, Side]] = {}
    for day, deployment, requests, prompt, completion, spilled, tiers in warehouse.connection.execute(
            METERED_SQL, [period.start, period.end]).fetchall():
        by_tier: dict[str, int] = defaultdict(int)
        for tier in tiers or ():
            by_tier[tier] += 1
        metered[(day, deployment.lower())] = (deployment, Side(requests, prompt, completion, spilled, dict(by_tier)))
    by_deployment = {d.name.lower(): d for d in reference.deployments}
    everywhere_whole: set[date] = set()
    everywhere_partial: set[date] = set()
    for account in metrics.accounts.values():
        whole, partial = metrics.days_of(account)
        everywhere_whole |= whole
        everywhere_partial |= partial
    rows: dict[tuple[date, str], ReconciliationRow] = {}
    for (_, day, name), counted in metrics.days.items():
        row = rows.get((day, name))
        if row is None:
            mapped = by_deployment.get(name)
            row = rows[(day, name)] = ReconciliationRow(day, mapped.name if mapped else counted.deployment,
                                                        counted.account, Side(), Side())
        side = row.azure
        side.requests += counted.requests
        side.prompt_tokens += counted.prompt_tokens
        side.completion_tokens += counted.completion_tokens
        side.spillover_requests += counted.spillover_requests
        for tier, requests in counted.tiers.items():
            side.tiers[tier] = side.tiers.get(tier, 0) + requests
        row.azure_failed_requests += counted.failed_requests
    for (day, name), (deployment, side) in metered.items():
        mapped = by_deployment.get(name)
        account = mapped.account if mapped is not None and mapped.account else ""
        whole, partial = metrics.days_of(account) if account else (everywhere_whole, everywhere_partial)
        if day not in whole and day not in partial:
            continue  # a day the metrics do not cover: nothing to compare with
        row = rows.get((day, name))
        if row is None:
            row = rows[(day, name)] = ReconciliationRow(day, deployment, account, Side(), Side())
        row.deployment, row.metered = deployment, side
        row.account = row.account or account
    for row in rows.values():
        mapped = by_deployment.get(row.deployment.lower())
        whole, partial = metrics.days_of(row.account) if row.account else (everywhere_whole, everywhere_partial)
        row.status = _status(row, tolerance, partial_day=row.day in partial and row.day not in whole)
        row.gap_cost, row.currency = _gap_cost(row, reference, mapped)
    notes = list(metrics.notes)
    return Reconciliation(period, tolerance, [rows[key] for key in sorted(rows)], notes)


def _status(row: ReconciliationRow, tolerance: Decimal, partial_day: bool) -> str:
    if partial_day:
        return PARTIAL
    metered, azure = row.metered, row.azure
    if azure.requests == azure.prompt_tokens == azure.completion_tokens == 0 and metered.requests:
        return METERED_ONLY
    if metered.requests == metered.prompt_tokens == metered.completion_tokens == 0 and azure.requests:
        return AZURE_ONLY
    return GAP if row.gap_pct > tolerance else OK


def _gap_cost(row: ReconciliationRow, reference: Reference, mapped: Deployment | None) -> tuple[Decimal | None, str]:
    """The token gap at the deployment's standard pay-as-you-go prices that day (uncached input,
    output); none for a provisioned deployment (its capacity costs the same) or without a price."""
    if mapped is None or mapped.model is None or is_provisioned_type(mapped.deployment_type):
        return None, ""
    price = reference.catalog.find(mapped.model, mapped.deployment_type, mapped.region, row.day)
    if price is None:
        return None, ""
    _, prompt_gap, completion_gap = row.gaps
    return money_sum((price.cost(prompt_gap, 0, 0), price.cost(0, 0, completion_gap))), price.currency


def check_accounts(reference: Reference, metrics: AzureMetrics) -> None:
    """Metrics of an account no deployment of the map names, when the map names accounts."""
    named = {account.lower() for account in reference.deployments.accounts()}
    if not named:
        return
    for key, account in metrics.accounts.items():
        if key not in named:
            raise MetricsError(f"metrics of account {account}, which no deployment of the deployment map names "
                               "(column account): a file for another account, or add the account to the map")


def _tiers(tiers: dict[str, int]) -> str:
    return ";".join(f"{tier}:{count}" for tier, count in sorted(tiers.items()))
