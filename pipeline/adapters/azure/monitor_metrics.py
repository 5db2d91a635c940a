"""Azure Monitor's platform metrics of Azure OpenAI accounts, fetched with azure-monitor-query's
MetricsQueryClient (the ARM metrics API, `GET {account}/providers/Microsoft.Insights/metrics`,
the API `az monitor metrics list` calls) as DefaultAzureCredential, hourly totals split by
deployment. Each answer is returned in the Metrics REST response's own shape, which
pipeline.inputs.azure_metrics reads, so fetched and downloaded metrics are one format.

The caller needs the Monitoring Reader role on the accounts (or their resource group).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.monitor.query import MetricAggregationType, MetricsQueryClient

from pipeline.adapters.azure.identity import shared_credential
from pipeline.ports import AccessRefused, BackendUnavailable

GRANULARITY = timedelta(hours=1)
MAX_SERIES = 1000  # time series per metric (the API's default is 10)
# Requests split by deployment and status code; tokens by deployment (they have no StatusCode).
QUERIES = (
    (("AzureOpenAIRequests",), "ModelDeploymentName eq '*' and StatusCode eq '*'"),
    (("ProcessedPromptTokens", "GeneratedTokens"), "ModelDeploymentName eq '*'"),
)


def fetch_metrics(accounts: list[str], start: datetime, end: datetime, credential: TokenCredential | None = None,
                  **client_options: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, Metrics REST response) for each account and query, over [start, end): `where`
    names the account, for the messages of pipeline.inputs.azure_metrics."""
    if credential is None:
        credential = shared_credential()
    client = MetricsQueryClient(credential, **client_options)
    end = min(end, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    for account in accounts:
        for names, dimensions in QUERIES:
            try:
                result = client.query_resource(account, list(names), timespan=(start, end), granularity=GRANULARITY,
                                               aggregations=[MetricAggregationType.TOTAL], max_results=MAX_SERIES,
                                               filter=dimensions)
            except ClientAuthenticationError as error:
                raise AccessRefused(f"Azure Monitor refused the metrics of {account}: {_first_line(error)}; sign in "
                                    "(az login) or give this identity Monitoring Reader on the account") from None
            except HttpResponseError as error:
                if error.status_code in (401, 403):
                    raise AccessRefused(f"Azure Monitor refused the metrics of {account} (HTTP {error.status_code}):"
                                        " give this identity Monitoring Reader on the account") from None
                raise BackendUnavailable(f"Azure Monitor could not read the metrics of {account} (HTTP "
                                  f"{error.status_code}): {_first_line(error)}") from None
            except ServiceRequestError as error:
                raise BackendUnavailable(f"Azure Monitor is unreachable: {_first_line(error)}") from None
            yield f"Azure Monitor metrics of {account}", _as_response(result)


def _as_response(result: Any) -> dict[str, Any]:
    granularity = result.granularity
    return {
        "timespan": result.timespan,
        "interval": _duration(granularity) if isinstance(granularity, timedelta) else "PT1H",
        "value": [{
            "id": metric.id,
            "name": {"value": metric.name},
            "unit": str(metric.unit),
            "timeseries": [{
                "metadatavalues": [{"name": {"value": name}, "value": value}
                                   for name, value in (series.metadata_values or {}).items()],
                "data": [{"timeStamp": point.timestamp.isoformat(),
                          "total": None if point.total is None else Decimal(repr(point.total))}
                         for point in series.data],
            } for series in metric.timeseries],
        } for metric in result.metrics],
    }


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"PT{seconds // 3600}H" if seconds % 3600 == 0 else f"PT{seconds // 60}M"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
