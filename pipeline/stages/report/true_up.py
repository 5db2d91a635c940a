"""`chargeback report --true-up`: the report with the unexplained billed cost of a cost
reconciliation allocated to its cost centers (pipeline.domain.true_up), as lines of their own."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from pipeline.domain.mappings import DeploymentMap
from pipeline.domain.pricing import MONEY
from pipeline.domain.true_up import Consumer, Gap, allocate_true_up
from pipeline.stages.report.model import Report
from pipeline.stages.report.rows import with_true_ups


def apply_true_up(report: Report, deployments: DeploymentMap, gaps: Iterable[Gap], owner: str | None = None) -> Report:
    """The report's true-up lines for the gaps of its period: split by metered cost (pay-as-you-go
    and allocated PTU capacity) per account (deployment map column `account`) and day."""
    accounts = {d.name: d.account.lower() for d in deployments if d.account}
    metered: dict[tuple[str, date, str], dict[Consumer, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for line in report.lines:
        cost, account = line.cost, accounts.get(line.key.deployment)
        if cost and account:
            shares = metered[(account, line.key.day, line.resolution.currency)]
            consumer = (line.resolution.cost_center, line.key.subscription_id)
            shares[consumer] = MONEY.add(shares[consumer], cost)
    for deployment_day in report.deployment_days:
        account = accounts.get(deployment_day.deployment)
        if not account:
            continue
        for allocation in deployment_day.allocations:
            shares = metered[(account, deployment_day.day, allocation.currency)]
            consumer = (allocation.consumer.cost_center, allocation.consumer.subscription_id)
            shares[consumer] = MONEY.add(shares[consumer], allocation.amount)
    within = [gap for gap in gaps if report.period.start <= gap.day < report.period.end]
    report.true_ups = allocate_true_up(within, metered, owner)
    report.rows = with_true_ups(report.rows, report.true_ups)
    return report
