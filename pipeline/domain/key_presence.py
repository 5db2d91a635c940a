"""A cheap proof that an event names no key twice, for the duplicate-key check of
pipeline.domain.decode (files, stdin and replays check every event).

The event is decoded a second time into `Presence`: a struct with the wire names of UsageEvent,
each field the raw JSON of its value (msgspec.Raw: the bytes, unparsed) or UNSET when the key is
absent; `usage` the same for Usage's names, `tags` a map of raw values. A key named twice in an
object sets its field twice, so one copy is dropped. Encoded again, a Presence holds each key
present once, each value byte for byte, and no whitespace; it can only be shorter than the body
(whitespace, a key spelled with escapes, a dropped copy), never longer:

- the same length as the body: nothing was dropped, so no key was named twice;
- else, when the body has no backslash, every colon is after a key or inside a string, and the
  strings are the same bytes in both: the same number of colons means no copy was dropped.

When neither holds (an escape and whitespace, a reserved name, a field this version does not
know, a repeated key), the decoder's full check decides and says why. Against the untyped
decode of the whole document and its colons, which every event paid before: 3.3-4.8 against
6.3-7.3 µs an event (`decode_batch` over the bench's month, five alternating pairs;
docs/benchmarks.md, seventeenth pass).
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

from pipeline.domain.events import Usage, UsageEvent


def _presence(struct: type[msgspec.Struct], name: str, nested: dict[str, Any]) -> type[msgspec.Struct]:
    """`struct`'s wire names, each field its value's raw JSON (or `nested`'s type), UNSET when absent."""
    fields = msgspec.structs.fields(struct)
    return msgspec.defstruct(
        name, [(f.name, nested.get(f.name, Raw) | UnsetType, UNSET) for f in fields],
        rename={f.name: f.encode_name for f in fields}, forbid_unknown_fields=True, gc=False)


UsagePresence = _presence(Usage, "UsagePresence", {})
Presence = _presence(UsageEvent, "Presence", {"usage": UsagePresence | None, "tags": dict[str, Raw] | None})
_decode = msgspec.json.Decoder(Presence).decode
_encode = msgspec.json.Encoder().encode
_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def no_key_repeated(body: bytes) -> bool:
    """For a body UsageEvent's typed decode accepted (so every value but `usage` and `tags` is a
    scalar): True when no object of it names a key twice and it names no reserved field, not even
    as null; False when that is not certain."""
    try:
        present: Any = _decode(body)
    except _ERRORS:
        return False
    if present.extra is not UNSET or present.origin is not UNSET:  # reserved: the full check refuses it
        return False
    canonical = _encode(present)
    return len(canonical) == len(body) or (b"\\" not in body and canonical.count(b":") == body.count(b":"))
