"""Provisioned (PTU) capacity allocated to the cost lines that used it: the glue between the
priced lines of a period (pipeline.domain.costing) and each deployment-day's allocation
(pipeline.domain.capacity)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta

from pipeline.domain.capacity import Consumer, DeploymentDay, Usage, allocate_day
from pipeline.domain.costing import CostLine, Reference


def allocate_capacity(lines: Iterable[CostLine], reference: Reference, start: date, end: date,
                      today: date) -> list[DeploymentDay]:
    """Each provisioned deployment-day of [start, end) allocated to the lines that used it.
    Days after `today` (UTC) count only when they already have usage: a report of the current
    month charges the capacity used so far, not the rest of the month."""
    plan = reference.capacity
    if not plan:
        return []
    last = today + timedelta(days=1)
    usage: dict[tuple[date, str], dict[Consumer, Usage]] = defaultdict(dict)
    corrected: dict[tuple[date, str], dict[Consumer, tuple[str, ...]]] = defaultdict(dict)
    models: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in lines:
        resolved = line.resolution
        if not resolved.provisioned:
            continue
        at = (line.key.day, line.key.deployment)
        consumer = Consumer(resolved.cost_center, line.key.subscription_id, resolved.model or "",
                            resolved.deployment_type or "", resolved.charge_class)
        weighted = plan.weights.for_model(resolved.model).weighted(line.prompt_tokens, line.cached_tokens,
                                                                   line.completion_tokens)
        usage[at].setdefault(consumer, Usage()).add(line.requests, line.prompt_tokens, line.cached_tokens,
                                                    line.completion_tokens, weighted)
        if resolved.corrections:
            corrected[at][consumer] = tuple(sorted({*corrected[at].get(consumer, ()), *resolved.corrections}))
        models[line.key.deployment][resolved.model or ""] += line.requests
    days = []
    for day, deployment, rows in plan.days(start, end):
        if day >= last and (day, deployment) not in usage:
            continue
        mapped = reference.deployments.get(deployment)
        seen = models.get(deployment, {})
        model = mapped.model if mapped is not None and mapped.model else (
            max(seen.items(), key=lambda item: (item[1], item[0]))[0] if seen else None)
        deployment_type = mapped.deployment_type if mapped is not None else "provisioned"
        days.append(allocate_day(day, deployment, rows, usage.get((day, deployment), {}), plan, model,
                                 deployment_type, corrected.get((day, deployment))))
    return days
