"""Decode and validate raw usage events. A bad event never stops a batch: it becomes a Rejection.

The fast path is one msgspec typed decode per event. Events carrying fields this version does
not know take a slower path that keeps those fields as JSON text (forward compatibility).

An object that names a key twice (`"usage"` twice, at any depth) is rejected (`duplicate-key`):
JSON parsers disagree on which copy wins (msgspec keeps the last, others the first), and such an
event is what a JSON built by string concatenation with an injected value looks like. The common
event is proven free of repeats by a second decode of its raw values (pipeline.domain.key_presence);
any other is checked on its untyped document, by the colons of the raw bytes against those of the
document re-encoded (equal unless a key was repeated; exact when the body has no backslash, else
Python's json names the key). It costs a second decode of every event (2-3x the typed one), so it is on by default
and only a source whose producer cannot repeat a key may turn it off (`check_duplicate_keys=False`):
the Event Hub trigger, whose events the APIM policy builds as a JObject and which only APIM's
identity may send to (docs/guarantees.md). Files, stdin and every replay keep it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from pipeline.domain.errors import ChargebackError
from pipeline.domain.events import (
    EXTRA_FIELD,
    ORIGIN_FIELD,
    RESERVED_FIELDS,
    USAGE_FIELDS,
    WIRE_FIELDS,
    Origin,
    UsageEvent,
)
from pipeline.domain.key_presence import no_key_repeated

MAX_EVENT_BYTES = 64 * 1024
MAX_EXTRA_BYTES = 4 * 1024
EARLIEST_TIMESTAMP = datetime(2015, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=7)
# Field names that would carry prompt or completion text. An event that has any of them, at any
# depth, is rejected: such text must never reach the ledger. Its dead letter keeps the event
# with the values of these fields blanked (or no body at all, when it cannot be parsed).
CONTENT_FIELDS = frozenset(
    {"prompt", "messages", "input", "choices", "completion", "content", "output", "requestBody",
     "responseBody", "requestMessages", "responseMessages"}
)
_REDACTED = "[redacted]"


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """One undecoded event and where it came from (file and line, or partition and sequence).
    A struct, not a dataclass: one is made per line or received event, and a frozen dataclass
    costs five times as much to make (2.9 against 0.6 µs)."""

    body: bytes
    source: str
    position: str
    partition: str | None = None
    sequence_number: int | None = None
    offset: str | None = None
    enqueued_time: datetime | None = None

    def origin(self) -> Origin:
        return Origin(self.source, self.position, self.partition, self.sequence_number, self.offset,
                      self.enqueued_time)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A raw event that could not be accepted, with a reason code and a human-readable reason."""

    message: RawMessage
    code: str
    reason: str


@dataclass(slots=True)
class DecodedBatch:
    events: list[UsageEvent] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class InvalidEvent(ChargebackError):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


_decoder = msgspec.json.Decoder(UsageEvent)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_KNOWN = frozenset(WIRE_FIELDS)
_KNOWN_USAGE = frozenset(USAGE_FIELDS)
_CONTENT_MARKERS = tuple(f'"{name}"'.encode() for name in sorted(CONTENT_FIELDS))
_UNPARSEABLE_CONTENT = b"[redacted: not parseable JSON, and it names a prompt/completion field]"
_set_field = msgspec.structs.force_setattr


def decode_batch(messages: Iterable[RawMessage], now: datetime | None = None, *,
                 check_duplicate_keys: bool = True) -> DecodedBatch:
    """Decode every message; each one ends up in exactly one of events or rejections.

    `check_duplicate_keys=False` is only for messages whose producer cannot repeat a key (the
    APIM policy, through the Event Hub): see the module docstring."""
    latest = (now or datetime.now(UTC)) + FUTURE_TOLERANCE
    batch = DecodedBatch()
    events, rejections = batch.events, batch.rejections
    # The loop below is decode_event for the common event, inlined with its names bound locally:
    # per event, a Python call or a global lookup costs a visible share of the typed decode. It
    # only ever accepts: an event it does not plainly accept (an error, a field this version does
    # not know, a reserved field, a check failing, a timestamp not in UTC) goes to decode_event,
    # which decides and says why. So the rules and reasons live in one place, decode_event.
    decode, set_field, content, earliest = _decoder.decode, _set_field, CONTENT_FIELDS, EARLIEST_TIMESTAMP
    for message in messages:
        body = message.body
        try:
            event: UsageEvent | None = decode(body) if len(body) <= MAX_EVENT_BYTES else None
        except _DECODE_ERRORS:
            event = None
        if event is not None:
            timestamp = event.timestamp
            usage = event.usage
            tags = event.tags
            source = event.usage_source
            if not (event.extra is None and event.origin is None and timestamp.tzinfo is UTC
                    and earliest <= timestamp <= latest and (not tags or content.isdisjoint(tags))
                    and (source not in ("response", "estimated") if usage is None else
                         source != "none" and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
                         and usage.cached_tokens + usage.audio_prompt_tokens <= usage.prompt_tokens
                         and usage.reasoning_tokens <= usage.completion_tokens
                         and usage.audio_completion_tokens <= usage.completion_tokens)):
                event = None
        try:
            if event is None:
                event = decode_event(body, latest, check_duplicate_keys)
            elif check_duplicate_keys:
                _check_keys(body)
        except InvalidEvent as bad:
            kept = msgspec.structs.replace(message, body=_without_content(body))
            rejections.append(Rejection(kept, bad.code, bad.reason))
            continue
        # message.origin(), inlined, and set in place: the event was decoded just now and nothing
        # else holds it (structs.replace would copy it; per event, both cost as much as a tenth of
        # the decode).
        set_field(event, "origin", Origin(message.source, message.position, message.partition,
                                          message.sequence_number, message.offset, message.enqueued_time))
        events.append(event)
    return batch


def decode_event(body: bytes, latest: datetime, check_duplicate_keys: bool = True) -> UsageEvent:
    """Decode one event or raise InvalidEvent with a reason code."""
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEvent("oversized", f"event is {len(body)} bytes, the limit is {MAX_EVENT_BYTES}")
    try:
        event: UsageEvent | None = _decoder.decode(body)
    except _DECODE_ERRORS as error:
        if not str(error).startswith("Object contains unknown field"):
            raise _invalid(body, error) from None
        event = None
    if event is None:  # fields this version does not know: the slow path keeps them
        event = _decode_with_extra_fields(body, check_duplicate_keys)
    elif event.extra is not None or event.origin is not None:
        # The reserved names are fields of UsageEvent, so the typed decode takes them: a value
        # set from the wire is refused here, O(1) however the name is spelled (only the decoder
        # sets them). A reserved name with a null value decodes to the same event as without
        # it; it is refused on the checked path, which has the untyped document at hand anyway
        # (a byte scan for it alone would cost half a typed decode).
        raise InvalidEvent("schema", f"field `{EXTRA_FIELD if event.extra is not None else ORIGIN_FIELD}` is reserved")
    elif check_duplicate_keys:
        _check_keys(body)
    if event.tags and not CONTENT_FIELDS.isdisjoint(event.tags):  # a tag is a field too
        raise InvalidEvent("content-field", f"tag(s) {', '.join(sorted(CONTENT_FIELDS & event.tags.keys()))} "
                           "named like prompt/completion fields; such text is never stored")
    _check_consistency(event, latest)
    if event.timestamp.tzinfo is not UTC:  # msgspec decodes "Z" and "+00:00" to UTC itself
        _set_field(event, "timestamp", event.timestamp.astimezone(UTC))
    return event


# What decoding raises; ValidationError is a DecodeError. RecursionError: nesting too deep.
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _invalid(body: bytes, error: Exception) -> InvalidEvent:
    """The rejection for an error of msgspec (or of the Python it runs) on this body."""
    if isinstance(error, msgspec.ValidationError):
        return _schema_error(str(error))
    if isinstance(error, msgspec.DecodeError):
        if not body.strip():  # tested only here: an empty body never decodes
            return InvalidEvent("empty", "empty message")
        return InvalidEvent("not-json", f"not valid JSON: {error}")
    if isinstance(error, UnicodeDecodeError):
        return InvalidEvent("not-json", "not valid UTF-8")
    return InvalidEvent("not-json", "JSON nested too deeply")


def _check_keys(body: bytes) -> None:
    """No reserved name, even with a null value, and no key twice in one object: proven cheaply
    for the common event (pipeline.domain.key_presence), else from the untyped document."""
    if no_key_repeated(body):
        return
    try:
        document = _any_decoder.decode(body)  # an object: the typed decode of a struct succeeded
    except _DECODE_ERRORS as error:
        raise _invalid(body, error) from None
    reserved = [name for name in RESERVED_FIELDS if name in document]
    if reserved:
        raise InvalidEvent("schema", f"field `{reserved[0]}` is reserved")
    _check_unique_keys(body, document)


def _check_unique_keys(body: bytes, document: object) -> None:
    """Raise `duplicate-key` when an object of the body names a key twice. Without a backslash in
    the body, every colon is either after a key or inside a string, and strings re-encode as they
    were: the parsed document re-encoded has fewer colons exactly when a key was repeated (the
    dropped copy took its colon along). With escapes, Python's json looks at every pair."""
    if b"\\" not in body and body.count(b":") == _encoder.encode(document).count(b":"):
        return
    repeated: list[str] = []

    def pairs(items: Sequence[tuple[str, object]]) -> None:
        seen: set[str] = set()
        for name, _ in items:
            if name in seen:
                repeated.append(name)
            seen.add(name)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except RecursionError:
        raise InvalidEvent("not-json", "JSON nested too deeply to check its keys") from None
    except ValueError as error:  # not reached for a body msgspec parsed, but never let it through
        raise InvalidEvent("not-json", f"not valid JSON: {error}") from None
    if repeated or b"\\" not in body:
        name = repeated[0][:64] if repeated else "?"  # a key is sender's text: keep the reason short
        raise InvalidEvent("duplicate-key", f"key `{name}` appears more than once in one object; "
                           "which copy counts is ambiguous, so the event is refused")


def _document(body: bytes) -> dict[str, object]:
    document = msgspec.json.decode(body)
    if not isinstance(document, dict):
        raise InvalidEvent("schema", "event is not a JSON object")
    return document


def _schema_error(text: str) -> InvalidEvent:
    if "missing required field `eventId`" in text or "at `$.eventId`" in text:
        return InvalidEvent("missing-event-id", f"eventId missing or invalid: {text}")
    if "at `$.schemaVersion`" in text or "`schemaVersion`" in text:
        return InvalidEvent("unsupported-schema-version", f"schemaVersion must be 1: {text}")
    return InvalidEvent("schema", text)


def _decode_with_extra_fields(body: bytes, check_duplicate_keys: bool) -> UsageEvent:
    try:
        return _with_extra_fields(body, check_duplicate_keys)
    except _DECODE_ERRORS as error:
        raise _invalid(body, error) from None


def _with_extra_fields(body: bytes, check_duplicate_keys: bool) -> UsageEvent:
    document = _document(body)
    known = {k: v for k, v in document.items() if k in _KNOWN}
    extra = {k: v for k, v in document.items() if k not in _KNOWN}
    usage = known.get("usage")
    if isinstance(usage, dict) and not usage.keys() <= _KNOWN_USAGE:
        known["usage"] = {k: v for k, v in usage.items() if k in _KNOWN_USAGE}
        extra["usage"] = {k: v for k, v in usage.items() if k not in _KNOWN_USAGE}
    content = sorted(_content_fields(extra))
    if content:
        raise InvalidEvent("content-field", f"event carries prompt/completion field(s) {', '.join(content)}; "
                           "such text is never stored")
    reserved = [name for name in RESERVED_FIELDS if name in extra]
    if reserved:
        raise InvalidEvent("schema", f"field `{reserved[0]}` is reserved")
    if check_duplicate_keys:
        _check_unique_keys(body, document)
    extra_json = _encoder.encode(extra)
    if len(extra_json) > MAX_EXTRA_BYTES:
        raise InvalidEvent("oversized", f"unknown fields take {len(extra_json)} bytes, the limit is "
                           f"{MAX_EXTRA_BYTES}")
    event = _decoder.decode(_encoder.encode(known))
    return msgspec.structs.replace(event, extra=extra_json.decode())


def _content_fields(value: object) -> set[str]:
    """Names of content fields anywhere inside value."""
    if isinstance(value, dict):
        found = set(CONTENT_FIELDS & value.keys())
        for item in value.values():
            found |= _content_fields(item)
        return found
    if isinstance(value, list):
        return set().union(*(_content_fields(item) for item in value))
    return set()


def _redact(value: object) -> object:
    if isinstance(value, dict):
        return {k: (_REDACTED if k in CONTENT_FIELDS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


def _without_content(body: bytes) -> bytes:
    """The body to keep in a dead letter: as received, unless it may carry prompt or completion
    text. Then content fields are blanked, or, when the body cannot be parsed, it is replaced."""
    if not any(marker in body for marker in _CONTENT_MARKERS):
        return body
    try:
        return _encoder.encode(_redact(msgspec.json.decode(body)))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _UNPARSEABLE_CONTENT


def _check_consistency(event: UsageEvent, latest: datetime) -> None:
    if not EARLIEST_TIMESTAMP <= event.timestamp <= latest:
        raise InvalidEvent("timestamp-out-of-range", f"timestamp {event.timestamp.isoformat()} is before "
                           f"{EARLIEST_TIMESTAMP.date()} or more than {FUTURE_TOLERANCE.days} days ahead")
    usage = event.usage
    if usage is None:
        if event.usage_source in ("response", "estimated"):
            raise InvalidEvent("inconsistent-usage", f"usageSource is {event.usage_source!r} but usage is null")
        return
    if event.usage_source == "none":
        raise InvalidEvent("inconsistent-usage", "usageSource is 'none' but usage is present")
    if usage.total_tokens != usage.prompt_tokens + usage.completion_tokens:
        raise InvalidEvent("inconsistent-usage", f"totalTokens {usage.total_tokens} != promptTokens "
                           f"{usage.prompt_tokens} + completionTokens {usage.completion_tokens}")
    if usage.cached_tokens > usage.prompt_tokens:
        raise InvalidEvent("inconsistent-usage", f"cachedTokens {usage.cached_tokens} > promptTokens "
                           f"{usage.prompt_tokens}")
    if usage.reasoning_tokens > usage.completion_tokens:
        raise InvalidEvent("inconsistent-usage", f"reasoningTokens {usage.reasoning_tokens} > "
                           f"completionTokens {usage.completion_tokens}")
    if usage.audio_prompt_tokens > usage.prompt_tokens:
        raise InvalidEvent("inconsistent-usage", f"audioPromptTokens {usage.audio_prompt_tokens} > "
                           f"promptTokens {usage.prompt_tokens}")
    if usage.audio_completion_tokens > usage.completion_tokens:
        raise InvalidEvent("inconsistent-usage", f"audioCompletionTokens {usage.audio_completion_tokens} > "
                           f"completionTokens {usage.completion_tokens}")
    if usage.cached_tokens + usage.audio_prompt_tokens > usage.prompt_tokens:
        # Cached tokens are priced as cached text: cached audio has no count of its own here.
        raise InvalidEvent("inconsistent-usage", f"cachedTokens {usage.cached_tokens} + audioPromptTokens "
                           f"{usage.audio_prompt_tokens} > promptTokens {usage.prompt_tokens}: cached and audio "
                           "prompt tokens are parts of the prompt that do not overlap")
