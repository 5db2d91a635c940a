"""The published JSON Schema and the decoder are one contract: they must agree field by field,
on what is required, and on which events are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from pipeline.domain.decode import DecodedBatch, RawMessage, decode_batch
from pipeline.domain.events import (
    EXTRA_FIELD,
    ORIGIN_FIELD,
    RESERVED_FIELDS,
    USAGE_FIELDS,
    WIRE_FIELDS,
    Usage,
    UsageEvent,
)
from tests.factories import event, line, usage

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "usage-event.v1.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
NOW = datetime(2026, 10, 20, tzinfo=UTC)


def decode_one(body: dict[str, Any]) -> DecodedBatch:
    return decode_batch([RawMessage(line(body), "contract", "1")], now=NOW)


def schema_accepts(body: dict[str, Any]) -> bool:
    return not list(VALIDATOR.iter_errors(body))


def full_event() -> dict[str, Any]:
    """Every wire field present, every nullable one non-null, a non-UTC offset."""
    return event(
        eventId="evt-full",
        timestamp="2026-10-15T14:30:00.250000+02:00",
        productId="product-b",
        callerAppId="app-b",
        callerTenantId="tenant-b",
        callerObjectId="object-b",
        costCenter="CC-42",
        model="o3-2025-04-16",
        region="Sweden Central",
        stream=True,
        statusCode=201,
        durationMs=1234,
        usage={**usage(1500, 700, cached=300, reasoning=450), "audioPromptTokens": 120, "audioCompletionTokens": 80},
        usageSource="stream",
        tags={"team": "search", "env": "prod"},
        serviceTier="priority",
        serviceTierSource="response",
        spillover=True,
    )


def struct_required(struct: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(struct) if f.required}


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_properties_are_the_wire_fields() -> None:
    assert set(SCHEMA["properties"]) == set(WIRE_FIELDS)
    assert len(WIRE_FIELDS) == len(set(WIRE_FIELDS))
    assert not set(RESERVED_FIELDS) & set(WIRE_FIELDS)


def test_schema_usage_properties_are_the_usage_fields() -> None:
    usage_object = next(s for s in SCHEMA["properties"]["usage"]["oneOf"] if s.get("type") == "object")
    assert set(usage_object["properties"]) == set(USAGE_FIELDS)


def test_required_lists_agree_with_the_structs() -> None:
    usage_object = next(s for s in SCHEMA["properties"]["usage"]["oneOf"] if s.get("type") == "object")
    assert set(SCHEMA["required"]) == struct_required(UsageEvent)
    assert set(usage_object["required"]) == struct_required(Usage)


def schema_nullable(spec: dict[str, Any]) -> bool:
    types = spec.get("type", [])
    return "null" in types or any(s.get("type") == "null" for s in spec.get("oneOf", []))


def test_nullable_fields_are_exactly_the_optional_ones() -> None:
    # "A nullable property may also be omitted: absent means null."
    nullable = {name for name, spec in SCHEMA["properties"].items() if schema_nullable(spec)}
    defaults_none = {f.encode_name for f in msgspec.structs.fields(UsageEvent)
                     if not f.required and f.default is None and f.encode_name not in RESERVED_FIELDS}
    assert nullable == defaults_none
    assert nullable == set(WIRE_FIELDS) - set(SCHEMA["required"])


def test_each_nullable_field_may_be_omitted() -> None:
    full = full_event()
    full["usageSource"] = "stream"
    for name in set(WIRE_FIELDS) - set(SCHEMA["required"]):
        body = {k: v for k, v in full.items() if k != name}
        assert schema_accepts(body), name
        [decoded] = decode_one(body).events
        assert msgspec.to_builtins(decoded)[name] is None, name


def test_every_field_round_trips_through_decode() -> None:
    body = full_event()
    assert set(body) == set(WIRE_FIELDS)
    assert set(body["usage"]) == set(USAGE_FIELDS)
    assert all(body[name] is not None for name in WIRE_FIELDS)
    VALIDATOR.validate(body)
    batch = decode_one(body)
    assert batch.rejections == []
    [decoded] = batch.events
    # The same instant, expressed in UTC: 14:30:00.25 at +02:00 is 12:30:00.25Z.
    assert decoded.timestamp == datetime(2026, 10, 15, 12, 30, 0, 250000, tzinfo=UTC)
    assert decoded.timestamp.tzinfo == UTC
    assert decoded.extra is None

    builtins = msgspec.to_builtins(decoded)
    assert builtins.pop(EXTRA_FIELD) is None
    assert builtins.pop(ORIGIN_FIELD) == {"source": "contract", "position": "1", "partition": None,
                                          "sequence_number": None, "offset": None, "enqueued_time": None}
    assert datetime.fromisoformat(builtins.pop("timestamp")) == datetime.fromisoformat(body.pop("timestamp"))
    assert builtins == body

    encoded = json.loads(msgspec.json.encode(decoded))
    assert datetime.fromisoformat(encoded.pop("timestamp")) == decoded.timestamp
    encoded.pop(EXTRA_FIELD)
    encoded.pop(ORIGIN_FIELD)
    assert encoded == body


def test_snake_case_attributes_hold_the_wire_values() -> None:
    [decoded] = decode_one(full_event()).events
    assert decoded.event_id == "evt-full"
    assert decoded.caller_object_id == "object-b"
    assert decoded.cost_center == "CC-42"
    assert decoded.usage == Usage(1500, 700, 2200, cached_tokens=300, reasoning_tokens=450, audio_prompt_tokens=120,
                                  audio_completion_tokens=80)
    assert (decoded.service_tier, decoded.service_tier_source, decoded.spillover) == ("priority", "response", True)
    assert decoded.tags == {"team": "search", "env": "prod"}


def test_unknown_fields_are_accepted_and_kept_as_json() -> None:
    body = event(newField={"a": 1})
    body["usage"]["audioTokens"] = 5
    assert schema_accepts(body)
    batch = decode_one(body)
    assert batch.rejections == []
    [decoded] = batch.events
    assert decoded.extra is not None
    assert json.loads(decoded.extra) == {"newField": {"a": 1}, "usage": {"audioTokens": 5}}
    # The known usage fields survive the slow path untouched.
    assert decoded.usage == Usage(1000, 200, 1200)


def without(field: str) -> dict[str, Any]:
    body = event()
    del body[field]
    return body


def with_usage(**changes: Any) -> dict[str, Any]:
    return event(usage={**usage(1000, 200), **changes})


def without_usage_streamed() -> dict[str, Any]:
    body = event(stream=True, usageSource="stream")
    del body["usage"]
    return body


# Bad events whose fault JSON Schema can state: both the schema and the decoder must refuse them.
BAD_FOR_BOTH: list[tuple[str, Any]] = [
    ("missing eventId", without("eventId")),
    ("missing deployment", without("deployment")),
    ("missing usageSource", without("usageSource")),
    ("missing timestamp", without("timestamp")),
    ("eventId empty", event(eventId="")),
    ("eventId number", event(eventId=12345)),
    ("eventId too long", event(eventId="e" * 257)),
    ("schemaVersion 2", event(schemaVersion=2)),
    ("schemaVersion string", event(schemaVersion="1")),
    ("statusCode string", event(statusCode="200")),
    ("statusCode 99", event(statusCode=99)),
    ("statusCode 600", event(statusCode=600)),
    ("durationMs negative", event(durationMs=-1)),
    ("stream string", event(stream="true")),
    ("stream number", event(stream=1)),
    ("region number", event(region=5)),
    ("usage list", event(usage=[1000, 200, 1200])),
    ("promptTokens negative", with_usage(promptTokens=-1, totalTokens=199)),
    ("completionTokens string", with_usage(completionTokens="200")),
    ("cachedTokens negative", with_usage(cachedTokens=-5)),
    ("tokens above 10**12", with_usage(promptTokens=10**12 + 1, totalTokens=10**12 + 201)),
    ("usage missing totalTokens", event(usage={"promptTokens": 1, "completionTokens": 1})),
    ("usageSource bogus", event(usageSource="bogus")),
    ("tags value number", event(tags={"team": 1})),
    ("tags empty key", event(tags={"": "x"})),
    ("33 tags", event(tags={f"k{i}": "v" for i in range(33)})),
    ("naive timestamp", event(timestamp="2026-10-15T12:30:00")),
    ("timestamp number", event(timestamp=1760531400)),
    ("messages field", event(messages=[{"role": "user", "content": "hello"}])),
    ("prompt field", event(prompt="hello")),
    ("choices field", event(choices=[])),
    ("reserved __extra__ string", event(**{EXTRA_FIELD: "{}"})),
    # events.py: "a wire event using the name is rejected" -- null is a use of the name too.
    ("reserved __extra__ null", event(**{EXTRA_FIELD: None})),
    ("reserved __origin__", event(**{ORIGIN_FIELD: {"source": "forged", "position": "line 1"}})),
    ("not an object", [event()]),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_FOR_BOTH], ids=[name for name, _ in BAD_FOR_BOTH])
def test_schema_and_decoder_both_reject(body: Any) -> None:
    schema_says = schema_accepts(body)
    batch = decode_batch([RawMessage(line(body), "contract", "1")], now=NOW)
    decoder_says = not batch.rejections
    assert (schema_says, decoder_says) == (False, False)


# Events both must accept: the schema may not be stricter than the decoder either.
GOOD_FOR_BOTH: list[tuple[str, dict[str, Any]]] = [
    ("factory event", event()),
    # A nullable property may be omitted: absent means null.
    ("nullable fields omitted", {k: v for k, v in event(usageSource="none").items() if k in SCHEMA["required"]}),
    ("streamed, usage omitted", without_usage_streamed()),
    ("streamed, usage null", event(stream=True, usage=None, usageSource="stream")),
    ("usage without cached/reasoning", event(usage={"promptTokens": 5, "completionTokens": 0, "totalTokens": 5})),
    ("region null", event(region=None)),
    ("utc offset +00:00", event(timestamp="2026-10-15T12:30:00+00:00")),
    ("negative offset", event(timestamp="2026-10-15T07:30:00-05:00")),
    # ISO 8601 basic-format offsets: the decoder accepts them, so the schema must too.
    ("offset without colon", event(timestamp="2026-10-15T12:30:00+0200")),
    ("error without usage", event(statusCode=429, usage=None, usageSource="none")),
    ("32 tags", event(tags={f"k{i}": "v" for i in range(32)})),
    ("unknown top-level field", event(gatewayVersion="2.1")),
]


@pytest.mark.parametrize("body", [b for _, b in GOOD_FOR_BOTH], ids=[name for name, _ in GOOD_FOR_BOTH])
def test_schema_and_decoder_both_accept(body: dict[str, Any]) -> None:
    VALIDATOR.validate(body)
    batch = decode_one(body)
    assert [r.reason for r in batch.rejections] == []
    assert len(batch.events) == 1
