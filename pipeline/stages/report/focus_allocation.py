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

from decimal import Decimal
from typing import Any

import pyarrow as pa

SERVICE_PROVIDER = HOST_PROVIDER = "Microsoft"
USAGE_METHOD, IDLE_METHOD = "chargeback-ptu-weighted-tokens", "chargeback-ptu-idle-owner"
RATIO = Decimal("0.000000000001")  # 12 decimals

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
