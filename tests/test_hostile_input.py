"""Hostile and broken input, beyond the named corpus of tests/test_decode.py: property-based
events with hostile values (every accepted one re-encoded and validated against the published JSON
Schema), duplicate keys, extreme token counts end to end, SQL-looking ids that reach Cosmos DB only
as query parameters, and fuzzed Capture files, reference files and corrections files: no crash,
and every rejection carries a reason."""

from __future__ import annotations

import ast
import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import fastavro
import msgspec
import pytest
import redis
from azure.cosmos import CosmosClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from pipeline.adapters.azure import cosmos_ledger
from pipeline.adapters.azure.capture import capture_files, capture_messages
from pipeline.adapters.azure.cosmos_ledger import open_cosmos_ledger
from pipeline.adapters.azure.redis_counters import RedisCounters
from pipeline.adapters.embedded.counters import SqliteCounters
from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import Pipeline
from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.domain.events import EXTRA_FIELD, ORIGIN_FIELD, UsageEvent
from pipeline.domain.live import LivePricer
from pipeline.domain.pricing import CatalogError
from pipeline.entrypoints.functions.eventhub import ingest_events
from pipeline.inputs.catalog import load_price_catalog
from pipeline.inputs.corrections import parse_corrections_file
from pipeline.inputs.event_files import json_lines
from pipeline.inputs.maps import load_budgets, load_cost_centers, load_deployments
from pipeline.lake.warehouse import open_warehouse
from pipeline.ports import SourceError
from pipeline.stages.ingest import ingest, ingest_batch
from pipeline.stages.snapshot import snapshot
from tests.conftest import ReferenceFiles
from tests.factories import CAPTURE_SCHEMA, event, line, usage
from tests.servers import CosmosEndpoint

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Draft202012Validator(json.loads((ROOT / "schemas" / "usage-event.v1.schema.json").read_text()))
NOW = datetime(2026, 10, 20, tzinfo=UTC)
CODES = {"not-json", "empty", "oversized", "schema", "missing-event-id", "unsupported-schema-version",
         "inconsistent-usage", "timestamp-out-of-range", "content-field", "duplicate-key"}
SQL_IDS = ["x' OR '1'='1", "'; DROP TABLE events; --", '" OR c.id != "', "a) OR (1=1", "SELECT * FROM c",
           "@id", "evt\\'); --", "1; DELETE FROM c WHERE 1=1", "{cb}:e:other", "a/b", "a%2Fb", "#?\\", "x" * 256]


def wire(decoded: UsageEvent) -> dict[str, Any]:
    """The accepted event as the producer's JSON again: known fields plus the kept unknown ones."""
    document = {k: v for k, v in msgspec.to_builtins(decoded).items() if k not in (EXTRA_FIELD, ORIGIN_FIELD)}
    for name, value in json.loads(decoded.extra or "{}").items():
        if name == "usage":
            document["usage"] = {**document["usage"], **value}
        else:
            document[name] = value
    return document


def outcomes(bodies: list[bytes]) -> list[UsageEvent]:
    """Decode; each body has one outcome, each rejection a known code and a reason, and every
    accepted event is valid against the JSON Schema and its consistency rules."""
    batch = decode_batch([RawMessage(body, "hostile", str(n)) for n, body in enumerate(bodies)], now=NOW)
    assert len(batch.events) + len(batch.rejections) == len(bodies)
    for rejection in batch.rejections:
        assert rejection.code in CODES and rejection.reason.strip(), rejection
    for accepted in batch.events:
        document = wire(accepted)
        assert not list(SCHEMA.iter_errors(document)), document
        raw = json.loads(bodies[int(accepted.origin.position)])  # type: ignore[union-attr]
        assert not list(SCHEMA.iter_errors(raw)), raw  # as sent, too
        assert len(msgspec.json.encode(document)) <= 64 * 1024
        if accepted.usage is not None:
            u = accepted.usage
            assert u.total_tokens == u.prompt_tokens + u.completion_tokens <= 2 * 10**12
            assert u.cached_tokens <= u.prompt_tokens and u.reasoning_tokens <= u.completion_tokens
        assert datetime(2015, 1, 1, tzinfo=UTC) <= accepted.timestamp <= datetime(2026, 10, 27, tzinfo=UTC)
    return batch.events


TEXT = st.sampled_from(["", " ", "\x00", "\u202e", "é" * 256, "😀" * 257, *SQL_IDS]) | st.text(max_size=300)
INT = st.sampled_from([-1, 0, 10**12, 10**12 + 1, 2**53 + 1, 2**63, 2**64, -(2**63)]) | st.integers()
FLOAT = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e400, 1.5, 1e3])
STAMP = st.sampled_from([
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2014-12-31T23:59:59.999999Z",
    "2026-10-15T12:30:00+14:00", "2026-10-15T23:30:00-12:00", "2026-10-15T12:30:00.1234567Z", "2026-10-15",
    "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-10-15T24:00:00Z", "2026-10-15T12:30:00+25:00",
    "2026-10-15T12:30:00 +0100", "2026-10-15t12:30:00z", "2026-10-26T23:59:59-01:00"]) | st.datetimes().map(
        lambda moment: moment.isoformat() + "Z")
SCALAR = st.none() | st.booleans() | TEXT | INT | FLOAT | STAMP
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                     max_leaves=6)
FIELDS = [*sorted(event()), "promptTokens", "tags", "usage", "note", "prompt", EXTRA_FIELD]
USAGE = st.fixed_dictionaries({}, optional=dict.fromkeys(usage(1, 1), INT | FLOAT | SCALAR))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS) | TEXT, VALUE, max_size=4), USAGE, st.booleans())
def test_hostile_values_are_rejected_with_a_reason_or_accepted_valid(changes: dict[str, Any], counts: dict[str, Any],
                                                                     nested_usage: bool) -> None:
    body = event(**changes)
    if nested_usage:
        body["usage"] = {**usage(100, 20), **counts}
    outcomes([json.dumps(body, allow_nan=True).encode(), json.dumps(body, allow_nan=True, indent=1).encode()])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(sorted(event())), min_size=1, max_size=3), st.data())
def test_a_repeated_key_is_always_refused(names: list[str], data: st.DataObject) -> None:
    text = line(event())[:-1].decode()
    for name in names:  # the key again, at the end, with a value of its own (or the same one)
        text += f', "{name}": {json.dumps(data.draw(VALUE | st.just(event()[name]), label=name))}'
    [rejection] = decode_batch([RawMessage((text + "}").encode(), "t", "1")], now=NOW).rejections
    assert rejection.code in CODES and rejection.reason


DUPLICATES = {
    "usage twice, the smaller last": line(event())[:-1] + b',"usage":' + line(usage(1, 1)) + b"}",
    "a usage member twice": line(event(usage=usage(1000, 200))).replace(b'"promptTokens":1000',
                                                                      b'"promptTokens":1000,"promptTokens":1'),
    "key escaped as unicode": line(event())[:-1] + b',"\\u0075sage":' + line(usage(1, 1)) + b"}",
    "spaces before the colon": line(event())[:-1] + b', "subscriptionId" \t: "sub-victim"}',
    "in the tags": line(event(tags={"team": "a"})).replace(b'"team":"a"', b'"team":"a","team":"b"'),
    "inside an unknown field": line(event(note={"a": 1})).replace(b'"a":1', b'"a":1,"a":2'),
}


@pytest.mark.parametrize("body", list(DUPLICATES.values()), ids=list(DUPLICATES))
def test_duplicate_keys_are_dead_lettered(body: bytes) -> None:
    [rejection] = decode_batch([RawMessage(body, "t", "1")], now=NOW).rejections
    assert rejection.code == "duplicate-key" and "appears more than once" in rejection.reason


@pytest.mark.parametrize("name", list(DUPLICATES))
def test_duplicate_keys_are_checked_unless_turned_off(name: str) -> None:
    # The default is the checked path (files, stdin, replays); only the Event Hub trigger turns the
    # check off, and then the same bytes decode with the last copy, as msgspec keeps it (a usage
    # member repeated with a smaller count then breaks the token-sum rule instead).
    message = RawMessage(DUPLICATES[name], "t", "1")
    assert [r.code for r in decode_batch([message], now=NOW).rejections] == ["duplicate-key"]
    unchecked = decode_batch([message], now=NOW, check_duplicate_keys=False)
    expected = ["inconsistent-usage"] if name == "a usage member twice" else []
    assert ([r.code for r in unchecked.rejections], len(unchecked.events)) == (expected, 1 - len(expected))


def test_only_the_event_hub_trigger_skips_the_duplicate_key_check(pipeline: Pipeline, tmp_path: Path) -> None:
    # Its producer, the APIM policy, builds a JObject (no key twice) and only APIM may send to the
    # hub. The same bytes from a file (the CLI's ingest, replays) are refused: the default is checked.
    body = DUPLICATES["usage twice, the smaller last"]
    hub = ingest_events([func.EventHubEvent(body=body, sequence_number=1, offset="0")], pipeline, "eventhub:ns/hub")
    assert (hub.ingested, hub.dead_lettered) == (1, 0)
    (tmp_path / "events.jsonl").write_bytes(body + b"\n")
    from_file = ingest(json_lines(str(tmp_path / "events.jsonl")), pipeline.ledger, pipeline.counters,
                       pipeline.dead_letters, pipeline.pricer)
    assert (from_file.dead_lettered, dict(from_file.reasons)) == (1, {"duplicate-key": 1})
    one = ingest_batch([RawMessage(body, "t", "1")], pipeline.ledger, pipeline.counters, pipeline.dead_letters,
                       pipeline.pricer)
    assert dict(one.reasons) == {"duplicate-key": 1}


@pytest.mark.parametrize("body", [line(event(costCenter="usage", region='"usage":')),
                                  line(event(tags={"model": "x", "usage": "y"}, note={"usage": 1})),
                                  line(event(costCenter="a\\b:c", region="\u00e9:\u00e9"))],
                         ids=["key names as values", "same names in other objects", "escapes and colons"])
def test_keys_repeated_only_in_other_objects_or_values_are_fine(body: bytes) -> None:
    assert len(outcomes([body])) == 1


@pytest.mark.parametrize(("tokens", "accepted"), [(10**12, True), (10**12 + 1, False), (2**63, False),
                                                  (2**64 + 1, False), (-1, False), (1.0, False), (1e12, False)])
def test_token_counts_stay_within_the_contract(tokens: int | float, accepted: bool) -> None:
    body = line(event(usage={**usage(0, 0), "promptTokens": tokens, "totalTokens": tokens}))
    assert len(outcomes([body])) == accepted


def test_maximal_token_counts_are_counted_exactly_on_redis(redis_url: str, reference_files: ReferenceFiles) -> None:
    # totalTokens <= 10^12 caps each event; 10,000 of them take every sum past 2^53 (Lua's doubles).
    big = [line(event(eventId=f"big-{n}", deployment="dep-alpha", model=None,
                      usage=usage(10**12 - n, n, cached=n, reasoning=n))) for n in range(10_000)]
    events = outcomes(big[:3]) + decode_batch([RawMessage(body, "big", "1") for body in big[3:]], now=NOW).events
    assert len(events) == 10_000
    charges = LivePricer(reference_files.load()).charges(events)
    oracle = SqliteCounters(Path(":memory:"))
    oracle.add(events, charges)
    prefix = f"hostile-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    try:
        counters = RedisCounters(client, prefix=prefix)
        assert counters.add(events, charges).new == 10_000
        [month] = counters.month_to_date("2026-10")
        assert [month] == oracle.month_to_date("2026-10")
        assert month.prompt_tokens == 10_000 * 10**12 - sum(range(10_000)) > 2**53
        assert month.total_tokens == 10_000 * 10**12 and month.spend_micros > 2**53
    finally:
        if keys := list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000)):
            client.delete(*keys)
        client.close()


def test_cosmos_queries_are_constants_with_parameters() -> None:
    """Event data can reach Cosmos DB queries only as parameters: every query_items call passes a
    string literal or module constant (no f-string, format or concatenation) and its @names as
    `parameters`."""
    tree = ast.parse(Path(cosmos_ledger.__file__).read_text())
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant)}
    constants |= {node.targets[0].id: "".join(part.value for part in node.value.elts)  # type: ignore[attr-defined]
                  for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple)
                  and all(isinstance(part, ast.Constant) and isinstance(part.value, str) for part in node.value.elts)
                  and isinstance(node.targets[0], ast.Name)}
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "query_items"]
    assert calls
    for call in calls:
        query = call.args[0]  # a string literal, or a module constant holding one
        text = query.value if isinstance(query, ast.Constant) else constants.get(getattr(query, "id", ""))
        assert isinstance(text, str), ast.unparse(call)
        if "@" in text:
            assert any(keyword.arg == "parameters" for keyword in call.keywords), ast.unparse(call)
    formatted = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr | ast.BinOp)
                 or (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "format")]
    assert not [text for text in formatted if "SELECT" in text.upper() or " FROM " in text.upper()]


@pytest.fixture
def cosmos_pipeline(cosmos_endpoint: CosmosEndpoint, redis_url: str, reference_files: ReferenceFiles,
                    tmp_path: Path) -> Iterator[Pipeline]:
    database, prefix = f"hostile-{uuid.uuid4().hex[:12]}", f"hostile-{uuid.uuid4().hex}"
    host = cosmos_endpoint.url.removeprefix("https://").rstrip("/")
    ledger = open_cosmos_ledger(f"cosmos://{host}/{database}/ledger", key=cosmos_endpoint.key, create=True,
                                settle_seconds=0)
    client = redis.Redis.from_url(redis_url)
    opened = Pipeline(ledger, RedisCounters(client, prefix=prefix), None,  # type: ignore[arg-type]
                      LocalObjectStore(tmp_path / "snapshots"), LivePricer(reference_files.load()))
    yield opened
    ledger.close()
    if keys := list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000)):
        client.delete(*keys)
    client.close()
    cosmos = CosmosClient(cosmos_endpoint.url, credential=cosmos_endpoint.key)
    cosmos.delete_database(database)
    cosmos.close()


def test_sql_looking_ids_are_stored_verbatim_on_cosmos_redis_and_parquet(cosmos_pipeline: Pipeline,
                                                                        pipeline: Pipeline) -> None:
    bodies = [line(event(eventId=text, subscriptionId=text, deployment="dep-alpha", costCenter=text[:256]))
              for text in SQL_IDS]
    for opened in (cosmos_pipeline, pipeline):  # Cosmos DB + Redis; SQLite + SQLite
        messages = [RawMessage(body, "hostile", str(n)) for n, body in enumerate(bodies)]
        result = ingest_batch(messages, opened.ledger, opened.counters, pipeline.dead_letters, opened.pricer)
        assert (result.ingested, result.counted, result.dead_lettered) == (len(SQL_IDS),) * 2 + (0,)
        again = ingest_batch(messages, opened.ledger, opened.counters, pipeline.dead_letters, opened.pricer)
        assert (again.duplicates, again.counted) == (len(SQL_IDS), 0)  # each id met its own first copy
        assert opened.ledger.count() == len(SQL_IDS)
        rows = opened.ledger.changes(None, 100).table.to_pylist()
        assert sorted(row["event_id"] for row in rows) == sorted(SQL_IDS)
        assert {row.subscription_id for row in opened.counters.month_to_date("2026-10")} == set(SQL_IDS)
    snapshot(pipeline.ledger, pipeline.snapshots)
    connection = open_warehouse(pipeline.snapshots).connection
    found = connection.execute("SELECT event_id FROM usage WHERE subscription_id = ?", [SQL_IDS[1]]).fetchall()
    assert found == [(SQL_IDS[1],)]




@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2**63 - 1), st.text(max_size=30), st.binary(max_size=200) | st.none()),
                max_size=4), st.integers(0, 4000), st.binary(min_size=1, max_size=8))
def test_capture_files_damaged_or_hostile_never_crash_the_reader(tmp_path: Path, records: list[Any], cut: int,
                                                                 splice: bytes) -> None:
    store = LocalObjectStore(tmp_path / f"capture-{uuid.uuid4().hex}")
    path = store.path("ns/hub/0/2026/10/15/12/00/00.avro")
    path.parent.mkdir(parents=True)
    with path.open("wb") as file:
        fastavro.writer(file, CAPTURE_SCHEMA, [{"SequenceNumber": seq, "Offset": "0", "EnqueuedTimeUtc": when,
                                         "SystemProperties": {}, "Properties": {}, "Body": body}
                                        for seq, when, body in records])
    data = path.read_bytes()
    for damaged in (data, data[:cut], data[:cut] + splice + data[cut + len(splice):]):
        path.write_bytes(damaged)
        try:
            messages = list(capture_messages(store, capture_files(store)))
        except SourceError as error:
            assert str(error).startswith(store.url)  # names the file
            continue
        outcomes([message.body for message in messages])


CSV_CELL = st.sampled_from(["", "-1", "1e999", "NaN", "0.0000001", "9" * 40, "2026-02-30", "9999-12-31",
                            "0001-01-01", "=cmd|' /C calc'!A0", "USD", "usd", "global", "*", "a\nb", '"', ",",
                            "subscription", "cost-center"]) | st.text(max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([load_price_catalog, load_deployments, load_cost_centers, load_budgets]),
       st.lists(st.lists(CSV_CELL, min_size=1, max_size=10), max_size=4), st.booleans(), st.binary(max_size=30))
def test_reference_files_load_or_say_which_file_and_why(tmp_path: Path, loader: Any, rows: list[list[str]],
                                                         with_header: bool, junk: bytes) -> None:
    header = {load_price_catalog: "model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,"
              "cached_input_per_1m,output_per_1m", load_deployments: "deployment,model,deployment_type,region",
              load_cost_centers: "subscription_id,cost_center,effective_from,effective_to",
              load_budgets: "scope,key,monthly_budget,currency"}[loader]
    path = tmp_path / f"{uuid.uuid4().hex}.csv"
    text = "\n".join([header] * with_header + [",".join(row) for row in rows])
    for data in (text.encode(), text.encode() + junk):
        path.write_bytes(data)
        try:
            loader(path)
        except CatalogError as error:
            assert str(path) in str(error) and str(error).strip()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([".yaml", ".csv"]), st.text(max_size=300) | st.sampled_from([
    "- kind: void\n  event_ids: [\"x' OR 1=1\"]\n  reason: r", "- &a [*a]", "- kind: reprice\n  catalog: /etc/passwd",
    "!!python/object/apply:os.system ['true']", "kind,reason\nvoid,r\n", "- " * 300]))
def test_corrections_files_load_or_say_why(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}{suffix}"
    path.write_text(text)
    try:
        parse_corrections_file(path, "tester", NOW)
    except CatalogError as error:
        assert str(error).strip()
