"""Decoding: every bad input becomes one dead letter with its exact reason code; good events
around it are kept; nothing raises out of decode_batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from pipeline.domain.decode import (
    FUTURE_TOLERANCE,
    MAX_EVENT_BYTES,
    InvalidEvent,
    RawMessage,
    Rejection,
    decode_batch,
    decode_event,
)
from pipeline.domain.events import EXTRA_FIELD
from tests.factories import event, line, usage

NOW = datetime(2026, 10, 20, tzinfo=UTC)  # factory events are stamped 2026-10-15
SECRET = "Summarise our confidential merger plan"


def decode(*bodies: bytes) -> tuple[list[Any], list[Rejection]]:
    batch = decode_batch([RawMessage(b, "test.jsonl", str(n)) for n, b in enumerate(bodies, 1)], now=NOW)
    return list(batch.events), batch.rejections


def reject_one(body: bytes) -> Rejection:
    events, rejections = decode(body)
    assert events == []
    assert len(rejections) == 1
    return rejections[0]


def without(field: str) -> bytes:
    body = event()
    del body[field]
    return line(body)


def deep(depth: int) -> bytes:
    return b'{"eventId":"evt-deep","x":' + b"[" * depth + b"]" * depth + b"}"


def with_raw(field: str, raw: bytes) -> bytes:
    """A factory event whose `field` value is replaced by raw bytes (not necessarily JSON)."""
    return line(event(**{field: "@@RAW@@"})).replace(b'"@@RAW@@"', raw)


GOOD = line(event())
BAD: list[tuple[str, bytes, str]] = [
    ("not JSON", b"this is not json", "not-json"),
    ("truncated JSON", GOOD[: len(GOOD) // 2], "not-json"),
    ("non-UTF-8 garbage", b"\xff\xfe\x00{", "not-json"),
    # A Latin-1 byte inside a string value: valid JSON shape, invalid UTF-8.
    ("non-UTF-8 bytes in a string", with_raw("costCenter", b'"Caf\xe9"'), "not-json"),
    ("JSON array instead of object", msgspec.json.encode([event()]), "schema"),
    ("empty", b"", "empty"),
    ("whitespace only", b" \t\r\n ", "empty"),
    ("missing eventId", without("eventId"), "missing-event-id"),
    ("eventId empty", line(event(eventId="")), "missing-event-id"),
    ("eventId number", line(event(eventId=42)), "missing-event-id"),
    ("schemaVersion 2", line(event(schemaVersion=2)), "unsupported-schema-version"),
    ("statusCode string", line(event(statusCode="200")), "schema"),
    ("statusCode 99", line(event(statusCode=99)), "schema"),
    ("negative promptTokens", line(event(usage={**usage(0, 200), "promptTokens": -1})), "schema"),
    ("totalTokens not prompt+completion", line(event(usage={**usage(1000, 200), "totalTokens": 1201})),
     "inconsistent-usage"),
    ("cached > prompt", line(event(usage=usage(100, 20, cached=101))), "inconsistent-usage"),
    ("reasoning > completion", line(event(usage=usage(100, 20, reasoning=21))), "inconsistent-usage"),
    ("usageSource none with usage", line(event(usageSource="none")), "inconsistent-usage"),
    ("usageSource response with usage null", line(event(usage=None)), "inconsistent-usage"),
    ("usageSource estimated with usage null", line(event(usage=None, usageSource="estimated")),
     "inconsistent-usage"),
    ("usageSource bogus", line(event(usageSource="bogus")), "schema"),
    ("audio prompt > prompt", line(event(usage={**usage(100, 20), "audioPromptTokens": 101})), "inconsistent-usage"),
    ("cached + audio prompt > prompt",
     line(event(usage={**usage(100, 20, cached=60), "audioPromptTokens": 41})), "inconsistent-usage"),
    ("audio completion > completion", line(event(usage={**usage(100, 20), "audioCompletionTokens": 21})),
     "inconsistent-usage"),
    ("negative audio tokens", line(event(usage={**usage(100, 20), "audioPromptTokens": -1})), "schema"),
    ("serviceTier number", line(event(serviceTier=5, serviceTierSource="response")), "schema"),
    ("serviceTier empty", line(event(serviceTier="", serviceTierSource="response")), "schema"),
    ("serviceTierSource unknown", line(event(serviceTier="flex", serviceTierSource="header")), "schema"),
    ("spillover string", line(event(spillover="yes")), "schema"),
    ("naive timestamp", line(event(timestamp="2026-10-15T12:30:00")), "schema"),
    ("timestamp 1999", line(event(timestamp="1999-10-15T12:30:00Z")), "timestamp-out-of-range"),
    ("timestamp 30 days ahead", line(event(timestamp="2026-11-19T00:00:00Z")), "timestamp-out-of-range"),
    ("70 KB event", line(event(padding="x" * 70_000)), "oversized"),
    ("10 MB event", line(event(padding="x" * 10_000_000)), "oversized"),
    ("reserved __extra__", line(event(**{EXTRA_FIELD: '{"a":1}'})), "schema"),
    ("reserved __extra__ with unknown field", line(event(newField=1, **{EXTRA_FIELD: "{}"})), "schema"),
    ("deep nesting 100000", deep(100_000), "oversized"),
    ("deep nesting within size limit", deep(30_000), "not-json"),
    ("NaN", with_raw("durationMs", b"NaN"), "not-json"),
    # Same faults, but after a field this version does not know (the forward-compatible path).
    ("truncated JSON after an unknown field", line({"newField": 1, **event()})[:-20], "not-json"),
    ("NaN in an unknown field", with_raw("newField", b"NaN"), "not-json"),
    ("number out of range", with_raw("durationMs", b"1e400"), "schema"),
    ("number out of range in an unknown field", with_raw("newField", b"1e400"), "schema"),
]


@pytest.mark.parametrize(("body", "code"), [(b, c) for _, b, c in BAD], ids=[name for name, _, _ in BAD])
def test_bad_input_is_dead_lettered_with_its_reason(body: bytes, code: str) -> None:
    rejection = reject_one(body)
    assert (rejection.code, rejection.message.body) == (code, body)
    assert rejection.reason
    assert rejection.message.source == "test.jsonl"
    assert rejection.message.position == "1"


def test_size_limit_is_exactly_64_kib() -> None:
    body = line(event())
    at_limit = body + b" " * (MAX_EVENT_BYTES - len(body))  # JSON allows trailing whitespace
    assert len(at_limit) == MAX_EVENT_BYTES
    assert decode(at_limit)[0]
    assert reject_one(at_limit + b" ").reason.startswith(f"event is {MAX_EVENT_BYTES + 1} bytes")


def test_unknown_fields_over_4_kib_are_refused() -> None:
    assert decode(line(event(note="x" * 4000)))[0]
    assert reject_one(line(event(note="x" * 4100))).code == "oversized"


def test_future_tolerance_is_seven_days_from_now() -> None:
    assert decode(line(event(timestamp="2026-10-27T00:00:00Z")))[0]  # NOW + 7 days, inclusive
    assert reject_one(line(event(timestamp="2026-10-27T00:00:01Z"))).code == "timestamp-out-of-range"


def test_earliest_timestamp_is_2015_in_utc() -> None:
    assert decode(line(event(timestamp="2015-01-01T00:00:00Z")))[0]
    # 01:00 at +02:00 is 2014-12-31T23:00Z: too early, though the local date says 2015.
    assert reject_one(line(event(timestamp="2015-01-01T01:00:00+02:00"))).code == "timestamp-out-of-range"


@pytest.mark.parametrize("field", ["prompt", "messages", "choices", "requestBody"])
def test_content_field_is_refused_and_redacted(field: str) -> None:
    body = line(event(**{field: [{"role": "user", "content": SECRET}]}))
    rejection = reject_one(body)
    assert rejection.code == "content-field"
    assert SECRET.encode() not in rejection.message.body
    kept = json.loads(rejection.message.body)
    assert kept[field] == "[redacted]"
    assert {k: v for k, v in kept.items() if k != field} == {k: v for k, v in json.loads(body).items() if k != field}
    assert (rejection.message.source, rejection.message.position) == ("test.jsonl", "1")


CONTENT_WITH_OTHER_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("content first, then bad statusCode", {"messages": SECRET, **event(statusCode="200")}),
    ("bad statusCode, then content", event(statusCode="200", messages=SECRET)),
    ("schemaVersion 2, then content", event(schemaVersion=2, prompt=SECRET)),
    ("empty eventId, then content", event(eventId="", prompt=SECRET)),
    ("inconsistent usage and content", event(usage=None, prompt=SECRET)),
    ("oversized because of content", event(messages=[SECRET] * 2000)),
]


@pytest.mark.parametrize("body", [b for _, b in CONTENT_WITH_OTHER_FAULTS],
                         ids=[name for name, _ in CONTENT_WITH_OTHER_FAULTS])
def test_prompt_text_never_reaches_a_dead_letter(body: dict[str, Any]) -> None:
    # docs/guarantees.md: an event carrying `messages`, `prompt`... is rejected, and its dead
    # letter keeps the event with those values replaced by `[redacted]` -- whatever else is wrong.
    rejection = reject_one(line(body))
    assert SECRET.encode() not in rejection.message.body


def test_streamed_event_without_usage_is_accepted() -> None:
    events, rejections = decode(line(event(stream=True, usage=None, usageSource="stream")))
    assert rejections == []
    assert events[0].usage is None
    assert events[0].usage_source == "stream"


def test_error_without_usage_is_accepted() -> None:
    events, _ = decode(line(event(statusCode=429, usage=None, usageSource="none")))
    assert events[0].status_code == 429


MIXED_KINDS = ["not JSON", "truncated JSON", "empty", "missing eventId", "schemaVersion 2", "cached > prompt",
               "timestamp 1999", "70 KB event", "reserved __extra__", "deep nesting within size limit", "NaN"]


def test_mixed_batch_keeps_every_good_event_and_rejects_every_bad_one() -> None:
    bads = {name: body for name, body, _ in BAD if name in MIXED_KINDS}
    messages = []
    for n, name in enumerate(MIXED_KINDS):
        messages.append(RawMessage(line(event(eventId=f"good-{n}")), "mixed", f"good-{n}"))
        messages.append(RawMessage(bads[name], "mixed", name))
    messages.append(RawMessage(line(event(eventId="content", prompt=SECRET)), "mixed", "content"))
    batch = decode_batch(messages, now=NOW)
    assert sorted(e.event_id for e in batch.events) == sorted(f"good-{n}" for n in range(len(MIXED_KINDS)))
    assert sorted(r.message.position for r in batch.rejections) == sorted([*MIXED_KINDS, "content"])
    assert len(batch.events) + len(batch.rejections) == len(messages)


def test_undecodable_bytes_do_not_take_their_neighbours_down() -> None:
    # docs/guarantees.md: "A bad event never stops a batch".
    bad = with_raw("costCenter", b'"Caf\xe9"')
    events, rejections = decode(line(event(eventId="before")), bad, line(event(eventId="after")))
    assert [e.event_id for e in events] == ["before", "after"]
    assert [r.message.position for r in rejections] == ["2"]


def test_rejection_keeps_source_and_position() -> None:
    batch = decode_batch([RawMessage(b"", "eventhub/partition-3", "seq-918273")], now=NOW)
    [rejection] = batch.rejections
    assert rejection.message == RawMessage(b"", "eventhub/partition-3", "seq-918273")
    assert rejection.code == "empty"


def test_offset_timestamp_is_stored_in_utc() -> None:
    [decoded], _ = decode(line(event(timestamp="2026-10-15T07:30:00-05:00")))
    assert decoded.timestamp == datetime(2026, 10, 15, 12, 30, tzinfo=UTC)
    assert decoded.timestamp.tzinfo == UTC


def outcomes_match(bodies: list[bytes]) -> None:
    messages = [RawMessage(b, "prop", str(n)) for n, b in enumerate(bodies)]
    batch = decode_batch(messages, now=NOW)
    assert len(batch.events) + len(batch.rejections) == len(messages)
    positions = [r.message.position for r in batch.rejections]
    assert len(set(positions)) == len(positions)
    assert set(positions) <= {m.position for m in messages}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=100), max_size=3))
def test_arbitrary_bytes_never_raise(bodies: list[bytes]) -> None:
    outcomes_match(bodies)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=3))
def test_arbitrary_json_never_raises(values: list[Any]) -> None:
    outcomes_match([msgspec.json.encode(v) for v in values])


# No shrinking: a failure is reported at once (the corpus above pins each known fault by name).
@settings(max_examples=200, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(st.data())
def test_damaged_events_never_raise(data: st.DataObject) -> None:
    # A valid-looking event with some fields changed or added, in any order, then damaged:
    # truncated, or with a few arbitrary bytes spliced in.
    changes = data.draw(st.dictionaries(st.sampled_from(sorted(event())) | st.text(max_size=6), json_values,
                                        max_size=3))
    body = event(**changes)
    keys = data.draw(st.permutations(sorted(body)))
    whole = line({k: body[k] for k in keys})
    cut = data.draw(st.integers(min_value=0, max_value=len(whole)))
    splice = data.draw(st.binary(min_size=1, max_size=3))
    outcomes_match([whole, whole[:cut], whole[:cut] + splice + whole[cut:]])


# Event fields drawn near the edges of the checks that decode_batch makes inline for speed.
edge_changes = st.fixed_dictionaries({}, optional={
    "timestamp": st.sampled_from(["2014-12-31T23:59:59Z", "2015-01-01T00:00:00Z", "2015-01-01T00:30:00+01:00",
                                  "2026-10-27T00:00:00Z", "2026-10-27T00:00:01Z", "2026-10-26T20:00:01-04:00",
                                  "2026-10-15T12:30:00-05:00", "2026-10-15T12:30:00+00:00"]),
    "usage": st.none() | st.builds(usage, st.integers(0, 3), st.integers(0, 3), st.integers(0, 4), st.integers(0, 4))
    | st.fixed_dictionaries({"promptTokens": st.integers(0, 3), "completionTokens": st.integers(0, 3),
                             "totalTokens": st.integers(0, 6)}),
    "usageSource": st.sampled_from(["response", "stream", "estimated", "none"]),
    "tags": st.none() | st.dictionaries(st.sampled_from(["env", "prompt", "content", "team"]), st.just("x"),
                                        max_size=2),
    EXTRA_FIELD: st.none() | st.just("{}"),
    "__origin__": st.none() | st.just({"source": "s", "position": "p"}),
    "extraField": json_values,
})


@settings(max_examples=300, deadline=None)
@given(edge_changes, st.booleans())
@example({"usage": usage(1, 2, cached=4)}, False)
@example({"usage": usage(1, 2, reasoning=3)}, False)
@example({"usage": {"promptTokens": 1, "completionTokens": 2, "totalTokens": 4}}, False)
@example({"usageSource": "none"}, False)
@example({"usage": None, "usageSource": "estimated"}, False)
@example({"timestamp": "2026-10-15T12:30:00-05:00"}, False)
@example({"timestamp": "2014-12-31T23:59:59Z"}, False)
@example({"tags": {"prompt": "x"}}, False)
@example({EXTRA_FIELD: "{}"}, False)
def test_the_batch_loop_decides_as_decode_event(changes: dict[str, Any], check: bool) -> None:
    # decode_batch accepts the common event inline and hands every other one to decode_event:
    # it must accept exactly what decode_event accepts, as the same event, and reject the rest
    # with decode_event's code and reason.
    body = line(event(**changes))
    batch = decode_batch([RawMessage(body, "prop", "1")], now=NOW, check_duplicate_keys=check)
    try:
        expected = decode_event(body, NOW + FUTURE_TOLERANCE, check)
    except InvalidEvent as bad:
        assert batch.events == []
        assert [(r.code, r.reason) for r in batch.rejections] == [(bad.code, bad.reason)]
    else:
        assert batch.rejections == []
        assert [msgspec.structs.replace(e, origin=None) for e in batch.events] == [expected]
        assert batch.events[0].timestamp.tzinfo is UTC  # equal datetimes may differ in offset


@pytest.mark.parametrize(("body", "code"), [(b, c) for _, b, c in BAD], ids=[name for name, _, _ in BAD])
def test_the_unchecked_path_rejects_bad_input_alike(body: bytes, code: str) -> None:
    # check_duplicate_keys=False (the Event Hub trigger) skips that check only.
    batch = decode_batch([RawMessage(body, "eventhub", "1")], now=NOW, check_duplicate_keys=False)
    assert (batch.events, [r.code for r in batch.rejections]) == ([], [code])


ESCAPED_EXTRA = line(event())[:-1] + b',"\\u005f_extra__":"{\\"a\\":1}"}'
PLAIN = event(eventId="evt-null-extra")
NULL_EXTRA = line({**PLAIN, EXTRA_FIELD: None})


@pytest.mark.parametrize("check", [True, False], ids=["checked", "unchecked"])
def test_a_reserved_field_set_from_the_wire_is_refused_however_spelled(check: bool) -> None:
    batch = decode_batch([RawMessage(ESCAPED_EXTRA, "t", "1")], now=NOW, check_duplicate_keys=check)
    assert [(r.code, r.reason) for r in batch.rejections] == [("schema", f"field `{EXTRA_FIELD}` is reserved")]


def test_a_reserved_name_with_a_null_value() -> None:
    # Refused where the keys are checked; without the check it decodes to the very event sent
    # without it (null is what the decoder leaves there), so nothing can be smuggled in.
    assert reject_one(NULL_EXTRA).code == "schema"
    [plain] = decode_batch([RawMessage(line(PLAIN), "t", "1")], now=NOW, check_duplicate_keys=False).events
    [nulled] = decode_batch([RawMessage(NULL_EXTRA, "t", "1")], now=NOW, check_duplicate_keys=False).events
    assert nulled == plain and nulled.extra is None


@pytest.mark.parametrize("check", [True, False], ids=["checked", "unchecked"])
def test_both_paths_set_the_origin_and_store_utc(check: bool) -> None:
    message = RawMessage(line(event(timestamp="2026-10-15T07:30:00-05:00")), "eventhub:ns/hub", "partition 1, "
                         "sequence 9", "1", 9, "4096", datetime(2026, 10, 15, 12, 31, tzinfo=UTC))
    [decoded] = decode_batch([message], now=NOW, check_duplicate_keys=check).events
    assert decoded.origin == message.origin()
    assert decoded.timestamp == datetime(2026, 10, 15, 12, 30, tzinfo=UTC) and decoded.timestamp.tzinfo is UTC
