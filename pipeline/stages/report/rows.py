"""Report rows from the usage of resolution keys: per bucket of days (the calendar month; the
day for `-daily.csv`) x cost center x subscription x model x deployment type x currency x
catalog x charge class, priced once per price from the summed tokens (pricing is linear and
exact), with the allocated PTU capacity; and the unpriced usage with its reason."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date
from decimal import Decimal

from pipeline.domain.capacity import DeploymentDay
from pipeline.domain.costing import Resolution
from pipeline.domain.periods import month_of
from pipeline.domain.pricing import MONEY, Price, money_sum
from pipeline.domain.true_up import TRUE_UP, TrueUp
from pipeline.stages.report.model import KeyUsage, ReportRow, UnpricedRow


def report_rows(usage: Iterable[KeyUsage], deployment_days: Iterable[DeploymentDay] = (),
                bucket: Callable[[date], str] = month_of, unknown: Iterable[KeyUsage] = ()) -> list[ReportRow]:
    """Report rows per bucket of days (the calendar month; the day for `-daily.csv`) x cost
    center x subscription x model x deployment type x currency x catalog x charge class.
    `unknown`: the part of the usage whose cached share is unknown (Report.cached_unknown).

    Pricing is linear and exact, so a row's cost is priced once per price from its summed
    tokens, to the same amount as the sum of its lines' costs."""
    bucket = functools.cache(bucket)  # named once per day, not once per line
    rows: dict[RowKey, ReportRow] = {}
    priced: dict[RowKey, dict[int, tuple[Price, list[int]]]] = defaultdict(dict)
    provisioned: set[RowKey] = set()  # rows with provisioned usage: 0 pay-as-you-go
    allocated: dict[RowKey, list[Decimal]] = defaultdict(list)
    for day, subscription_id, _, _, resolved, requests, prompt, cached, completion, audio_prompt, audio_completion \
            in usage:
        key = row_key(bucket(day), subscription_id, resolved)
        row = rows.get(key)
        if row is None:
            row = rows[key] = ReportRow(*key)
        row.requests += requests
        row.prompt_tokens += prompt
        row.cached_tokens += cached
        row.completion_tokens += completion
        row.audio_prompt_tokens += audio_prompt
        row.audio_completion_tokens += audio_completion
        price = resolved.price
        if price is not None:
            prices = priced[key]
            kept = prices.get(id(price))
            if kept is None:
                prices[id(price)] = (price, [prompt, cached, completion, audio_prompt, audio_completion])
            else:
                tokens = kept[1]
                tokens[0] += prompt
                tokens[1] += cached
                tokens[2] += completion
                tokens[3] += audio_prompt
                tokens[4] += audio_completion
        elif resolved.provisioned:
            provisioned.add(key)
    for deployment_day in deployment_days:
        for allocation in deployment_day.allocations:
            consumer = allocation.consumer
            key = (bucket(deployment_day.day), consumer.cost_center, consumer.subscription_id, consumer.model,
                   consumer.deployment_type, allocation.currency, "", consumer.charge_class, "", False)
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
    _mark_cached_unknown(rows, unknown, bucket)
    return [rows[key] for key in sorted(rows)]


RowKey = tuple[str, str, str, str, str, str, str, str, str, bool]  # the first ten fields of a ReportRow


def with_true_ups(rows: list[ReportRow], true_ups: Iterable[TrueUp],
                  bucket: Callable[[date], str] = month_of) -> list[ReportRow]:
    """The rows and the true-up lines (charge class True-up, per bucket x cost center x
    subscription x currency), in row order."""
    added: dict[RowKey, list[Decimal]] = defaultdict(list)
    for part in true_ups:
        added[(bucket(part.day), part.cost_center, part.subscription_id, "", "", part.currency, "", TRUE_UP, "",
               False)].append(part.amount)
    if not added:
        return rows
    lines = [ReportRow(*key, true_up_cost=money_sum(amounts)) for key, amounts in added.items()]
    return sorted([*rows, *lines], key=_order)


def _order(row: ReportRow) -> RowKey:
    return (row.month, row.cost_center, row.subscription_id, row.model, row.deployment_type, row.currency,
            row.catalog_version, row.charge_class, row.service_tier, row.spillover)


def row_key(bucket: str, subscription_id: str, resolved: Resolution) -> RowKey:
    currency = resolved.currency
    return (bucket, resolved.cost_center, subscription_id, resolved.model or "", resolved.deployment_type or "",
            currency, resolved.catalog_version if currency else "", resolved.charge_class, resolved.service_tier,
            resolved.spillover)


def _mark_cached_unknown(rows: dict[RowKey, ReportRow], unknown: Iterable[KeyUsage],
                         bucket: Callable[[date], str]) -> None:
    """Count, on the rows they are part of, the requests whose cached share is unknown, and the
    most they may be over-charged: their prompt tokens at the input price less the cached one."""
    overcharges: dict[RowKey, list[Decimal]] = defaultdict(list)
    for item in unknown:
        key = row_key(bucket(item.day), item.subscription_id, item.resolution)
        row = rows.get(key)
        if row is None:  # not part of these rows (cannot happen for rows built from the same usage)
            continue
        row.cached_unknown_requests += item.requests
        price = item.resolution.price
        if price is not None:
            overcharges[key].append(MONEY.subtract(price.cost(item.prompt_tokens, 0, 0),
                                                   price.cost(item.prompt_tokens, item.prompt_tokens, 0)))
    for key, amounts in overcharges.items():
        rows[key].cached_unknown_max_overcharge = money_sum(amounts)


def unpriced_rows(usage: Iterable[KeyUsage]) -> list[UnpricedRow]:
    rows: dict[tuple[object, ...], UnpricedRow] = {}
    for day, subscription_id, deployment, state, resolved, requests, prompt, cached, completion, audio_prompt, \
            audio_completion in usage:
        if resolved.unpriced is None:
            continue
        key = (month_of(day), resolved.unpriced.value, resolved.cost_center, subscription_id,
               deployment, resolved.model or "", state, resolved.service_tier, resolved.spillover)
        row = rows.get(key)
        if row is None:
            row = rows[key] = UnpricedRow(*key[:6], detail=resolved.detail, usage_state=state,
                                          deployment_type=resolved.deployment_type or "",
                                          service_tier=resolved.service_tier, spillover=resolved.spillover)
        row.requests += requests
        row.prompt_tokens += prompt
        row.cached_tokens += cached
        row.completion_tokens += completion
        row.audio_prompt_tokens += audio_prompt
        row.audio_completion_tokens += audio_completion
    return [rows[key] for key in sorted(rows)]
