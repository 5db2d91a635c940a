"""Report rows from the usage of resolution keys: per bucket of days (the calendar month; the
day for `-daily.csv`) x cost center x subscription x model x deployment type x currency x
catalog x charge class, priced once per price from the summed tokens (pricing is linear and
exact), with the allocated PTU capacity; and the unpriced usage with its reason."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from decimal import Decimal

from pipeline.domain.capacity import DeploymentDay
from pipeline.domain.costing import CostLine
from pipeline.domain.periods import month_of
from pipeline.domain.pricing import Price, money_sum
from pipeline.stages.report.model import KeyUsage, ReportRow, UnpricedRow


def line_usage(lines: Iterable[CostLine]) -> Iterator[KeyUsage]:
    """Each day-level cost line as the usage of its key (what `report_rows` sums by day)."""
    for line in lines:
        key = line.key
        yield KeyUsage(key.day, key.subscription_id, key.deployment, key.state.value, line.resolution,
                       line.requests, line.prompt_tokens, line.cached_tokens, line.completion_tokens)


def report_rows(usage: Iterable[KeyUsage], deployment_days: Iterable[DeploymentDay] = (),
          bucket: Callable[[date], str] = month_of) -> list[ReportRow]:
    """Report rows per bucket of days (the calendar month; the day for `-daily.csv`) x cost
    center x subscription x model x deployment type x currency x catalog x charge class.

    Pricing is linear and exact, so a row's cost is priced once per price from its summed
    tokens, to the same amount as the sum of its lines' costs."""
    bucket = functools.cache(bucket)  # named once per day, not once per line
    rows: dict[tuple[str, ...], ReportRow] = {}
    priced: dict[tuple[str, ...], dict[int, tuple[Price, list[int]]]] = defaultdict(dict)
    provisioned: set[tuple[str, ...]] = set()  # rows with provisioned usage: 0 pay-as-you-go
    allocated: dict[tuple[str, ...], list[Decimal]] = defaultdict(list)
    for day, subscription_id, _, _, resolved, requests, prompt, cached, completion in usage:
        currency = resolved.currency
        key = (bucket(day), resolved.cost_center, subscription_id, resolved.model or "",
               resolved.deployment_type or "", currency, resolved.catalog_version if currency else "",
               resolved.charge_class)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ReportRow(*key)
        row.requests += requests
        row.prompt_tokens += prompt
        row.cached_tokens += cached
        row.completion_tokens += completion
        price = resolved.price
        if price is not None:
            prices = priced[key]
            kept = prices.get(id(price))
            if kept is None:
                prices[id(price)] = (price, [prompt, cached, completion])
            else:
                tokens = kept[1]
                tokens[0] += prompt
                tokens[1] += cached
                tokens[2] += completion
        elif resolved.provisioned:
            provisioned.add(key)
    for deployment_day in deployment_days:
        for allocation in deployment_day.allocations:
            consumer = allocation.consumer
            key = (bucket(deployment_day.day), consumer.cost_center, consumer.subscription_id, consumer.model,
                   consumer.deployment_type, allocation.currency, "", consumer.charge_class)
            if key not in rows:  # idle capacity charged to its owner: a line with no usage
                rows[key] = ReportRow(*key)
            allocated[key].append(allocation.amount)
    for pair in provisioned:
        rows[pair].cost = Decimal(0)
    for pair, prices in priced.items():
        costs = [price.cost(*tokens) for price, tokens in prices.values()]
        rows[pair].cost = money_sum(costs if pair not in provisioned else [Decimal(0), *costs])
    for pair, amounts in allocated.items():
        rows[pair].ptu_cost = money_sum(amounts)
    return [rows[key] for key in sorted(rows)]


def unpriced_rows(usage: Iterable[KeyUsage]) -> list[UnpricedRow]:
    rows: dict[tuple[str, ...], UnpricedRow] = {}
    for day, subscription_id, deployment, state, resolved, requests, prompt, cached, completion in usage:
        if resolved.unpriced is None:
            continue
        key = (month_of(day), resolved.unpriced.value, resolved.cost_center, subscription_id,
               deployment, resolved.model or "", state)
        row = rows.get(key)
        if row is None:
            row = rows[key] = UnpricedRow(*key[:6], detail=resolved.detail, usage_state=key[6],
                                          deployment_type=resolved.deployment_type or "")
        row.requests += requests
        row.prompt_tokens += prompt
        row.cached_tokens += cached
        row.completion_tokens += completion
    return [rows[key] for key in sorted(rows)]
