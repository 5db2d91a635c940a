"""APIM's LLM logs (diagnostic category `GatewayLlmLogs`, table `ApiManagementGatewayLlmLog`)
as token counts per request: what fills the usage of streamed events, which the policy emits
before the stream is read (`usage: null`, `usageSource: "stream"`). Pure: no I/O.

Records are read whatever their shape, because Microsoft documents the table's columns
(PascalCase, https://learn.microsoft.com/azure/azure-monitor/reference/tables/apimanagementgatewayllmlog)
but not the JSON that a diagnostic setting streams to Event Hubs:
- the Azure Monitor envelope `{"records": [...]}` (resource-log schema: `time`, `category`,
  `properties`, https://learn.microsoft.com/azure/azure-monitor/essentials/resource-logs-schema),
  the columns camelCase under `properties`;
- the same envelope with the PascalCase columns at the record's top level, as read raw from an
  Event Hub (elastic/integrations#15826: `{"records": [{ "Region": "eastus", "serviceName": ...`);
- rows exported from Log Analytics (`az monitor log-analytics query -o json`: a JSON array of rows,
  `TimeGenerated`, `Type` = `ApiManagementGatewayLlmLog`, every value a string);
- one record on its own, and `properties` holding JSON text instead of an object.
Every field is looked up case-insensitively at the record's top level and under `properties`
(which wins); counts may be numbers or strings of digits. A record of another category is
counted as such; a GatewayLlmLogs record that cannot be used is a counted rejection with its
reason, never a silent drop.

The join id is `CorrelationId`: the table reference documents it as the "unique id corresponding
with the same field in ApiManagementGatewayLogs"
(https://learn.microsoft.com/azure/azure-monitor/reference/tables/apimanagementgatewayllmlog),
and that field is the request id APIM assigns, `context.RequestId`, which the policy sends as
`eventId` ("context.RequestId is unique for each request and is stored as part of gateway log
records", https://learn.microsoft.com/azure/api-management/policies/add-correlation-id; the
LLM-logs article correlates a request's entries by `CorrelationId`,
https://learn.microsoft.com/azure/api-management/api-management-howto-llm-logs). The table's
`RequestId` is the language model's own request id, not APIM's: it is kept, never joined on.

Whether the counts of a streamed call are exact (the final usage chunk) or estimated is not
documented (the pages above say only "prompt tokens, completion tokens, and total tokens"; the
token-metric policy, by contrast, says streamed counts "are estimated":
https://learn.microsoft.com/azure/api-management/azure-openai-emit-token-metric-policy). So the
numbers joined from here are marked `llm-log`, never `stream` or `response`.

Nothing but the fields below is ever read out of a record: `RequestMessages`, `ResponseMessages`
(prompts and completions, logged in 32 KB chunks when "Log LLM messages" is on) and anything else
are dropped with the record's other properties, and a rejection's detail never quotes a value.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline.domain.errors import ChargebackError

CATEGORY = "gatewayllmlogs"  # compared lowercased
TABLE = "apimanagementgatewayllmlog"  # a Log Analytics row's `Type`, compared lowercased
MAX_TOKENS = 10**12
MAX_TEXT = 256
_WANTED = frozenset({"correlationid", "requestid", "deploymentname", "modelname", "operationname", "prompttokens",
                     "completiontokens", "totaltokens", "promptcachedtokens", "isstreamcompletion", "sequencenumber",
                     "region", "timegenerated", "time", "category", "type"})
_COUNT_NAMES = {"prompttokens": "promptTokens", "completiontokens": "completionTokens", "totaltokens": "totalTokens",
                "promptcachedtokens": "promptCachedTokens"}
_FRACTION = re.compile(r"(\.\d{6})\d+")  # Azure Monitor writes 7 fractional digits


class LlmUsage(msgspec.Struct, frozen=True, kw_only=True):
    """The token counts of one request, from one LLM-log record."""

    join_id: str  # CorrelationId, GUIDs in lowercase 36-character form (as the policy's eventId)
    time: datetime
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int | None  # promptCachedTokens; None when the record has no such field
    deployment: str | None = None
    model: str | None = None
    operation: str | None = None
    is_stream: bool | None = None
    region: str | None = None
    sequence_number: int | None = None
    request_id: str | None = None  # the language model's request id (not joined on)


@dataclass(frozen=True, slots=True)
class LlmRejection:
    # not-json, not-envelope, not-a-record, no-category, missing-id, bad-time, bad-tokens, inconsistent-tokens
    reason: str
    detail: str  # never quotes a value of the record
    where: str


@dataclass(slots=True)
class LlmParse:
    """One envelope: records read = kept + discarded + rejected records."""

    kept: list[LlmUsage] = field(default_factory=list)
    records: int = 0
    discarded: Counter[str] = field(default_factory=Counter)  # other-category, no-tokens
    rejected: list[LlmRejection] = field(default_factory=list)


class _Invalid(ChargebackError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_envelope(data: bytes, where: str) -> LlmParse:
    """The usage records of one document: an Azure Monitor envelope, a JSON array of records or
    rows, or one record. Bad input becomes rejections, never an error."""
    parsed = LlmParse()
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError:
        parsed.rejected.append(LlmRejection("not-json", "not a JSON document", where))
        return parsed
    records = _records(document)
    if records is None:
        parsed.rejected.append(LlmRejection("not-envelope", 'not an Azure Monitor envelope {"records": [...]}, a '
                                                            "JSON array of records or one record", where))
        return parsed
    for number, record in enumerate(records, start=1):
        parsed.records += 1
        try:
            usage = _usage(record)
        except _Invalid as error:
            parsed.rejected.append(LlmRejection(error.reason, str(error), f"{where}, record {number}"))
            continue
        if isinstance(usage, str):
            parsed.discarded[usage] += 1
        else:
            parsed.kept.append(usage)
    return parsed


def _records(document: Any) -> list[Any] | None:
    """The records of a document, or None when it is none of the shapes read."""
    if isinstance(document, list):
        return document
    if not isinstance(document, dict):
        return None
    for key, value in document.items():
        if key.lower() == "records":
            return value if isinstance(value, list) else None
    fields = _fields(document)
    return [document] if "category" in fields or "type" in fields else None


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    """The wanted fields of a record by lowercased name: its top level, then its `properties`
    (an object, or JSON text of one), which win."""
    found = {name.lower(): value for name, value in record.items()
             if isinstance(name, str) and name.lower() in _WANTED}
    inner = next((value for name, value in record.items() if isinstance(name, str) and name.lower() == "properties"),
                 None)
    if isinstance(inner, str):
        try:
            inner = msgspec.json.decode(inner)
        except msgspec.DecodeError:
            inner = None
    if isinstance(inner, dict):
        found.update({name.lower(): value for name, value in inner.items() if isinstance(name, str)
                      and name.lower() in _WANTED and name.lower() not in ("category", "type")})
    return found


def _usage(record: Any) -> LlmUsage | str:
    """The record's usage, or why it is discarded."""
    if not isinstance(record, dict):
        raise _Invalid("not-a-record", "a record that is not a JSON object")
    props = _fields(record)
    category, table = props.get("category"), props.get("type")
    if category is None and table is None:
        raise _Invalid("no-category", "a record with neither a category nor a table type")
    if not (isinstance(category, str) and category.lower() == CATEGORY) and not (
            isinstance(table, str) and table.lower() == TABLE):
        return "other-category"
    counts = [_count(props, name) for name in ("prompttokens", "completiontokens", "totaltokens")]
    # Message-chunk entries and records without any count carry nothing to charge. All zeros is
    # treated the same way: a successful request always has prompt tokens, so a zero record must
    # not price a stream at zero; the event stays pending and is reported if nothing else comes.
    if not any(counts):
        return "no-tokens"
    prompt, completion, total = counts
    if prompt is None or completion is None:
        raise _Invalid("bad-tokens", "token counts without both promptTokens and completionTokens")
    if total is None:
        total = prompt + completion
    if total != prompt + completion:
        raise _Invalid("inconsistent-tokens", f"promptTokens {prompt} + completionTokens {completion} "
                                              f"!= totalTokens {total}")
    cached = _count(props, "promptcachedtokens")
    if cached is not None and cached > prompt:
        raise _Invalid("inconsistent-tokens", f"promptCachedTokens {cached} > promptTokens {prompt}")
    join_id = _join_id(props.get("correlationid"))
    return LlmUsage(join_id=join_id, time=_time(props.get("time") or props.get("timegenerated")),
                    prompt_tokens=prompt, completion_tokens=completion, total_tokens=total, cached_tokens=cached,
                    deployment=_text(props.get("deploymentname")), model=_text(props.get("modelname")),
                    operation=_text(props.get("operationname")), is_stream=_flag(props.get("isstreamcompletion")),
                    region=_text(props.get("region")), sequence_number=_sequence(props.get("sequencenumber")),
                    request_id=_text(props.get("requestid")))


def _count(props: dict[str, Any], name: str) -> int | None:
    """A non-negative integer (diagnostic logs may write numbers as strings), or None when absent."""
    value = props.get(name)
    if value is None or value == "":
        return None
    digits = isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,13}", value.strip())
    if digits or (isinstance(value, float) and value.is_integer()):  # "120", or a JSON number written 120.0
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("bad-tokens", f"{_COUNT_NAMES[name]} is not an integer")
    if not 0 <= value <= MAX_TOKENS:
        raise _Invalid("bad-tokens", f"{_COUNT_NAMES[name]} {value} is outside 0..10^12")
    return value


def _sequence(value: Any) -> int | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _join_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise _Invalid("missing-id", "no correlationId (the join id)")
    text = value.strip()
    try:
        return str(uuid.UUID(text))  # any case, with or without braces -> what Guid.ToString() gives
    except ValueError:
        return text


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _Invalid("bad-time", "no time")
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        raise _Invalid("bad-time", "time is not an ISO 8601 timestamp") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) and value else None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(value.lower()) if isinstance(value, str) else None
