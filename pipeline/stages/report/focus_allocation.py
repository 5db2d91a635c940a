"""FOCUS 1.3 columns of pipeline.stages.report.focus: the provider columns and the split cost
allocation of provisioned (PTU) capacity.

Sources: FOCUS 1.3 (ratified 2025-12-05), Cost and Usage dataset columns
(`specification/datasets/cost_and_usage/columns/`: serviceprovidername, hostprovidername,
allocatedmethodid, allocatedmethoddetails, allocatedresourceid, allocatedresourcename, allocatedtags;
ProviderName and PublisherName are DEPRECATED there but still Mandatory, so both stay) and the
DataGeneratorCalculatedSplitCostAllocationHandling attribute.

The origin charge is one provisioned deployment's capacity on one UTC day (ResourceId and
ResourceName = the deployment); each allocated row is the share of that day charged to one
consumer (AllocatedResourceId: the APIM subscription, or the cost center when there is none;
AllocatedResourceName: the cost center; AllocatedTags: the consumer's `chargeback/` tags), by
weighted tokens (`chargeback-ptu-weighted-tokens`) or, for unused capacity, to the idle owner
(`chargeback-ptu-idle-owner`). AllocatedMethodDetails is `{"Elements":[{"AllocatedRatio":r,...}]}`
with r the row's BilledCost / the day's cost, rounded to 12 decimals, the largest share taking the
rounding remainder so that the ratios of one origin charge sum to exactly 1 (the spec's MUST).
Pay-as-you-go rows are not allocated: their Allocated* columns are null.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pyarrow as pa

from pipeline.domain.capacity import IDLE, DeploymentDay
from pipeline.domain.costing import CORRECTION
from pipeline.domain.periods import midnight
from pipeline.domain.pricing import MONEY
from pipeline.domain.true_up import BY_METERED_COST, TrueUp

SERVICE_PROVIDER = HOST_PROVIDER = "Microsoft"
PTU_UNIT = "PTU-Hours"
PTU_QUANTITY = Decimal("0.000001")  # PTU-hours are stated to 6 decimals
ALLOCATION, IDLE_KIND = "ProvisionedAllocation", "ProvisionedIdle"  # x_ChargeKind of capacity rows
USAGE_METHOD, IDLE_METHOD = "chargeback-ptu-weighted-tokens", "chargeback-ptu-idle-owner"
# `report --true-up`: an account-day's unexplained billed cost, by metered cost or to an owner
TRUE_UP_METHOD, TRUE_UP_OWNER_METHOD = "chargeback-true-up-metered-cost", "chargeback-true-up-owner"
RATIO = Decimal("0.000000000001")  # 12 decimals
TAG_PREFIX = "chargeback/"
TRUE_UP_KIND = "TrueUp"  # x_ChargeKind of `report --true-up` lines

# the columns FOCUS 1.3 adds that this export fills (alphabetical merge with the 1.2 ones)
ADDED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("AllocatedMethodDetails", pa.string()), ("AllocatedMethodId", pa.string()),
    ("AllocatedResourceId", pa.string()), ("AllocatedResourceName", pa.string()),
    ("AllocatedTags", pa.string()), ("HostProviderName", pa.string()), ("ResourceId", pa.string()),
    ("ResourceName", pa.string()), ("ServiceProviderName", pa.string()),
)


def allocation_ratios(amounts: list[Decimal]) -> list[Decimal]:
    """Each amount's share of their sum, to 12 decimals, summing to exactly 1 (the largest share
    absorbs the rounding remainder). Empty or zero total: no ratios to state (all 0)."""
    total = sum(amounts, Decimal(0))
    if not amounts or total == 0:
        return [Decimal(0) for _ in amounts]
    ratios = [(amount / total).quantize(RATIO) for amount in amounts]
    largest = max(range(len(amounts)), key=lambda i: amounts[i])
    ratios[largest] += Decimal(1) - sum(ratios, Decimal(0))
    return ratios


def method_details(ratio: Decimal, weighted_tokens: Decimal | None) -> str:
    """The AllocatedMethodDetails JSON object: one element, AllocatedRatio a JSON number written
    exactly (NumericFormat), our own properties prefixed x_."""
    element = f'"AllocatedRatio":{_number(ratio)}'
    if weighted_tokens is not None:
        element += f',"x_WeightedTokens":{_number(weighted_tokens)}'
    return '{"Elements":[{' + element + "}]}"


def allocated_columns(cost_center: str, subscription: str | None, tags: str, deployment: str, idle: bool,
                      ratio: Decimal, weighted_tokens: Decimal) -> dict[str, Any]:
    return {
        "AllocatedMethodId": IDLE_METHOD if idle else USAGE_METHOD,
        "AllocatedMethodDetails": method_details(ratio, None if idle else weighted_tokens),
        "AllocatedResourceId": f"apim-subscription/{subscription}" if subscription else f"cost-center/{cost_center}",
        "AllocatedResourceName": cost_center, "AllocatedTags": tags,
        "ResourceId": deployment, "ResourceName": deployment,
    }


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def true_up_columns(part: TrueUp, tags: str) -> dict[str, Any]:
    """A true-up line allocated from its origin charge, the account-day's gap (ResourceId = the
    account); its ratio comes from the exact split, so one gap's ratios sum to exactly 1."""
    return {
        "AllocatedMethodId": TRUE_UP_METHOD if part.method == BY_METERED_COST else TRUE_UP_OWNER_METHOD,
        "AllocatedMethodDetails": method_details(part.ratio, None),
        "AllocatedResourceId": (f"apim-subscription/{part.subscription_id}" if part.subscription_id
                                else f"cost-center/{part.cost_center}"),
        "AllocatedResourceName": part.cost_center, "AllocatedTags": tags,
        "ResourceId": part.account, "ResourceName": part.account.rstrip("/").rsplit("/", 1)[-1],
    }



@functools.cache  # one text per cost center, subscription and deployment, not per row
def tags_json(cost_center: str, subscription: str | None, deployment: str | None = None) -> str:
    tags = {f"{TAG_PREFIX}costCenter": cost_center}
    if subscription:
        tags[f"{TAG_PREFIX}apimSubscription"] = subscription
    if deployment:
        tags[f"{TAG_PREFIX}deployment"] = deployment
    return json.dumps(tags, sort_keys=True, separators=(",", ":"))


def true_up_rows(true_ups: list[TrueUp]) -> Iterator[dict[str, Any]]:
    """`report --true-up`: billed cost the metered usage does not explain, allocated from its
    account-day (the origin charge) to a consumer. An Adjustment with no price or quantity."""
    for part in true_ups:
        account = part.account.rstrip("/").rsplit("/", 1)[-1]
        yield {
            "BilledCost": part.amount, "ContractedCost": part.amount, "EffectiveCost": part.amount,
            "ListCost": part.amount, "BillingCurrency": part.currency, "ChargeCategory": "Adjustment",
            "ChargeClass": None, "ChargeFrequency": "One-Time", "PricingCategory": None,
            "ChargeDescription": f"true-up of Azure OpenAI account {account}: billed cost the metered usage does "
                                 f"not explain, charged to {part.cost_center}",
            "ChargePeriodStart": midnight(part.day), "ChargePeriodEnd": midnight(part.day + timedelta(days=1)),
            "Tags": tags_json(part.cost_center, part.subscription_id or None),
            **true_up_columns(part, tags_json(part.cost_center, part.subscription_id or None)),
            "x_CostCenter": part.cost_center, "x_ApimSubscriptionId": part.subscription_id or None, "x_Model": "",
            "x_DeploymentType": None, "x_Deployment": None, "x_ChargeKind": TRUE_UP_KIND,
            "x_PriceCatalogVersion": None, "x_CapacityVersion": None, "x_SourceEventCount": 0,
            "x_CorrectionIds": None, "x_ServiceTier": None, "x_Spillover": None,
        }


def capacity_rows(days: list[DeploymentDay], capacity_version: str) -> Iterator[dict[str, Any]]:
    """The FOCUS rows of provisioned capacity: each deployment-day's PTU-hours allocated to its
    consumers (ProvisionedAllocation) or left idle and charged to its owner (ProvisionedIdle)."""
    for day in days:
        charged = [a for a in day.allocations if a.amount != 0 and a.price_per_ptu_hour != 0]
        for allocation, ratio in zip(charged, allocation_ratios([a.amount for a in charged]), strict=True):
            consumer, idle = allocation.consumer, allocation.kind == IDLE
            tags = tags_json(consumer.cost_center, consumer.subscription_id, day.deployment)
            unit_price = allocation.price_per_ptu_hour
            quantity = (allocation.amount / unit_price).quantize(PTU_QUANTITY, rounding=ROUND_HALF_EVEN)
            sku = f"{consumer.model}/{consumer.deployment_type}" if consumer.model else consumer.deployment_type
            what = ("idle capacity" if idle else "capacity used") + f" of PTU deployment {day.deployment}"
            yield {
                "BilledCost": allocation.amount, "ContractedCost": allocation.amount,
                "EffectiveCost": allocation.amount, "ListCost": MONEY.multiply(quantity, unit_price),
                "ListUnitPrice": unit_price, "PricingQuantity": quantity, "PricingUnit": PTU_UNIT,
                "ConsumedQuantity": quantity, "ConsumedUnit": PTU_UNIT,
                "BillingCurrency": allocation.currency,
                "ChargeClass": CORRECTION if consumer.charge_class else None,
                "ChargeDescription": f"{what} ({day.ptu_hours} PTU-hours that day), charged to {consumer.cost_center}",
                "ChargeFrequency": "Recurring",
                "ChargePeriodStart": midnight(day.day), "ChargePeriodEnd": midnight(day.day + timedelta(days=1)),
                "SkuId": sku, "SkuMeter": "Provisioned Throughput Unit Hours",
                "SkuPriceId": f"{sku}/ptu-hour/{format(MONEY.normalize(unit_price), 'f')} {allocation.currency}",
                "SkuPriceDetails": json.dumps({"x_Deployment": day.deployment}, separators=(",", ":")),
                "Tags": tags,
                **allocated_columns(consumer.cost_center, consumer.subscription_id or None,
                                    tags_json(consumer.cost_center, consumer.subscription_id), day.deployment, idle,
                                    ratio, allocation.usage.weighted),
                "x_CostCenter": consumer.cost_center, "x_ApimSubscriptionId": consumer.subscription_id or None,
                "x_Model": consumer.model, "x_DeploymentType": consumer.deployment_type,
                "x_Deployment": day.deployment, "x_ChargeKind": IDLE_KIND if idle else ALLOCATION,
                "x_PriceCatalogVersion": None, "x_CapacityVersion": capacity_version or None,
                "x_SourceEventCount": allocation.usage.requests,
                "x_CorrectionIds": ";".join(allocation.corrections) or None,
            }
