"""The cheap proof that an event names no key twice (pipeline.domain.key_presence): it may say
"not certain" for a clean event (the full check then decides), but never "no repeat" for an event
that repeats a key or names a reserved field; and for the events producers write (no whitespace,
no escapes) it does prove it, so the full check is not run for them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.domain.events import EXTRA_FIELD, ORIGIN_FIELD, UsageEvent
from pipeline.domain.key_presence import no_key_repeated
from tests.factories import event, line, usage

NOW = datetime(2026, 10, 20, tzinfo=UTC)
_typed = msgspec.json.Decoder(UsageEvent).decode


def _oracle(body: bytes) -> tuple[bool, bool]:
    """(some object names a key twice, a reserved name is a top-level key), by Python's json."""
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        names = [name for name, _ in items]
        repeated |= len(set(names)) < len(names)
        return dict(items)

    document = json.loads(body, object_pairs_hook=pairs)
    return repeated, any(name in document for name in (EXTRA_FIELD, ORIGIN_FIELD))


def _key(name: str, escaped: bool) -> str:
    """A key as JSON text, its first letter written as a \\u escape when `escaped`."""
    if not escaped or not name:
        return json.dumps(name)
    return f'"\\u{ord(name[0]):04x}{json.dumps(name)[2:-1]}"'


def _object(pairs: list[tuple[str, str]], space: str, escaped: set[int]) -> str:
    return "{" + f",{space}".join(f"{_key(name, at in escaped)}{space}:{space}{value}"
                                  for at, (name, value) in enumerate(pairs)) + "}"


TAG_NAMES = st.sampled_from(["env", "team", "model", "usage", "a:b", "é", "x\"y", "tier"])
TAG_VALUES = st.sampled_from(["prod", "", "a:b:c", "\\", "😀", "\"q\""])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(event())), max_size=3),
       st.lists(st.sampled_from(sorted(usage(1, 1))), max_size=2),
       st.lists(st.tuples(TAG_NAMES, TAG_VALUES), max_size=4), st.sampled_from(["", " ", "\n\t "]),
       st.sets(st.integers(0, 30), max_size=3), st.sampled_from([None, EXTRA_FIELD, ORIGIN_FIELD]), st.randoms())
def test_it_never_vouches_for_an_event_that_repeats_a_key_or_names_a_reserved_field(
        again: list[str], usage_again: list[str], tags: list[tuple[str, str]], space: str, escaped: set[int],
        reserved: str | None, random: Any) -> None:
    fields = event(usage=usage(100, 20), costCenter="cc:1", region="East US")
    top = [(name, json.dumps(value)) for name, value in fields.items() if name not in ("usage", "tags")]
    top += [(name, json.dumps(fields[name])) for name in again if name not in ("usage", "tags")]
    counts = [(name, json.dumps(value)) for name, value in usage(100, 20).items()]
    counts += [(name, json.dumps(usage(100, 20)[name])) for name in usage_again]
    top.append(("usage", _object(counts, space, escaped)))
    top.append(("tags", _object([(name, json.dumps(value)) for name, value in tags], space, escaped)))
    if reserved:
        top.append((reserved, "null"))
    random.shuffle(top)
    body = _object(top, space, escaped).encode()
    try:
        _typed(body)
    except msgspec.ValidationError:
        label("not an event")
        return  # the proof is only asked of what the typed decode accepts
    repeated, names_reserved = _oracle(body)
    label(f"repeated={repeated} reserved={names_reserved} proven={no_key_repeated(body)}")
    if no_key_repeated(body):
        assert not repeated and not names_reserved, body
    if not (repeated or names_reserved) and b"\\" not in body:
        assert no_key_repeated(body), body  # proven without an escape, whitespace or not: no full check
    # and the decoder's verdict is the oracle's, whichever way it came to it
    outcome = decode_batch([RawMessage(body, "t", "1")], now=NOW)
    codes = [rejection.code for rejection in outcome.rejections]
    assert codes == (["duplicate-key"] if repeated and not names_reserved else ["schema"] if names_reserved else []), (
        body, codes)


CLEAN = line(event(usage=usage(1000, 200), tags={"team": "a", "env": "prod"}))


@pytest.mark.parametrize(("body", "proven"), [
    (CLEAN, True),
    (CLEAN.replace(b",", b", ").replace(b":", b": "), True),  # whitespace: the colons still agree
    (CLEAN.replace(b'"team"', b'"\\u0074eam"'), False),  # an escape: the full check decides (and accepts)
    (CLEAN.replace(b'"team":"a"', b'"team":"a","team":"b"'), False),
    (CLEAN.replace(b'"promptTokens":1000', b'"promptTokens":1000,"promptTokens":1000'), False),
    (CLEAN[:-1] + b',"subscriptionId":"sub-a"}', False),
    (CLEAN.replace(b",", b", ")[:-1] + b', "model": "x"}', False),
    (CLEAN[:-1] + b',"' + EXTRA_FIELD.encode() + b'":null}', False),
    (CLEAN[:-1] + b',"' + ORIGIN_FIELD.encode() + b'":null}', False),
    (CLEAN[:-1] + b',"note":1}', False),  # a field this version does not know
], ids=["clean", "whitespace", "escaped key", "tag twice", "usage member twice", "field twice",
        "field twice with whitespace", "reserved extra", "reserved origin", "unknown field"])
def test_what_it_proves_and_what_it_leaves_to_the_full_check(body: bytes, proven: bool) -> None:
    assert no_key_repeated(body) is proven
