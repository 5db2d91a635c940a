"""Azure Monitor platform metrics of Azure OpenAI accounts, from the Metrics REST response JSON
(`GET {account}/providers/Microsoft.Insights/metrics`, which `az monitor metrics list -o json`
prints as it is), summed per account, UTC day and deployment.

What is read (Microsoft's reference: learn.microsoft.com/azure/ai-foundry/openai/monitor-openai-reference
and azure-monitor/reference/supported-metrics/microsoft-cognitiveservices-accounts-metrics):
- `AzureOpenAIRequests` (requests), `ProcessedPromptTokens` (prompt tokens) and
  `GeneratedTokens` (completion tokens), with the Foundry names `ModelRequests`, `InputTokens`
  and `OutputTokens` for the same counts (when a file has both for one account, the Azure
  OpenAI names win); other metrics are skipped.
- the `total` of each data point (aggregation Total), at any interval up to a day (PT1M ... P1D);
  the data point's `timeStamp` is the start of its interval, so its UTC date is its day.
- the `ModelDeploymentName` dimension (required: fetch with
  `--filter "ModelDeploymentName eq '*'"`), and where present `StatusCode` (requests with a
  status of 400 or more are counted apart: the ledger's usage comes from answered requests),
  `IsSpillover`, `ServiceTierResponse` (else `ServiceTierRequest`) and `StreamType`.
- the account: the metric `id` up to `/providers/Microsoft.Insights/metrics/`.

A file that is not JSON, has no `value` list, covers no day of the month, lacks the deployment
dimension, or holds an interval longer than a day is a MetricsError naming the file and the fix.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from pipeline.domain.errors import UserError
from pipeline.domain.periods import midnight


class MetricsError(UserError):
    """A metrics file that cannot be used, with the file and the reason."""


class Measure(StrEnum):
    REQUESTS = "requests"
    PROMPT_TOKENS = "prompt_tokens"
    COMPLETION_TOKENS = "completion_tokens"


# metric name (lower case) -> (what it counts, preferred family first)
METRICS: dict[str, tuple[Measure, int]] = {
    "azureopenairequests": (Measure.REQUESTS, 0), "processedprompttokens": (Measure.PROMPT_TOKENS, 0),
    "generatedtokens": (Measure.COMPLETION_TOKENS, 0),
    "modelrequests": (Measure.REQUESTS, 1), "inputtokens": (Measure.PROMPT_TOKENS, 1),
    "outputtokens": (Measure.COMPLETION_TOKENS, 1),
}
DEPLOYMENT_DIMENSION = "modeldeploymentname"
_METRICS_PATH = re.compile(r"/providers/microsoft\.insights/metrics/[^/]+$", re.IGNORECASE)
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
FAILED_STATUS = 400


@dataclass(slots=True)
class DeploymentDay:
    """What Azure counted for one account, UTC day and deployment."""

    account: str  # the account's resource id as Azure wrote it
    day: date
    deployment: str
    requests: int = 0  # answered (status < 400, or every request without a StatusCode split)
    failed_requests: int = 0  # status >= 400
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spillover_requests: int = 0
    tiers: dict[str, int] = field(default_factory=dict)  # service tier -> requests
    streamed_requests: int = 0


@dataclass(slots=True)
class AzureMetrics:
    """The metrics of every file, per (account lower case, day, deployment lower case), and
    the days each account's files cover whole (a day cut by a timespan is partial)."""

    days: dict[tuple[str, date, str], DeploymentDay] = field(default_factory=dict)
    covered: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))
    partial: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))
    with_data: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))
    spanned: set[str] = field(default_factory=set)  # accounts whose responses named their timespan
    accounts: dict[str, str] = field(default_factory=dict)  # lower case -> as written
    notes: list[str] = field(default_factory=list)

    def days_of(self, account: str) -> tuple[set[date], set[date]]:
        """(whole days, partial days) the account's metrics cover: the whole days of its
        timespans, or the days with data when a response named no timespan."""
        key = account.lower()
        if key not in self.spanned:
            return set(self.with_data.get(key, ())), set()
        whole = self.covered.get(key, set())
        return whole, self.partial.get(key, set()) - whole

    def deployment_day(self, account: str, day: date, deployment: str) -> DeploymentDay:
        key = (account.lower(), day, deployment.lower())
        found = self.days.get(key)
        if found is None:
            found = self.days[key] = DeploymentDay(self.accounts.setdefault(account.lower(), account), day,
                                                   deployment)
        return found


def read_metrics_files(paths: Iterable[Path], month_start: date, month_end: date) -> AzureMetrics:
    """The metrics of the files, summed per account, day and deployment, within [start, end)."""
    return read_responses(((str(path), _load(path)) for path in paths), month_start, month_end)


def read_responses(responses: Iterable[tuple[str, Any]], month_start: date, month_end: date) -> AzureMetrics:
    """The metrics of (where, Metrics REST response) pairs: files read, or fetched from Azure Monitor."""
    metrics = AzureMetrics()
    for where, response in responses:
        add_response(metrics, response, where, month_start, month_end)
    return metrics


def _load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MetricsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MetricsError(f"{path}: cannot be read as UTF-8 text ({error})") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as error:
        raise MetricsError(f"{path}: not JSON ({error.msg} at line {error.lineno}): expected the Metrics REST "
                           "response, as `az monitor metrics list -o json` writes it") from None


def add_response(metrics: AzureMetrics, response: Any, where: str, month_start: date, month_end: date) -> None:
    """Add one Metrics REST response (or a list of them) to `metrics`."""
    responses = response if isinstance(response, list) else [response]
    seen_days = False
    families: dict[tuple[str, Measure], int] = {}
    pending: list[tuple[str, Measure, int, dict[str, Any]]] = []
    for item in responses:
        if not isinstance(item, dict) or not isinstance(item.get("value"), list):
            raise MetricsError(f"{where}: no `value` list of metrics: expected the Metrics REST response, as "
                               "`az monitor metrics list -o json` writes it")
        interval = item.get("interval")
        if isinstance(interval, str) and _seconds(interval, where) > 86_400:
            raise MetricsError(f"{where}: interval {interval} is longer than a day: fetch with --interval PT1H "
                               "(or P1D) so that each day can be compared")
        span = _timespan(item.get("timespan"), where)
        for metric in item["value"]:
            if not isinstance(metric, dict):
                raise MetricsError(f"{where}: a metric of `value` is not an object")
            name = _name(metric.get("name"))
            known = METRICS.get(name.lower())
            if known is None:
                continue
            account = _account(metric.get("id"), where, name)
            measure, family = known
            if span is not None:
                _cover(metrics, account, span, month_start, month_end)
                seen_days |= _overlaps(span, month_start, month_end)
            best = families.get((account.lower(), measure))
            families[(account.lower(), measure)] = family if best is None else min(best, family)
            pending.append((account, measure, family, metric))
    for account, measure, family, metric in pending:
        if families[(account.lower(), measure)] != family:
            metrics.notes.append(f"{where}: {_name(metric.get('name'))} of {account} skipped: its Azure OpenAI "
                                 "metric counts the same")
            continue
        seen_days |= _add_metric(metrics, account, measure, metric, where, month_start, month_end)
    if not seen_days:
        raise MetricsError(f"{where}: no data of {month_start:%Y-%m} (a file for another month, or without the "
                           "AzureOpenAIRequests, ProcessedPromptTokens or GeneratedTokens metric)")


def _add_metric(metrics: AzureMetrics, account: str, measure: Measure, metric: dict[str, Any], where: str,
                month_start: date, month_end: date) -> bool:
    name = _name(metric.get("name"))
    seen = False
    for series in metric.get("timeseries") or ():
        dimensions = {_name(d.get("name")).lower(): str(d.get("value") or "")
                      for d in (series.get("metadatavalues") or ()) if isinstance(d, dict)}
        deployment = dimensions.get(DEPLOYMENT_DIMENSION)
        if not deployment:
            raise MetricsError(f"{where}: {name} of {account} is not split by ModelDeploymentName: fetch with "
                               "--filter \"ModelDeploymentName eq '*'\"")
        status = dimensions.get("statuscode", "")
        failed = status.isdigit() and int(status) >= FAILED_STATUS
        spilled = dimensions.get("isspillover", "").lower() == "true"
        tier = (dimensions.get("servicetierresponse") or dimensions.get("servicetierrequest") or "").lower()
        streamed = dimensions.get("streamtype", "").lower() in ("streaming", "stream", "true")
        for point in series.get("data") or ():
            total = point.get("total") if isinstance(point, dict) else None
            if total is None:
                if isinstance(point, dict) and any(point.get(k) is not None for k in ("average", "count",
                                                                                      "maximum", "minimum")):
                    raise MetricsError(f"{where}: {name} of {account} has no `total`: fetch with --aggregation "
                                       "Total")
                continue  # no traffic in that interval
            day = _timestamp(point.get("timeStamp"), where).date()
            if not month_start <= day < month_end:
                continue
            value = _count(total, where, name)
            entry = metrics.deployment_day(account, day, deployment)
            metrics.with_data[account.lower()].add(day)
            seen = True
            if measure is Measure.REQUESTS:
                if failed:
                    entry.failed_requests += value
                    continue
                entry.requests += value
                entry.spillover_requests += value if spilled else 0
                entry.streamed_requests += value if streamed else 0
                if tier:
                    entry.tiers[tier] = entry.tiers.get(tier, 0) + value
            elif measure is Measure.PROMPT_TOKENS:
                entry.prompt_tokens += value
            else:
                entry.completion_tokens += value
    return seen


def _name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("value") or "")
    return str(value or "")


def _account(metric_id: Any, where: str, name: str) -> str:
    if not isinstance(metric_id, str) or not _METRICS_PATH.search(metric_id):
        raise MetricsError(f"{where}: metric {name} has no resource `id` (…/providers/Microsoft.Insights/metrics/"
                           f"{name}): the account it counts is unknown")
    return _METRICS_PATH.sub("", metric_id)


def _count(total: Any, where: str, name: str) -> int:
    """A data point's total as a whole count (JSON numbers are read as decimals; a response
    built in Python may hold ints or floats)."""
    value = Decimal(repr(total)) if isinstance(total, float) else total
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise MetricsError(f"{where}: {name} total {total!r} is not a number")
    value = Decimal(value)
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise MetricsError(f"{where}: {name} total {total!r} is not a whole count")
    return int(value)


def _timestamp(value: Any, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MetricsError(f"{where}: timeStamp {value!r} is not an ISO 8601 date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _timespan(value: Any, where: str) -> tuple[datetime, datetime] | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    first, _, last = value.partition("/")
    return _timestamp(first, where), _timestamp(last, where)


def _overlaps(span: tuple[datetime, datetime], month_start: date, month_end: date) -> bool:
    return span[0].date() < month_end and span[1] > datetime(month_start.year, month_start.month, 1, tzinfo=UTC)


def _cover(metrics: AzureMetrics, account: str, span: tuple[datetime, datetime], month_start: date,
           month_end: date) -> None:
    """The whole UTC days of [start, end) within the month; the cut ones are partial."""
    key = account.lower()
    metrics.accounts.setdefault(key, account)
    metrics.spanned.add(key)
    start, end = span
    day = max(start.date(), month_start)
    while day < month_end and midnight(day) < end:
        whole = start <= midnight(day) and midnight(day + timedelta(days=1)) <= end
        (metrics.covered if whole else metrics.partial)[key].add(day)
        day += timedelta(days=1)


def _seconds(duration: str, where: str) -> int:
    if duration.upper() == "FULL":
        return 10**9
    match = _DURATION.match(duration.upper())
    if not match:
        raise MetricsError(f"{where}: interval {duration!r} is not an ISO 8601 duration (PT1M, PT1H, P1D)")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
