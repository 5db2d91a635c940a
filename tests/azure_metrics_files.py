"""Azure Monitor Metrics REST responses and Cost Management FOCUS exports for tests, built in the
documented shapes:

- Metrics: `GET {resourceUri}/providers/Microsoft.Insights/metrics` (api-version 2018-01-01),
  the Response object of the Metrics - List operation (learn.microsoft.com/rest/api/monitor/
  metrics/list): `cost`, `timespan`, `interval`, `namespace`, `resourceregion`, `value[]` of
  Metric (`id`, `type`, `name` {value, localizedValue}, `displayDescription`, `unit`,
  `timeseries[]` of {`metadatavalues[]` {name {value, localizedValue}, value}, `data[]`
  {timeStamp, total}}, `errorCode`), the JSON `az monitor metrics list -o json` prints. Metric
  names and dimensions from MicrosoftDocs/azure-reference-other, azure-monitor-ref/
  supported-metrics/includes/microsoft-cognitiveservices-accounts-metrics-include.md
  (AzureOpenAIRequests: ModelDeploymentName, StatusCode, StreamType, ...; ProcessedPromptTokens
  and GeneratedTokens: ModelDeploymentName, ...).
- Cost exports: the FOCUS columns BilledCost, BillingCurrency, ChargePeriodStart, ResourceId,
  ChargeCategory (Cost Management's FOCUS cost and usage export).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

SUBSCRIPTION = "/subscriptions/00000000-0000-4000-8000-00000000aaaa"
ACCOUNT = f"{SUBSCRIPTION}/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts/aoai-weu"
OTHER_ACCOUNT = f"{SUBSCRIPTION}/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts/aoai-swc"
DISPLAY = {"AzureOpenAIRequests": "Azure OpenAI Requests", "ProcessedPromptTokens": "Processed Prompt Tokens",
           "GeneratedTokens": "Generated Completion Tokens"}

# (metric, {dimension: value}, timeStamp, total)
Point = tuple[str, dict[str, str], str, float]


def metrics_response(points: Iterable[Point], account: str = ACCOUNT, timespan: str = "2026-10-01T00:00:00Z/"
                     "2026-11-01T00:00:00Z", interval: str = "PT1H", aggregation: str = "total") -> dict[str, Any]:
    """One Metrics REST response: a metric per name, a time series per dimension combination."""
    by_metric: dict[str, dict[tuple[tuple[str, str], ...], list[dict[str, Any]]]] = {}
    for metric, dimensions, stamp, total in points:
        series = by_metric.setdefault(metric, {}).setdefault(tuple(sorted(dimensions.items())), [])
        point: dict[str, Any] = {"timeStamp": stamp, "average": None, "count": None, "maximum": None,
                                 "minimum": None, "total": None}
        point[aggregation] = total
        series.append(point)
    return {
        "cost": 0, "interval": interval, "namespace": "Microsoft.CognitiveServices/accounts",
        "resourceregion": "westeurope", "timespan": timespan,
        "value": [{
            "displayDescription": f"{DISPLAY.get(metric, metric)} of the account.", "errorCode": "Success",
            "id": f"{account}/providers/Microsoft.Insights/metrics/{metric}",
            "name": {"localizedValue": DISPLAY.get(metric, metric), "value": metric},
            "timeseries": [{
                "data": data,
                "metadatavalues": [{"name": {"localizedValue": name.lower(), "value": name.lower()}, "value": value}
                                   for name, value in dimensions],
            } for dimensions, data in series_by.items()],
            "type": "Microsoft.Insights/metrics", "unit": "Count",
        } for metric, series_by in by_metric.items()],
    }


def hours(day: str, totals: Iterable[float]) -> list[str]:
    """The hourly timeStamps of a day, one per total (the interval's start)."""
    start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    return [(start + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ") for n, _ in enumerate(totals)]


def spread(metric: str, dimensions: dict[str, str], day: str, total: int, parts: int = 3) -> list[Point]:
    """`total` over the first `parts` hours of `day` (whole numbers, as Azure counts)."""
    shares = [total // parts] * parts
    shares[0] += total - sum(shares)
    return [(metric, dimensions, stamp, float(share)) for stamp, share in zip(hours(day, shares), shares,
                                                                              strict=True)]


def dumps(response: Any) -> str:
    return json.dumps(response, indent=2)


COST_EXPORT_HEADER = ("BilledCost,BillingCurrency,ChargeCategory,ChargePeriodStart,ChargePeriodEnd,ResourceId,"
                      "ServiceName,x_SkuMeterName\n")


def cost_export(rows: Iterable[tuple[str, str, str, str]]) -> str:
    """(day, resource id, billed cost, meter) rows of a FOCUS export, in USD."""
    lines = [COST_EXPORT_HEADER]
    for day, resource, cost, meter in rows:
        start = datetime.fromisoformat(f"{day}T00:00:00+00:00")
        end = start + timedelta(days=1)
        lines.append(f"{cost},USD,Usage,{start:%Y-%m-%dT%H:%M:%SZ},{end:%Y-%m-%dT%H:%M:%SZ},{resource},"
                     f"Foundry Models,{meter}\n")
    return "".join(lines)
