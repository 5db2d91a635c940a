"""Build wire-format usage events for tests: a valid v1 event, changed only where a test says;
and write a report into a folder as `chargeback report --out` does."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fastavro
import msgspec

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.stages.report.model import DEFAULT_FORMATS, Report
from pipeline.stages.report.publish import publish_report

_ids = itertools.count(1)


def event(**changes: Any) -> dict[str, Any]:
    """A valid apim-usage v1 event as a dict (camelCase); keyword arguments replace fields."""
    body: dict[str, Any] = {
        "schemaVersion": 1,
        "eventId": f"evt-{next(_ids):08d}",
        "timestamp": "2026-10-15T12:30:00Z",
        "subscriptionId": "sub-a",
        "productId": "product-a",
        "apiId": "azure-openai",
        "operationId": "chat-completions",
        "callerAppId": "app-a",
        "callerTenantId": "tenant-a",
        "callerObjectId": None,
        "costCenter": None,
        "deployment": "chat-gpt4o",
        "model": "gpt-4o-2024-11-20",
        "region": "West Europe",
        "stream": False,
        "statusCode": 200,
        "durationMs": 420,
        "usage": {"promptTokens": 1000, "completionTokens": 200, "totalTokens": 1200,
                  "cachedTokens": 0, "reasoningTokens": 0},
        "usageSource": "response",
        "tags": None,
    }
    body.update(changes)
    return body


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, int]:
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion,
            "cachedTokens": cached, "reasoningTokens": reasoning}


def line(body: dict[str, Any]) -> bytes:
    return msgspec.json.encode(body)


def jsonl(bodies: list[dict[str, Any]]) -> bytes:
    return b"".join(line(body) + b"\n" for body in bodies)


# Exactly what Event Hubs Capture writes (Microsoft.ServiceBus.Messaging.EventData).
CAPTURE_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "EventData", "namespace": "Microsoft.ServiceBus.Messaging", "fields": [
        {"name": "SequenceNumber", "type": "long"}, {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {"name": "SystemProperties", "type": {"type": "map", "values": ["long", "double", "string", "bytes"]}},
        {"name": "Properties", "type": {"type": "map", "values": ["long", "double", "string", "bytes", "null"]}},
        {"name": "Body", "type": ["null", "bytes"]}]})


def write_report(report: Report, folder: Path, formats: Iterable[str] = DEFAULT_FORMATS) -> list[Path]:
    """The report's files written into `folder`, as `chargeback report --out` writes them."""
    return [folder / key for key in publish_report(report, LocalObjectStore(folder), formats).keys]
