"""The APIM policies (apim_policies/) checked without an APIM runtime: statically against the APIM
policy reference, and with recorded events against the pipeline's own decoder and pricing.

What only a live APIM can confirm is listed in apim_policies/README.md ("Checked only against the
documentation"). The static-analysis helpers (expression masker, policy checker, allowed-types
check, event reader) are in tests/apim_static.py, with the Microsoft Learn pages they are built
from.
"""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest

from pipeline.domain.costing import CostLine, Reference, Unpriced, UsageKey, UsageState
from pipeline.domain.decode import MAX_EVENT_BYTES, RawMessage, decode_batch
from pipeline.domain.events import USAGE_FIELDS, WIRE_FIELDS, UsageEvent
from pipeline.domain.live import LivePricer
from pipeline.inputs.reference import load_reference
from tests.apim_csharp import CSharpException, InterpreterError, datetime_value, run_expression
from tests.apim_gateway import REQUEST_ID, Call, Gateway, Reply, azure_openai
from tests.apim_static import (
    API_POLICY,
    DEPLOYMENTS_CSV,
    EMIT_FRAGMENT,
    EVENTS_DIR,
    FRAGMENT_DIR,
    NAMED_VALUE,
    RESPONSES_DIR,
    MaskError,
    PolicyDocument,
    all_documents,
    all_expressions,
    blank_literals,
    emit_expression,
    emitted_shape,
    expression_type_problems,
    field_mismatches,
    fragment_id,
    fragment_sections,
    load_schema,
    mask_expressions,
    named_values_documented,
    named_values_used,
    parse_policy,
    policy_files,
    policy_problems,
    section_statements,
    string_literals,
)

# --- the masker itself ------------------------------------------------------------------------


def test_masker_handles_operators_generics_and_quotes_in_attributes() -> None:
    xml = ('<a cond="@(x.As<JObject>() != null && y < 3 && z > 1 ? "a>b" : "<c>")" other="plain" />')
    masked, found = mask_expressions(xml)
    assert masked == '<a cond="__APIM_EXPRESSION_0__" other="plain" />'
    assert ET.fromstring(masked).get("cond") == "__APIM_EXPRESSION_0__"
    (expression,) = found.values()
    assert expression.kind == "attribute"
    assert expression.body == 'x.As<JObject>() != null && y < 3 && z > 1 ? "a>b" : "<c>"'


def test_masker_skips_brackets_inside_strings_chars_and_comments() -> None:
    code = ('@{\n  // a ) and a } in a comment\n  /* } ) */\n  char c = \')\'; char q = \'\\\'\'; char b = \'{\';\n'
            '  string s = "}\\")"; string v = @"C:\\dir ""quoted"" }";\n  if (s.Length > 0) { return s; }\n'
            '  return v;\n}')
    xml = f"<root><log>{code}</log><b>@(\"(\" + \")\")</b></root>"
    masked, found = mask_expressions(xml)
    assert masked == "<root><log>__APIM_EXPRESSION_0__</log><b>__APIM_EXPRESSION_1__</b></root>"
    assert [e.code for e in found.values()] == [code, '@("(" + ")")']
    assert [e.kind for e in found.values()] == ["text", "text"]


def test_masker_leaves_comments_non_expressions_and_whitespace_alone() -> None:
    xml = ('<r>\n  <!-- @(not an expression < & > -->\n  <a name="x@(y" v="{{named-value}}">plain text</a>\n'
           '  <b>\n    @( (1 + (2)) )\n  </b>\n</r>')
    masked, found = mask_expressions(xml)
    assert len(found) == 1
    root = ET.fromstring(masked)
    anchor = root.find("a")
    assert anchor is not None and anchor.get("name") == "x@(y" and anchor.get("v") == "{{named-value}}"
    assert (root.findtext("b") or "").strip() == "__APIM_EXPRESSION_0__"
    assert next(iter(found.values())).code == "@( (1 + (2)) )"


def test_unmasking_gives_back_the_original_document() -> None:
    for path in policy_files():
        raw = path.read_text(encoding="utf-8")
        masked, found = mask_expressions(raw)
        for placeholder, expression in found.items():
            masked = masked.replace(placeholder, expression.code, 1)
        assert masked == raw, path.name


@pytest.mark.parametrize(("xml", "message"), [
    ("<a>@(x(y)</a>", "not closed"),
    ('<a v="@(x(y)" />', "unterminated string"),  # the attribute's closing quote opens a C# string
    ('<a v="@(x) + 1" />', "goes on after"),
    ("<a>@(x) trailing</a>", "goes on after"),
    ('<a v="@($"{x}")" />', "interpolated"),
    ('<a v="@("unterminated\n")" />', "unterminated string"),
    ("<a>@{ return x; </a>", "not closed"),
])
def test_masker_rejects_expressions_it_cannot_delimit(xml: str, message: str) -> None:
    with pytest.raises(MaskError, match=message):
        mask_expressions(xml)


def test_the_policies_are_not_plain_xml_which_is_why_masking_is_needed() -> None:
    with pytest.raises(ET.ParseError):
        ET.fromstring(EMIT_FRAGMENT.read_text(encoding="utf-8"))



@pytest.mark.parametrize("path", policy_files(), ids=lambda p: p.name)
def test_every_policy_file_is_well_formed_once_expressions_are_masked(path: Path) -> None:
    document = parse_policy(path)
    assert document.expressions, "every policy file here uses expressions"
    for expression in document.expressions.values():
        assert not re.search(r"&(quot|lt|gt|amp|apos|#\d+|#x[0-9a-fA-F]+);", expression.code), (
            f"{path.name}:{expression.line}: write expressions raw, not XML-escaped (rawxml form)")


def test_policy_elements_are_real_and_in_allowed_sections() -> None:
    assert policy_problems(all_documents()) == []



def test_api_policy_has_the_required_pieces() -> None:
    root = parse_policy(API_POLICY).root
    assert section_statements(root, "inbound") == [
        "include-fragment:chargeback-resolve-caller", "base", "include-fragment:chargeback-validate-entra-token",
        "choose", "include-fragment:chargeback-stream-include-usage", "authentication-managed-identity", "set-header",
        "choose"]
    identity = root.find("inbound/authentication-managed-identity")
    assert identity is not None and identity.get("resource") == "https://cognitiveservices.azure.com"
    forward = root.find("backend/forward-request")
    assert forward is not None and forward.get("buffer-response") == "false"
    assert forward.get("fail-on-error-status-code") == "false"
    assert backend_problems(parse_policy(API_POLICY)) == []
    # Emit first, then <base />: see apim_policies/README.md, "At most one event per request".
    assert section_statements(root, "outbound") == ["include-fragment:chargeback-emit-usage",
                                                    "include-fragment:chargeback-budget-header", "base"]
    assert section_statements(root, "on-error") == ["set-variable", "choose", "include-fragment:chargeback-emit-usage",
                                                    "base"]
    resolve_again = root.find("on-error/choose/when/include-fragment")
    assert resolve_again is not None and resolve_again.get("fragment-id") == "chargeback-resolve-caller"
    emit = parse_policy(EMIT_FRAGMENT).root
    when = emit.find("choose/when")
    assert when is not None and [child.tag for child in when] == ["log-to-eventhub", "set-variable"]
    guard = parse_policy(EMIT_FRAGMENT).expression(when.get("condition"))
    assert guard is not None and guard.code == '@(!context.Variables.ContainsKey("chargeback-emitted"))'
    flag = when.find("set-variable")
    assert flag is not None and flag.get("name") == "chargeback-emitted"
    log = when.find("log-to-eventhub")
    assert log is not None and log.get("logger-id") == "chargeback-usage-logger"
    assert partition_key_problems(parse_policy(EMIT_FRAGMENT)) == []


def partition_key_problems(document: PolicyDocument) -> list[str]:
    """The Event Hub partition key must be the event id (apim_policies/README.md, "At most one event
    per request"): the same expression as the event's eventId."""
    log = next(document.root.iter("log-to-eventhub"))
    partition = document.expression(log.get("partition-key"))
    if partition is None or partition.code != "@(context.RequestId.ToString())":
        return ["the partition key is not the event id (context.RequestId)"]
    message = document.expression(log.text)
    if message is None or 'new JProperty("eventId", context.RequestId.ToString())' not in message.code:
        return ["the eventId is not context.RequestId"]
    return []


def test_a_partition_key_other_than_the_event_id_fails_the_check() -> None:
    text = EMIT_FRAGMENT.read_text(encoding="utf-8")
    by_subscription = text.replace('partition-key="@(context.RequestId.ToString())"',
                                   'partition-key="@(context.Variables.GetValueOrDefault<string>'
                                   '("chargeback-subscription-id", "(none)"))"')
    assert by_subscription != text
    assert partition_key_problems(parse_policy(EMIT_FRAGMENT, by_subscription)) == [
        "the partition key is not the event id (context.RequestId)"]


@pytest.mark.parametrize("subscription", ["team-search-prod", None], ids=["outbound", "on-error"])
def test_every_event_is_sent_with_its_event_id_as_partition_key(subscription: str | None) -> None:
    outcome = Gateway().send(Call("POST", "/openai/deployments/gpt-4o-prod/embeddings?api-version=2024-10-21",
                                  '{"input":"x"}', {"Content-Type": "application/json"}, subscription=subscription))
    ((key, message),) = outcome.events
    assert key == json.loads(message)["eventId"] == REQUEST_ID


def test_the_checker_catches_misplaced_and_unknown_elements() -> None:
    bad = ('<policies><inbound><base /></inbound><backend><base /></backend>'
           '<outbound><validate-azure-ad-token tenant-id="t"><client-application-ids><application-id>a'
           '</application-id></client-application-ids></validate-azure-ad-token><base /></outbound>'
           '<on-error><set-body>x</set-body><made-up-policy /><base /></on-error></policies>')
    problems = policy_problems([parse_policy(API_POLICY, bad)])
    assert any("<validate-azure-ad-token> is not allowed in outbound" in p for p in problems)
    assert any("<set-body> is not allowed in on-error" in p for p in problems)
    assert any("<made-up-policy> is not an APIM policy" in p for p in problems)
    misplaced = ('<policies><inbound><validate-azure-ad-token tenant-id="t"><audiences><audience>x</audience>'
                 '</audiences><client-application-ids><application-id>a</application-id></client-application-ids>'
                 '</validate-azure-ad-token><log-to-eventhub partition-key="k">m</log-to-eventhub></inbound>'
                 '<backend /><outbound /><on-error /></policies>')
    problems = policy_problems([parse_policy(API_POLICY, misplaced)])
    assert any("documented order" in p for p in problems)
    assert any("lacks required attribute(s) ['logger-id']" in p for p in problems)


def test_fragments_are_wrapped_in_fragment_and_every_include_names_an_existing_file() -> None:
    documents = all_documents()
    for document in documents[1:]:
        assert document.root.tag == "fragment", document.path.name
    used = fragment_sections(documents)
    assert set(used) == {fragment_id(path) for path in FRAGMENT_DIR.glob("*.xml")}
    assert used["chargeback-emit-usage"] == {"outbound", "on-error"}
    assert used["chargeback-resolve-caller"] == {"inbound", "on-error"}
    assert used["chargeback-validate-entra-token"] == {"inbound"}
    assert used["chargeback-stream-include-usage"] == {"inbound"}



def test_every_named_value_used_is_documented_in_the_readme_and_no_more() -> None:
    used = named_values_used()
    assert used, "the policies take their settings from named values"
    assert used == named_values_documented()


def test_named_values_appear_only_where_apim_substitutes_them() -> None:
    """Not in XML comments (keep comments free of braces), and inside expressions only within a
    string literal, since the value is substituted as text before the C# is compiled."""
    for path in policy_files():
        raw = path.read_text(encoding="utf-8")
        for comment in re.findall(r"<!--.*?-->", raw, flags=re.DOTALL):
            assert not NAMED_VALUE.search(comment), path.name
        for expression in parse_policy(path).expressions.values():
            for match in NAMED_VALUE.finditer(expression.code):
                before = expression.code[: match.start()]
                assert before.endswith('"') and expression.code[match.end()] == '"', (
                    f"{path.name}:{expression.line}: {{{{{match.group(1)}}}}} must be a whole string literal")



def test_expressions_use_only_allowed_types_and_members() -> None:
    problems = [f"{path.name}:{e.line}: {p}" for path, e in all_expressions() for p in expression_type_problems(e.code)]
    assert problems == []


def test_the_type_check_catches_disallowed_types_and_members() -> None:
    code = ('@{ var sb = new System.IO.MemoryStream(); var d = DateTime.UtcNow.ToUniversalTime();'
            ' var x = new { a = 1 }; HttpClient h = null; Jwt jwt = null; var e = jwt.Signature;'
            ' return context.Request.Cookies + context.Response.Body.AsStream(); }')
    problems = expression_type_problems(code)
    assert "new System.IO.MemoryStream: not an allowed type" in problems
    assert "DateTime.ToUniversalTime: member not allowed" in problems
    assert any("anonymous types" in p for p in problems)
    assert "HttpClient: not an allowed type" in problems
    assert "Jwt.Signature: not a documented member" in problems
    assert "context ... Request.Cookies: not a documented member" in problems
    assert ".AsStream(): not a documented method" in problems
    assert expression_type_problems('@(new JObject(new JProperty("a", DateTime.UtcNow.ToString("o"))))') == []


def test_expressions_are_written_so_that_apim_reads_them_as_intended() -> None:
    for path, expression in all_expressions():
        where = f"{path.name}:{expression.line}"
        bare = blank_literals(expression.code, comments=False)
        if expression.kind == "attribute":
            # XML attribute-value normalization turns line breaks into spaces: a // comment would
            # swallow the rest of the expression.
            assert "//" not in bare and "/*" not in bare, f"{where}: no comments in attribute expressions"
        if expression.code.startswith("@{"):
            assert re.search(r"\breturn\b", bare), f"{where}: a multi-statement expression must return"
        for call in re.finditer(r"\.Body\.As<\w+>\(([^)]*)\)", expression.code):
            assert call.group(1).replace(" ", "") == "preserveContent:true", (
                f"{where}: read bodies with preserveContent: true so the message still reaches its receiver")


def test_the_response_body_is_read_only_for_non_streamed_json_in_outbound() -> None:
    code = emit_expression().code
    reads = [m.start() for m in re.finditer(r"context\.Response\.Body\.As<", code)]
    assert len(reads) == 1
    guard = code.rfind("if (inOutbound && json && metered && context.Response.Body != null)", 0, reads[0])
    assert guard >= 0, "the only response-body read sits under the metered, non-streamed JSON guard"
    assert 'bool json = !eventStream && contentType.IndexOf("json"' in code
    assert 'contentType.IndexOf("text/event-stream"' in code


def test_set_body_only_runs_for_parsed_streamed_requests() -> None:
    document = parse_policy(FRAGMENT_DIR / "chargeback-stream-include-usage.xml")
    when = document.root.find("choose/when")
    assert when is not None and [child.tag for child in when] == ["set-body"]
    condition = document.expression(when.get("condition"))
    assert condition is not None and '"chargeback-add-include-usage"' in condition.code
    resolve = parse_policy(FRAGMENT_DIR / "chargeback-resolve-caller.xml")
    facts = next(e for e in resolve.expressions.values() if '"addIncludeUsage", false' in e.code)
    assert 'facts["addIncludeUsage"] = streamed && completions && !included && accepted;' in facts.code
    assert "catch (Exception)" in facts.code


def test_every_resolve_expression_catches_its_own_exceptions() -> None:
    """on-error re-runs the resolve fragment: an exception there would lose the event."""
    resolve = parse_policy(FRAGMENT_DIR / "chargeback-resolve-caller.xml")
    for element in resolve.root:
        expression = resolve.expression(element.get("value"))
        assert expression is not None
        if expression.code.startswith("@{"):
            assert "catch (Exception)" in expression.code, element.get("name")



def test_the_event_written_by_log_to_eventhub_has_exactly_the_schemas_fields() -> None:
    assert field_mismatches(emit_expression().code, load_schema()) == []
    shape = emitted_shape(emit_expression().code)
    assert shape.usage_sources == {"response", "stream", "none"}
    # ... and the schema is the decoder's contract (tests/test_contract.py checks them field by field).
    assert sorted(shape.event) == sorted(WIRE_FIELDS)
    assert sorted(shape.usage) == sorted(USAGE_FIELDS)


@pytest.mark.parametrize(("old", "new"), [("costCenter", "costCentre"), ("cachedTokens", "cachedTokenCount"),
                                          ("schemaVersion", "version"), ("serviceTier", "tier"),
                                          ("spillover", "spilledOver"), ("audioPromptTokens", "promptAudioTokens")])
def test_renaming_a_field_in_the_policy_fails_the_check(old: str, new: str) -> None:
    text = EMIT_FRAGMENT.read_text(encoding="utf-8")
    renamed = text.replace(f'new JProperty("{old}"', f'new JProperty("{new}"')
    assert renamed != text
    problems = field_mismatches(emit_expression(renamed).code, load_schema())
    assert any(f"field {old!r} is in the schema but the policy does not write it" in p for p in problems)
    assert any(f"field {new!r} is written by the policy but is not in the schema" in p for p in problems)


def test_renaming_a_property_in_the_schema_fails_the_check() -> None:
    schema = copy.deepcopy(load_schema())
    schema["properties"] = {("gatewayRegion" if k == "region" else k): v for k, v in schema["properties"].items()}
    usage_object = next(o for o in schema["properties"]["usage"]["oneOf"] if o.get("type") == "object")
    usage_object["properties"]["reasoning"] = usage_object["properties"].pop("reasoningTokens")
    problems = field_mismatches(emit_expression().code, schema)
    assert "event field 'gatewayRegion' is in the schema but the policy does not write it" in problems
    assert "event field 'region' is written by the policy but is not in the schema" in problems
    assert "usage field 'reasoning' is in the schema but the policy does not write it" in problems
    assert "usage field 'reasoningTokens' is written by the policy but is not in the schema" in problems


def test_a_service_tier_source_outside_the_schema_enum_fails_the_check() -> None:
    assert emitted_shape(emit_expression().code).tier_sources == {"response", "request"}
    text = EMIT_FRAGMENT.read_text(encoding="utf-8").replace('serviceTierSource = "request";',
                                                             'serviceTierSource = "requested";')
    assert "serviceTierSource 'requested' is not in the schema's enum" in field_mismatches(emit_expression(text).code,
                                                                                         load_schema())


def test_a_usage_source_outside_the_schema_enum_fails_the_check() -> None:
    text = EMIT_FRAGMENT.read_text(encoding="utf-8").replace('usageSource = "stream";', 'usageSource = "streamed";')
    assert "usageSource 'streamed' is not in the schema's enum" in field_mismatches(emit_expression(text).code,
                                                                                   load_schema())


def test_tags_written_by_on_error_fit_the_schema() -> None:
    shape = emitted_shape(emit_expression().code)
    tags_schema = load_schema()["properties"]["tags"]
    assert shape.tags == ["apimErrorSource", "apimErrorReason", "chargebackError"]
    assert len(shape.tags) <= tags_schema["maxProperties"]
    assert all(1 <= len(name) <= tags_schema["propertyNames"]["maxLength"] for name in shape.tags)
    assert 'tags["chargebackError"] = "gateway-timeout";' in emit_expression().code


def test_the_largest_possible_event_stays_far_below_the_limits() -> None:
    """Every string at the 256-character cap the policy clips to: well under the pipeline's 64 KB and
    log-to-eventhub's 200 KB (where it would be truncated silently)."""
    shape = emitted_shape(emit_expression().code)
    big = "x" * 256
    event: dict[str, Any] = dict.fromkeys(shape.event, big)
    event.update(schemaVersion=1, stream=True, statusCode=599, durationMs=86_400_000, usageSource="response",
                 usage=dict.fromkeys(shape.usage, 10**12), tags=dict.fromkeys(shape.tags, big),
                 serviceTier="x" * 64, serviceTierSource="response", spillover=True)
    size = len(json.dumps(event, separators=(",", ":")).encode())
    assert size < 5 * 1024 < MAX_EVENT_BYTES < 200 * 1024
    clip = emit_expression().code.count(".Length > 256 ?")
    assert clip >= 5, "strings the emit fragment reads itself (model, api, operation, region, tags) are clipped"


# --------------------------------------------------------------------------------------------
# Recorded events: one per case, exactly as the policy writes them; decode and price them
# --------------------------------------------------------------------------------------------
# Usage mapping per API, as the emit expression reads it (the test checks the expression names
# these paths), used to derive each event's usage from the recorded Azure OpenAI response.
# The Responses API reports no audio tokens: its input_tokens_details has cached_tokens only and
# its output_tokens_details reasoning_tokens only (apim_policies/README.md, "The event").
USAGE_PATHS: dict[str, dict[str, str]] = {
    "chat, completions, embeddings": {
        "promptTokens": "prompt_tokens", "completionTokens": "completion_tokens",
        "cachedTokens": "prompt_tokens_details.cached_tokens",
        "reasoningTokens": "completion_tokens_details.reasoning_tokens",
        "audioPromptTokens": "prompt_tokens_details.audio_tokens",
        "audioCompletionTokens": "completion_tokens_details.audio_tokens"},
    "responses": {
        "promptTokens": "input_tokens", "completionTokens": "output_tokens",
        "cachedTokens": "input_tokens_details.cached_tokens",
        "reasoningTokens": "output_tokens_details.reasoning_tokens"},
}
RESPONSES_DISCRIMINATOR = "input_tokens"


def usage_from_response(body: dict[str, Any]) -> dict[str, int] | None:
    """What the emit expression makes of a non-streamed JSON response's usage block."""
    block = body.get("usage")
    if not isinstance(block, dict):
        return None
    paths = USAGE_PATHS["responses" if RESPONSES_DISCRIMINATOR in block else "chat, completions, embeddings"]

    def read(path: str | None) -> int | None:
        if path is None:
            return None
        value: Any = block
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    prompt = read(paths["promptTokens"])
    if prompt is None:
        return None
    completion = read(paths["completionTokens"]) or 0
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion,
            "cachedTokens": read(paths["cachedTokens"]) or 0, "reasoningTokens": read(paths["reasoningTokens"]) or 0,
            "audioPromptTokens": read(paths.get("audioPromptTokens")) or 0,
            "audioCompletionTokens": read(paths.get("audioCompletionTokens")) or 0}


def test_the_usage_mapping_used_for_the_fixtures_is_the_one_in_the_policy() -> None:
    literals = set(string_literals(emit_expression().code))
    for api, paths in USAGE_PATHS.items():
        for field_name, path in paths.items():
            assert path in literals, f"{api}: {field_name} <- usage.{path} is not what the policy reads"
    assert RESPONSES_DISCRIMINATOR in literals
    assert "totalTokens\", promptTokens + completionTokens" in emit_expression().code


@dataclass(frozen=True)
class Case:
    name: str
    cost: str | None = None  # exact expected cost in USD; None when unpriced
    unpriced: Unpriced | None = None
    on_error: bool = False
    response: bool = False  # a recorded Azure OpenAI response body exists
    notes: list[str] = field(default_factory=list)


# Prices: the shipped catalog (pipeline/data/prices.csv), USD per 1M tokens; deployments:
# tests/fixtures/apim/deployments.csv.
CASES = [
    # gpt-4o global 2.50 / 1.25 / 10.00: (1200 * 2.50 + 300 * 10.00) / 1e6 = (3000 + 3000) / 1e6
    Case("chat", cost="0.006", response=True),
    Case("chat-streamed", unpriced=Unpriced.USAGE_PENDING),
    # text-embedding-3-small global 0.02, no completion: 5000 * 0.02 / 1e6 = 100 / 1e6
    Case("embeddings", cost="0.0001", response=True),
    # gpt-4.1-mini global 0.40 / 0.10 / 1.60: (2000 * 0.40 + 500 * 1.60) / 1e6 = (800 + 800) / 1e6
    Case("responses", cost="0.0016", response=True),
    # o4-mini global 1.10 / 0.275 / 4.40; the 1900 reasoning tokens are inside the 2400 completion
    # tokens: (800 * 1.10 + 2400 * 4.40) / 1e6 = (880 + 10560) / 1e6
    Case("reasoning", cost="0.01144", response=True),
    # gpt-4.1 datazone 2.20 / 0.55 / 8.80: ((10000 - 8192) * 2.20 + 8192 * 0.55 + 200 * 8.80) / 1e6
    #   = (3977.6 + 4505.6 + 1760) / 1e6
    Case("cached-prompt", cost="0.0102432", response=True),
    Case("rate-limited-429", unpriced=Unpriced.NO_USAGE, response=True),
    Case("content-filter-400", unpriced=Unpriced.NO_USAGE, response=True),
    Case("backend-error-500", unpriced=Unpriced.NO_USAGE, response=True),
    # gpt-4o-audio-preview: 1200 of the 1500 prompt tokens and 300 of the 400 completion tokens are
    # audio; the catalog has no audio prices, so it is unpriced rather than priced as text
    Case("audio-chat", unpriced=Unpriced.NO_PRICE, response=True),
    # forward-request timed out: Azure may have billed it, the usage is unknown
    Case("gateway-timeout", unpriced=Unpriced.NO_USAGE, on_error=True),
    Case("missing-jwt-401", unpriced=Unpriced.NO_USAGE, on_error=True),
    Case("missing-subscription-401", unpriced=Unpriced.NO_USAGE, on_error=True),
]
DECODE_NOW = datetime(2026, 11, 30, tzinfo=UTC)
TIMESTAMP_7 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$")  # .NET DateTime.ToString("o"), UTC


def fixture_bytes(case: Case) -> bytes:
    return (EVENTS_DIR / f"{case.name}.json").read_bytes()


def fixture_event(case: Case) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(fixture_bytes(case))
    return event


def decode(case: Case) -> UsageEvent:
    batch = decode_batch([RawMessage(fixture_bytes(case), f"apim-fixture:{case.name}", "line 1")], now=DECODE_NOW)
    assert batch.rejections == [], batch.rejections
    (event,) = batch.events
    return event


@pytest.fixture(scope="module")
def reference() -> Reference:
    return load_reference(None, DEPLOYMENTS_CSV, None)


def price(event: UsageEvent, reference: Reference) -> tuple[Decimal | None, Unpriced | None]:
    usage = event.usage
    if usage is not None:
        state = UsageState.MEASURED
    else:
        state = UsageState.PENDING if event.usage_source == "stream" else UsageState.NONE
    key = UsageKey(event.timestamp.date(), event.subscription_id, event.cost_center, event.deployment, event.model,
                   state)
    resolution = reference.resolve(key)
    line = CostLine(key, resolution, 1, usage.prompt_tokens if usage else 0, usage.cached_tokens if usage else 0,
                    usage.completion_tokens if usage else 0, usage.reasoning_tokens if usage else 0)
    return line.cost, resolution.unpriced


def test_there_is_one_fixture_per_case_and_no_other() -> None:
    assert sorted(p.stem for p in EVENTS_DIR.glob("*.json")) == sorted(case.name for case in CASES)
    assert sorted(p.stem for p in RESPONSES_DIR.glob("*.json")) == sorted(c.name for c in CASES if c.response)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fixture_is_exactly_what_the_policy_writes(case: Case) -> None:
    raw = fixture_bytes(case).decode("utf-8")
    assert raw.endswith("\n") and "\n" not in raw[:-1], "one event, one line"
    event = fixture_event(case)
    # Newtonsoft's ToString(Formatting.None): compact, properties in the order the code adds them.
    assert raw[:-1] == json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    shape = emitted_shape(emit_expression().code)
    assert list(event) == shape.event
    if event["usage"] is not None:
        assert list(event["usage"]) == shape.usage
    assert TIMESTAMP_7.match(event["timestamp"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", event["eventId"])
    jsonschema.Draft202012Validator(load_schema()).validate(event)
    assert len(raw.encode()) < 2048


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fixture_follows_the_policys_rules(case: Case) -> None:
    event = fixture_event(case)
    status_ok = 200 <= event["statusCode"] < 300
    if case.response:
        body = json.loads((RESPONSES_DIR / f"{case.name}.json").read_text(encoding="utf-8"))
        assert event["usage"] == usage_from_response(body)
        reported = body.get("model")
        assert event["model"] == (reported if isinstance(reported, str) else None)
        assert event["usageSource"] == ("response" if event["usage"] else "none")
        assert "content" not in json.dumps(event), "no completion text, nor any field named like it"
        tier = body.get("service_tier")
        assert event["serviceTier"] == (tier.lower() if isinstance(tier, str) else None)
        assert event["serviceTierSource"] == ("response" if isinstance(tier, str) else None)
        assert event["spillover"] is False, "a recorded response without an x-ms-spillover-from- header"
    if event["stream"] and not case.response:
        assert status_ok and event["usage"] is None and event["model"] is None and event["usageSource"] == "stream"
    if case.on_error:
        assert event["usage"] is None and event["usageSource"] == "none" and event["model"] is None
        assert event["spillover"] is None, "no backend response"
        tags = event["tags"]
        timed_out = (tags["apimErrorSource"], tags["apimErrorReason"]) == ("forward-request", "Timeout")
        assert set(tags) == {"apimErrorSource", "apimErrorReason"} | ({"chargebackError"} if timed_out else set())
        assert event["tags"].get("chargebackError") == ("gateway-timeout" if timed_out else None)
    else:
        assert event["tags"] is None
    if not status_ok:
        assert event["usage"] is None and event["usageSource"] == "none"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fixture_decodes_and_prices_as_expected(case: Case, reference: Reference) -> None:
    event = decode(case)
    # Seven fractional digits (.NET ticks) are accepted and kept to the microsecond.
    sent = fixture_event(case)["timestamp"]
    whole = datetime.fromisoformat(sent[:19]).replace(tzinfo=UTC)
    exact = Decimal(int(whole.timestamp())) + Decimal("0." + sent[20:27])
    decoded = Decimal(int(event.timestamp.timestamp())) + Decimal(event.timestamp.microsecond) / 10**6
    assert event.timestamp.utcoffset() == timedelta(0)
    assert abs(decoded - exact) <= Decimal("0.0000005")
    cost, unpriced = price(event, reference)
    if case.cost is not None:
        assert unpriced is None
        assert cost == Decimal(case.cost)
    else:
        assert cost is None
        assert unpriced == case.unpriced
    charge = LivePricer(reference).charge(event)
    assert charge.priced == (case.cost is not None)


def test_missing_subscription_event_is_kept_and_attributed_to_no_subscription(reference: Reference) -> None:
    event = decode(CASES[-1])
    assert event.subscription_id == "(none)" and event.product_id is None and event.status_code == 401
    assert event.tags == {"apimErrorSource": "authorization", "apimErrorReason": "SubscriptionKeyNotFound"}
    assert price(event, reference) == (None, Unpriced.NO_USAGE)


def test_placeholders_in_the_fixtures_are_the_policys_own() -> None:
    """`(none)` for a request without a subscription, `(unknown)` for an unresolvable deployment:
    non-empty, as the schema requires, and the same text in the policy and the fixtures."""
    resolve = parse_policy(FRAGMENT_DIR / "chargeback-resolve-caller.xml")
    by_name = {e.get("name"): resolve.expression(e.get("value")) for e in resolve.root}
    subscription, deployment = by_name["chargeback-subscription-id"], by_name["chargeback-deployment"]
    assert subscription is not None and string_literals(subscription.code).count("(none)") == 2
    assert deployment is not None and string_literals(deployment.code).count("(unknown)") == 2
    emit = emit_expression().code
    assert 'GetValueOrDefault<string>("chargeback-subscription-id", "(none)")' in emit
    assert 'GetValueOrDefault<string>("chargeback-deployment", "(unknown)")' in emit
    assert fixture_event(CASES[-1])["subscriptionId"] == "(none)"


def test_embeddings_have_zero_completion_tokens() -> None:
    event = decode(next(c for c in CASES if c.name == "embeddings"))
    assert event.usage is not None and event.usage.completion_tokens == 0
    assert event.usage.total_tokens == event.usage.prompt_tokens


def test_audio_tokens_are_parts_of_the_prompt_and_completion_tokens() -> None:
    usage = decode(next(c for c in CASES if c.name == "audio-chat")).usage
    assert usage is not None
    assert (usage.audio_prompt_tokens, usage.prompt_tokens) == (1200, 1500)
    assert (usage.audio_completion_tokens, usage.completion_tokens) == (300, 400)


def test_cached_and_reasoning_tokens_are_subsets() -> None:
    cached = decode(next(c for c in CASES if c.name == "cached-prompt")).usage
    reasoning = decode(next(c for c in CASES if c.name == "reasoning")).usage
    assert cached is not None and cached.cached_tokens == 8192 <= cached.prompt_tokens
    assert reasoning is not None and reasoning.reasoning_tokens == 1900 <= reasoning.completion_tokens


# --------------------------------------------------------------------------------------------
# Running the policies' own code: tests/apim_csharp.py evaluates the C# expressions, and
# tests/apim_gateway.py walks the policy documents the way the gateway runs them
# --------------------------------------------------------------------------------------------


def csharp(code: str, **names: Any) -> Any:
    return run_expression(code, names, datetime_value(datetime(2026, 11, 3, tzinfo=UTC)))


def test_the_interpreter_follows_dotnet_for_the_members_the_policies_use() -> None:
    assert csharp('@("a,b,,c".Split(\',\').Length)') == 4
    assert csharp('@("  Mixed/Case/ ".Trim().TrimEnd(\'/\').ToLowerInvariant().Replace(\'/\', \'-\'))') == "mixed-case"
    assert csharp('@("abc".IndexOf("B", StringComparison.OrdinalIgnoreCase))') == 1
    assert csharp('@(string.CompareOrdinal("2024-10-21", "2024-09-01") > 0)') is True
    assert csharp('@{ JObject o = JObject.Parse("{\\"n\\":3,\\"s\\":\\"x\\"}"); '
                  'return (long)o["n"] + ((string)o["s"]).Length; }') == 4
    assert csharp('@(new JObject(new JProperty("a", 1L), new JProperty("b", null)).ToString(Formatting.None))') == \
        '{"a":1,"b":null}'
    assert csharp('@(JObject.Parse("{\\"d\\":\\"2026-11-03T09:14:27Z\\"}")["d"].Type == JTokenType.Date)') is True
    assert csharp("@{ bool? seen = null; return seen; }") is None


def test_dotnet_exceptions_are_caught_by_the_code_and_unknown_code_is_not() -> None:
    assert csharp('@{ try { return "abc".Substring(2, 5); } catch (Exception) { return "caught"; } }') == "caught"
    assert csharp('@{ try { return JObject.Parse("not json").Count; } catch (Exception) { return -1; } }') == -1
    assert csharp('@{ string s = null; try { return s.Length; } catch (Exception) { return 0; } }') == 0
    with pytest.raises(CSharpException, match="ArgumentOutOfRange"):
        csharp('@("abc".Substring(4))')
    with pytest.raises(InterpreterError, match=r"String\.PadLeft"):
        csharp('@{ try { return "a".PadLeft(3); } catch (Exception) { return ""; } }')
    with pytest.raises(InterpreterError, match="ended without return"):
        csharp("@{ int x = 1; }")


def test_the_simulated_gateway_runs_every_section_and_emits_a_decodable_event() -> None:
    response = (RESPONSES_DIR / "chat.json").read_text(encoding="utf-8")
    outcome = Gateway().send(
        Call("POST", "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
             json.dumps({"messages": [{"role": "user", "content": "MESSAGE-TEXT"}]}),
             {"Content-Type": "application/json"}, operation="ChatCompletions_Create"),
        azure_openai(Reply(200, {"Content-Type": "application/json"}, response)))
    assert outcome.forwarded is not None and outcome.forwarded.headers.get("api-key") is None
    assert outcome.forwarded.headers.get("Authorization") == "Bearer managed-identity-token"
    assert outcome.response_reads == 1
    ((_, message),) = outcome.events
    assert "MESSAGE-TEXT" not in message
    batch = decode_batch([RawMessage(message.encode(), "simulated", "1")], now=DECODE_NOW)
    assert batch.rejections == [] and len(batch.events) == 1
    event = outcome.event
    assert (event["deployment"], event["operationId"], event["usageSource"]) == (
        "gpt-4o-prod", "ChatCompletions_Create", "response")
    assert event["usage"]["promptTokens"] == 1200 and event["costCenter"] == "CC-1001-search"


def test_the_simulated_gateway_sends_a_refused_request_to_on_error() -> None:
    outcome = Gateway().send(Call("POST", "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
                                  "{}", {"Content-Type": "application/json"}, subscription=None))
    assert outcome.forwarded is None
    event = outcome.event
    assert (event["subscriptionId"], event["statusCode"], event["usageSource"]) == ("(none)", 401, "none")
    assert event["tags"] == {"apimErrorSource": "authorization", "apimErrorReason": "SubscriptionKeyNotFound"}



# --------------------------------------------------------------------------------------------
# Every Azure OpenAI data-plane route goes through the metering policy
# --------------------------------------------------------------------------------------------
# Routes: the 2024-10-21 inference spec's deployment routes (Azure/azure-rest-api-specs,
# specification/cognitiveservices/data-plane/AzureOpenAI/inference/stable/2024-10-21/inference.yaml),
# the v1 API (/openai/v1/..., https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle)
# and the Responses API (/openai/responses, /openai/responses/{response_id}). Terraform adds the
# wildcard operations wildcard-get, wildcard-post and wildcard-delete for what the spec lacks.

BOUNDARY = "chargeback-test-boundary"


def multipart(model: str | None, *, audio_bytes: int = 64) -> str:
    """A multipart/form-data audio upload the way SDKs send it (model first, then prompt, then the file)."""
    parts = []
    if model is not None:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n')
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nMESSAGE-TEXT\r\n')
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                 f'Content-Type: audio/wav\r\n\r\n{"R" * audio_bytes}\r\n--{BOUNDARY}--\r\n')
    return "".join(parts)


CHAT_RESPONSE = (RESPONSES_DIR / "chat.json").read_text(encoding="utf-8")
RESPONSES_RESPONSE = (RESPONSES_DIR / "responses.json").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Route:
    method: str
    url: str
    body: dict[str, Any] | str | None
    deployment: str
    operation_id: str
    injected: bool  # stream_options.include_usage added to the forwarded body
    usage_read: bool  # the response body is read for usage
    reply: Literal["json", "sse", "audio"] = "json"
    operation: str | None = None  # APIM's matched operation; default: the wildcard of the method

    def call(self) -> Call:
        headers = {}
        body: str | None = None
        if isinstance(self.body, dict):
            headers["Content-Type"] = "application/json"
            body = json.dumps(self.body)
        elif isinstance(self.body, str):
            headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
            body = self.body
        operation = self.operation or f"wildcard-{self.method.lower()}"
        return Call(self.method, self.url, body, headers, operation=operation)

    def backend(self) -> Reply:
        if self.reply == "sse":
            return Reply(200, {"Content-Type": "text/event-stream"}, "data: {}\n\n")
        if self.reply == "audio":
            return Reply(200, {"Content-Type": "audio/mpeg"}, "ID3...")
        return Reply(200, {"Content-Type": "application/json"},
                     RESPONSES_RESPONSE if "responses" in self.url else CHAT_RESPONSE)


MESSAGES = [{"role": "user", "content": "MESSAGE-TEXT"}]
DEPLOYMENT_URL = "/openai/deployments/{}/{}?api-version=2024-10-21"
RESPONSES_VERSION = "api-version=2025-04-01-preview"
ROUTES = [
    # deployment routes: the deployment is in the URL
    Route("POST", DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions"), {"messages": MESSAGES},
          "gpt-4o-prod", "chat-completions", injected=False, usage_read=True),
    Route("POST", DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions"), {"messages": MESSAGES, "stream": True},
          "gpt-4o-prod", "chat-completions", injected=True, usage_read=False, reply="sse"),
    Route("POST", DEPLOYMENT_URL.format("gpt-35-instruct", "completions"), {"prompt": "MESSAGE-TEXT", "stream": True},
          "gpt-35-instruct", "completions", injected=True, usage_read=False, reply="sse"),
    Route("POST", DEPLOYMENT_URL.format("text-embedding-3-small", "embeddings"), {"input": ["MESSAGE-TEXT"]},
          "text-embedding-3-small", "embeddings", injected=False, usage_read=True),
    Route("POST", DEPLOYMENT_URL.format("whisper", "audio/transcriptions"), multipart(None),
          "whisper", "audio-transcriptions", injected=False, usage_read=True),
    Route("POST", DEPLOYMENT_URL.format("whisper", "audio/translations"), multipart(None),
          "whisper", "audio-translations", injected=False, usage_read=True),
    Route("POST", DEPLOYMENT_URL.format("tts-hd", "audio/speech"), {"input": "MESSAGE-TEXT", "voice": "alloy"},
          "tts-hd", "audio-speech", injected=False, usage_read=False, reply="audio"),
    Route("POST", DEPLOYMENT_URL.format("dall-e-3", "images/generations"), {"prompt": "MESSAGE-TEXT"},
          "dall-e-3", "images-generations", injected=False, usage_read=True),
    # a spec operation keeps APIM's id
    Route("POST", DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions"), {"messages": MESSAGES},
          "gpt-4o-prod", "ChatCompletions_Create", injected=False, usage_read=True,
          operation="ChatCompletions_Create"),
    # v1 routes: the deployment is the body's model
    Route("POST", "/openai/v1/chat/completions", {"model": "gpt-4o-prod", "messages": MESSAGES, "stream": True},
          "gpt-4o-prod", "chat-completions", injected=True, usage_read=False, reply="sse"),
    Route("POST", "/openai/v1/chat/completions?api-version=preview", {"model": "gpt-4o-prod", "messages": MESSAGES},
          "gpt-4o-prod", "chat-completions", injected=False, usage_read=True),
    Route("POST", "/openai/v1/completions", {"model": "gpt-35-instruct", "prompt": "MESSAGE-TEXT", "stream": True},
          "gpt-35-instruct", "completions", injected=True, usage_read=False, reply="sse"),
    Route("POST", "/openai/v1/responses", {"model": "gpt-41-mini", "input": "MESSAGE-TEXT"},
          "gpt-41-mini", "responses", injected=False, usage_read=True),
    Route("POST", "/openai/v1/responses", {"model": "gpt-41-mini", "input": "MESSAGE-TEXT", "stream": True},
          "gpt-41-mini", "responses", injected=False, usage_read=False, reply="sse"),
    Route("POST", "/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "MESSAGE-TEXT"},
          "text-embedding-3-small", "embeddings", injected=False, usage_read=True),
    Route("POST", "/openai/v1/audio/transcriptions", multipart("whisper"),
          "whisper", "audio-transcriptions", injected=False, usage_read=True),
    Route("POST", "/openai/v1/audio/speech", {"model": "tts-hd", "input": "MESSAGE-TEXT", "voice": "alloy"},
          "tts-hd", "audio-speech", injected=False, usage_read=False, reply="audio"),
    Route("POST", "/openai/v1/images/generations", {"model": "dall-e-3", "prompt": "MESSAGE-TEXT"},
          "dall-e-3", "images-generations", injected=False, usage_read=True),
    # the Responses API with api-version
    Route("POST", f"/openai/responses?{RESPONSES_VERSION}", {"model": "gpt-41-mini", "input": "MESSAGE-TEXT"},
          "gpt-41-mini", "responses", injected=False, usage_read=True),
    Route("POST", f"/openai/responses?{RESPONSES_VERSION}",
          {"model": "gpt-41-mini", "input": "MESSAGE-TEXT", "stream": True},
          "gpt-41-mini", "responses", injected=False, usage_read=False, reply="sse"),
    # reading or deleting a stored response: its body repeats the usage, which must not count again
    Route("GET", f"/openai/responses/resp_67ccd2bed1ec8190?{RESPONSES_VERSION}", None,
          "(unknown)", "responses-get", injected=False, usage_read=False),
    Route("DELETE", f"/openai/responses/resp_67ccd2bed1ec8190?{RESPONSES_VERSION}", None,
          "(unknown)", "responses-delete", injected=False, usage_read=False),
    Route("GET", "/openai/v1/responses/resp_67ccd2bed1ec8190/input_items", None,
          "(unknown)", "responses-get", injected=False, usage_read=False),
    Route("GET", "/openai/v1/chat/completions/chatcmpl-AXb1c2d3e4f5", None,
          "(unknown)", "chat-completions-chatcmpl-axb1c2d3e4f5", injected=False, usage_read=False),
    # anything else: a name derived from the path
    Route("GET", "/openai/v1/models", None, "(unknown)", "models", injected=False, usage_read=False),
]


def route_outcome(gateway: Gateway, route: Route) -> tuple[dict[str, Any], bool, bool]:
    """(event, stream_options injected, response body read) for one route."""
    outcome = gateway.send(route.call(), azure_openai(route.backend()))
    assert outcome.forwarded is not None
    forwarded = outcome.forwarded.body
    injected = forwarded is not None and forwarded.lstrip().startswith("{") and \
        json.loads(forwarded).get("stream_options", {}).get("include_usage") is True
    return outcome.event, injected, outcome.response_reads > 0


def route_problems(gateway: Gateway, routes: list[Route] = ROUTES) -> list[str]:
    problems = []
    for route in routes:
        event, injected, read = route_outcome(gateway, route)
        got = (event["deployment"], event["operationId"], injected, read)
        wanted = (route.deployment, route.operation_id, route.injected, route.usage_read)
        if got != wanted:
            problems.append(f"{route.method} {route.url}: (deployment, operationId, injected, read) = {got}, "
                            f"expected {wanted}")
        if read != (event["usageSource"] == "response") and route.reply == "json" and "usage" in route.backend().body:
            problems.append(f"{route.method} {route.url}: usage read but usageSource {event['usageSource']}")
        if not read and event["usage"] is not None:
            problems.append(f"{route.method} {route.url}: usage written without reading the response")
    return problems


def test_every_data_plane_route_is_metered_with_its_deployment_and_operation() -> None:
    assert route_problems(Gateway()) == []


def test_the_route_table_covers_every_route_named_in_the_brief() -> None:
    operations = {route.operation_id for route in ROUTES}
    assert {"chat-completions", "completions", "embeddings", "responses", "audio-transcriptions",
            "audio-translations", "audio-speech", "images-generations"} <= operations
    prefixes = {route.url.split("?")[0].split("/")[2] for route in ROUTES}
    assert prefixes == {"deployments", "v1", "responses"}
    assert {route.method for route in ROUTES} == {"GET", "POST", "DELETE"}


def resolve_text(old: str, new: str) -> dict[str, str]:
    path = FRAGMENT_DIR / "chargeback-resolve-caller.xml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    return {path.name: text.replace(old, new)}


def test_a_wildcard_operation_id_left_in_the_event_fails_the_route_check() -> None:
    gateway = Gateway(resolve_text('id.StartsWith("wildcard-", StringComparison.OrdinalIgnoreCase)', "false"))
    problems = route_problems(gateway)
    assert any("'wildcard-post'" in p and "chat-completions" in p for p in problems)
    assert not any("ChatCompletions_Create" in p for p in problems)


def test_reading_every_json_response_fails_the_route_check() -> None:
    """Without the metered guard (the policy before the Responses API routes), a GET of a stored
    response is read and its usage counted a second time."""
    text = EMIT_FRAGMENT.read_text(encoding="utf-8")
    unguarded = text.replace("if (inOutbound && json && metered && context.Response.Body != null)",
                             "if (inOutbound && json && context.Response.Body != null)")
    assert unguarded != text
    problems = route_problems(Gateway({EMIT_FRAGMENT.name: unguarded}))
    assert any(p.startswith("GET /openai/responses/resp_") and "True)" in p for p in problems)
    assert all(p.startswith(("GET ", "DELETE ")) for p in problems)


def test_a_v1_route_without_the_body_model_fallback_fails_the_route_check() -> None:
    gateway = Gateway(resolve_text('return name.Length > 0 ? name : "(unknown)";', 'return "(unknown)";'))
    problems = route_problems(gateway)
    assert any(p.startswith("POST /openai/v1/chat/completions") for p in problems)
    assert not any(p.startswith("POST /openai/deployments/") for p in problems)


def test_a_long_path_gives_an_operation_name_of_at_most_256_characters() -> None:
    route = Route("GET", "/openai/v1/" + "/".join(["Segment"] * 60), None, "(unknown)", "", False, False)
    event, _, _ = route_outcome(Gateway(), route)
    assert event["operationId"] == "-".join(["segment"] * 60)[:256]


@pytest.mark.parametrize(("length", "deployment"), [(1024, "whisper"), (5 * 1024 * 1024, "(unknown)")])
def test_a_multipart_v1_upload_is_read_for_its_model_only_up_to_4_mib(length: int, deployment: str) -> None:
    route = Route("POST", "/openai/v1/audio/transcriptions", multipart("whisper", audio_bytes=length), deployment,
                  "audio-transcriptions", injected=False, usage_read=True)
    outcome = Gateway().send(route.call(), azure_openai(route.backend()))
    assert outcome.event["deployment"] == deployment
    assert outcome.request_reads == (1 if length < 4 * 1024 * 1024 else 0)
    assert "MESSAGE-TEXT" not in outcome.events[0][1]


# --------------------------------------------------------------------------------------------
# stream_options.include_usage only where the API version accepts it
# --------------------------------------------------------------------------------------------
# stream_options and include_usage were added in 2024-09-01-preview
# (https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle, "Changes between
# 2024-09-01-preview and 2024-08-01-preview"); the 2024-10-21 GA spec has them on chat completions
# and completions (inference/stable/2024-10-21/inference.yaml); earlier versions answered 400
# (openai/openai-python#1469 with 2023-05-15, Azure/azure-rest-api-specs#29157 with
# 2024-05-01-preview; griptape-ai/griptape#1640: works with 2024-10-21).

STREAMED_CHAT = json.dumps({"messages": MESSAGES, "stream": True})
# (url, injected)
INJECTION = [
    *[(DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions").replace("2024-10-21", version), False)
      for version in ("2023-05-15", "2024-02-01", "2024-05-01-preview", "2024-06-01", "2024-07-01-preview",
                      "2024-08-01-preview", "latest", "preview", "", "2024-9-1", "garbage-2025-01-01")],
    *[(DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions").replace("2024-10-21", version), True)
      for version in ("2024-09-01-preview", "2024-10-01-preview", "2024-10-21", "2024-12-01-preview",
                      "2025-04-01-preview", "2026-01-01")],
    ("/openai/deployments/gpt-4o-prod/chat/completions", False),  # no api-version at all
    (DEPLOYMENT_URL.format("gpt-35-instruct", "completions").replace("2024-10-21", "2024-06-01"), False),
    (DEPLOYMENT_URL.format("gpt-35-instruct", "completions"), True),
    ("/openai/v1/chat/completions", True),
    ("/openai/v1/chat/completions?api-version=preview", True),
    ("/openai/v1/chat/completions?api-version=latest", True),
    ("/openai/v1/completions", True),
    (f"/openai/responses?{RESPONSES_VERSION}", False),
    ("/openai/v1/responses", False),
    (DEPLOYMENT_URL.format("text-embedding-3-small", "embeddings"), False),
]


def injection_problems(gateway: Gateway) -> list[str]:
    problems = []
    for url, wanted in INJECTION:
        body = json.dumps({"model": "gpt-4o-prod", "messages": MESSAGES, "stream": True})
        outcome = gateway.send(Call("POST", url, body, {"Content-Type": "application/json"}),
                               azure_openai(Reply(200, {"Content-Type": "text/event-stream"}, "data: {}\n\n")))
        assert outcome.forwarded is not None and outcome.forwarded.body is not None
        injected = json.loads(outcome.forwarded.body).get("stream_options") == {"include_usage": True}
        if injected != wanted:
            problems.append(f"{url}: injected {injected}, expected {wanted}")
        if not injected and outcome.forwarded.body != body:
            problems.append(f"{url}: the body was changed without injecting")
    return problems


def test_stream_options_are_added_only_for_api_versions_that_accept_them() -> None:
    assert injection_problems(Gateway()) == []


def test_the_gate_is_the_documented_date_and_a_v1_route() -> None:
    resolve = parse_policy(FRAGMENT_DIR / "chargeback-resolve-caller.xml")
    gate = next(resolve.expression(e.get("value")) for e in resolve.root
                if e.get("name") == "chargeback-stream-options-accepted")
    assert gate is not None
    assert string_literals(gate.code).count("2024-09-01") == 1 and '"/openai/v1/"' in gate.code


@pytest.mark.parametrize(("old", "new", "wrong"), [
    ('"2024-09-01") >= 0', '"2024-06-01") >= 0', "2024-06-01: injected True"),
    ("!included && accepted;", "!included;", "2024-06-01: injected True"),
    ('if (path.IndexOf("/openai/v1/", StringComparison.OrdinalIgnoreCase) >= 0) { return true; }', "",
     "/openai/v1/chat/completions: injected False"),
    ('bool completions = route == "chat-completions" || route == "completions";',
     'bool completions = route.Length > 0;', "/openai/v1/responses: injected True"),
], ids=["cut-at-2024-06-01", "no-version-gate", "v1-not-accepted", "responses-injected"])
def test_injecting_where_the_version_refuses_it_fails_the_check(old: str, new: str, wrong: str) -> None:
    problems = injection_problems(Gateway(resolve_text(old, new)))
    assert any(wrong in p for p in problems), problems


def test_the_rewrite_keeps_every_other_byte_and_the_callers_own_stream_options() -> None:
    url = DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions")
    reply = azure_openai(Reply(200, {"Content-Type": "text/event-stream"}, "data: {}\n\n"))
    sent = '{ "messages" : [ {"role":"user","content":"MESSAGE-TEXT"} ],\n "stream": true }'
    forwarded = Gateway().send(Call("POST", url, sent, {"Content-Type": "application/json"}), reply).forwarded
    assert forwarded is not None and forwarded.body == '{"stream_options":{"include_usage":true},' + sent[1:]
    own = json.dumps({"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": False, "x": 1}})
    forwarded = Gateway().send(Call("POST", url, own, {"Content-Type": "application/json"}), reply).forwarded
    assert forwarded is not None and forwarded.body is not None
    assert json.loads(forwarded.body)["stream_options"] == {"include_usage": True, "x": 1}
    old = url.replace("2024-10-21", "2024-06-01")
    forwarded = Gateway().send(Call("POST", old, own, {"Content-Type": "application/json"}), reply).forwarded
    assert forwarded is not None and forwarded.body == own



# --------------------------------------------------------------------------------------------
# Compression and timeouts
# --------------------------------------------------------------------------------------------
# APIM's transformation policies read gzip-compressed bodies only (MicrosoftDocs/azure-docs#59837);
# forward-request's timeout is the wait for the response headers, "values greater than 240
# seconds may not be honored" (https://learn.microsoft.com/azure/api-management/forward-request-policy);
# a timeout reaches on-error as Source forward-request, Reason Timeout ("Predefined errors for
# policies", https://learn.microsoft.com/azure/api-management/api-management-error-handling-policies).

FORWARD_REQUEST_MAX_HONORED_TIMEOUT = 240


def backend_problems(document: PolicyDocument) -> list[str]:
    """The backend's forward-request has an explicit timeout the gateway honors, and inbound asks
    for an encoding APIM can read (a set-header Accept-Encoding, override) for non-streamed calls."""
    problems = []
    forward = document.root.find("backend/forward-request")
    timeout = forward.get("timeout") if forward is not None else None
    if timeout is None or not timeout.isdigit() or not 0 < int(timeout) <= FORWARD_REQUEST_MAX_HONORED_TIMEOUT:
        problems.append(f"forward-request timeout {timeout!r}: set it, at most {FORWARD_REQUEST_MAX_HONORED_TIMEOUT} s")
    headers = [e for e in document.root.iter("set-header") if (e.get("name") or "").lower() == "accept-encoding"]
    if len(headers) != 1 or headers[0].get("exists-action") != "override":
        problems.append("inbound does not override Accept-Encoding")
    return problems


@pytest.mark.parametrize(("old", "new", "problem"), [
    ('<forward-request timeout="240" ', "<forward-request ", "forward-request timeout None"),
    ('<forward-request timeout="240" ', '<forward-request timeout="300" ', "forward-request timeout '300'"),
    ('<set-header name="Accept-Encoding" exists-action="override">', '<set-header name="Accept-Encoding" '
     'exists-action="skip">', "inbound does not override Accept-Encoding"),
])
def test_a_missing_or_unhonored_timeout_or_encoding_fails_the_check(old: str, new: str, problem: str) -> None:
    text = API_POLICY.read_text(encoding="utf-8")
    assert text.count(old) == 1
    problems = backend_problems(parse_policy(API_POLICY, text.replace(old, new)))
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(("sent", "forwarded"), [
    ("gzip, deflate, br", "gzip"), ("br, zstd", "identity"), (None, "identity"), ("identity", "identity"),
    ("*", "gzip"), ("gzip;q=0, *", "identity"), ("br;q=1.0, gzip;q=0.5", "gzip"), ("x-gzip", "gzip"),
    ("GZIP", "gzip"), ("gzip; q=0.000", "identity"), ("*;q=0", "identity"),
])
def test_a_non_streamed_call_asks_for_gzip_only_when_the_caller_accepts_it(sent: str | None, forwarded: str) -> None:
    headers = {"Content-Type": "application/json"} | ({"Accept-Encoding": sent} if sent is not None else {})
    call = Call("POST", DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions"),
                json.dumps({"messages": MESSAGES}), headers)
    outcome = Gateway().send(call, azure_openai(Reply(200, {"Content-Type": "application/json"}, CHAT_RESPONSE)))
    assert outcome.forwarded is not None and outcome.forwarded.headers.get("Accept-Encoding") == forwarded
    assert outcome.event["usageSource"] == "response", "a gzip or uncompressed response is read"


@pytest.mark.parametrize("sent", ["gzip, deflate, br", None])
def test_a_streamed_call_keeps_the_callers_accept_encoding(sent: str | None) -> None:
    headers = {"Content-Type": "application/json"} | ({"Accept-Encoding": sent} if sent is not None else {})
    outcome = Gateway().send(Call("POST", DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions"), STREAMED_CHAT,
                                  headers),
                             azure_openai(Reply(200, {"Content-Type": "text/event-stream"}, "data: {}\n\n")))
    assert outcome.forwarded is not None and outcome.forwarded.headers.get("Accept-Encoding") == sent


def test_without_the_accept_encoding_override_a_brotli_response_loses_its_usage() -> None:
    text = API_POLICY.read_text(encoding="utf-8")
    start = text.index("        <choose>\n            <when condition=\"@(!context.Variables.GetValueOrDefault<bool>")
    end = text.index("        </choose>\n", start) + len("        </choose>\n")
    call = Call("POST", DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions"), json.dumps({"messages": MESSAGES}),
                {"Content-Type": "application/json", "Accept-Encoding": "gzip, deflate, br"})
    backend = azure_openai(Reply(200, {"Content-Type": "application/json"}, CHAT_RESPONSE))
    without = Gateway({API_POLICY.name: text[:start] + text[end:]}).send(call, backend)
    assert without.event["usage"] is None and without.event["usageSource"] == "none"
    assert Gateway().send(call, backend).event["usageSource"] == "response"


def timeout_event(texts: dict[str, str] | None = None,
                  on_error_response: Literal["synthetic", "none"] = "synthetic") -> dict[str, Any]:
    call = Call("POST", DEPLOYMENT_URL.format("o4-mini", "chat/completions"), json.dumps({"messages": MESSAGES}),
                {"Content-Type": "application/json"})
    outcome = Gateway(texts).send(call, azure_openai(Reply(timeout=True)), on_error_response=on_error_response)
    assert outcome.last_error is not None and outcome.last_error.Section == "backend"
    return outcome.event


@pytest.mark.parametrize("on_error_response", ["synthetic", "none"])
def test_a_forward_request_timeout_is_emitted_as_billed_by_azure_usage_unknown(
        on_error_response: Literal["synthetic", "none"]) -> None:
    event = timeout_event(on_error_response=on_error_response)
    assert event["tags"] == {"apimErrorSource": "forward-request", "apimErrorReason": "Timeout",
                             "chargebackError": "gateway-timeout"}
    assert event["usage"] is None and event["usageSource"] == "none" and event["deployment"] == "o4-mini"
    batch = decode_batch([RawMessage(json.dumps(event).encode(), "simulated", "1")], now=DECODE_NOW)
    assert batch.rejections == []


def test_other_errors_get_no_chargeback_error_tag() -> None:
    refused = Gateway().send(Call("POST", DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions"), "{}",
                                  {"Content-Type": "application/json"}, subscription=None))
    assert "chargebackError" not in refused.event["tags"]


def test_a_timeout_tag_on_the_wrong_error_source_fails_the_check() -> None:
    text = EMIT_FRAGMENT.read_text(encoding="utf-8")
    wrong = text.replace('source.Equals("forward-request", StringComparison.OrdinalIgnoreCase)',
                         'source.Equals("send-request", StringComparison.OrdinalIgnoreCase)')
    assert wrong != text
    assert "chargebackError" not in timeout_event({EMIT_FRAGMENT.name: wrong})["tags"]


# --------------------------------------------------------------------------------------------
# serviceTier, spillover and audio tokens, as the policy writes them
# --------------------------------------------------------------------------------------------


def schema_problems(event: dict[str, Any]) -> list[str]:
    """The event against the JSON Schema and the decoder (which also checks the consistency rules)."""
    problems = [error.message for error in jsonschema.Draft202012Validator(load_schema()).iter_errors(event)]
    batch = decode_batch([RawMessage(json.dumps(event).encode(), "simulated", "1")], now=DECODE_NOW)
    problems += [str(rejection) for rejection in batch.rejections]
    return problems


def chat_call(body: dict[str, Any], **headers: str) -> Call:
    return Call("POST", DEPLOYMENT_URL.format("gpt-41-dz", "chat/completions"), json.dumps(body),
                {"Content-Type": "application/json", **headers})


def with_tier(response: str, tier: Any) -> str:
    body = json.loads(response)
    body["service_tier"] = tier
    return json.dumps(body)


JSON_REPLY = {"Content-Type": "application/json"}
SSE_REPLY = {"Content-Type": "text/event-stream"}
LONG_TIER = "Priority-" + "x" * 100


@pytest.mark.parametrize(("request_tier", "reply", "tier", "source"), [
    (None, Reply(200, JSON_REPLY, with_tier(CHAT_RESPONSE, "Priority")), "priority", "response"),
    ("priority", Reply(200, JSON_REPLY, with_tier(CHAT_RESPONSE, "default")), "default", "response"),
    ("priority", Reply(200, JSON_REPLY, CHAT_RESPONSE), None, None),  # not a stream: the response decides
    (None, Reply(200, JSON_REPLY, with_tier(CHAT_RESPONSE, "")), None, None),
    (None, Reply(200, JSON_REPLY, with_tier(CHAT_RESPONSE, 3)), None, None),
    (None, Reply(200, JSON_REPLY, with_tier(CHAT_RESPONSE, LONG_TIER)), LONG_TIER.lower()[:64], "response"),
    (None, Reply(200, JSON_REPLY, RESPONSES_RESPONSE), "default", "response"),
    (" Priority ", Reply(200, SSE_REPLY, "data: {}\n\n"), "priority", "request"),
    (LONG_TIER, Reply(200, SSE_REPLY, "data: {}\n\n"), LONG_TIER.lower()[:64], "request"),
    (None, Reply(200, SSE_REPLY, "data: {}\n\n"), None, None),
    ("auto", Reply(timeout=True), "auto", "request"),  # a stream that timed out: what it asked for
], ids=["response", "response-wins", "request-ignored-unstreamed", "empty", "not-a-string", "long", "responses-api",
        "stream", "stream-long", "stream-none", "stream-timeout"])
def test_the_service_tier_is_the_responses_else_for_a_stream_the_requests(
        request_tier: str | None, reply: Reply, tier: str | None, source: str | None) -> None:
    body: dict[str, Any] = {"messages": MESSAGES}
    if reply.timeout or "event-stream" in reply.headers.get("Content-Type", ""):
        body["stream"] = True
    if request_tier is not None:
        body["service_tier"] = request_tier
    event = Gateway().send(chat_call(body), azure_openai(reply)).event
    assert (event["serviceTier"], event["serviceTierSource"]) == (tier, source)
    assert schema_problems(event) == []


def test_a_service_tier_longer_than_the_schema_allows_fails_the_schema_check() -> None:
    text = EMIT_FRAGMENT.read_text(encoding="utf-8")
    unbounded = text.replace("if (named.Length > 64) { named = named.Substring(0, 64); }", "")
    assert unbounded != text
    outcome = Gateway({EMIT_FRAGMENT.name: unbounded}).send(
        chat_call({"messages": MESSAGES}), azure_openai(Reply(200, JSON_REPLY, with_tier(CHAT_RESPONSE, LONG_TIER))))
    assert any("is too long" in p for p in schema_problems(outcome.event))


@pytest.mark.parametrize(("headers", "content_type", "spillover"), [
    ({"x-ms-spillover-from-gpt-41-ptu": "gpt-41-ptu", "x-ms-deployment-name": "gpt-41-paygo"}, JSON_REPLY, True),
    ({"X-MS-Spillover-From-Deployment": "gpt-41-ptu"}, JSON_REPLY, True),
    ({"x-ms-spillover-from-gpt-41-ptu": "gpt-41-ptu"}, SSE_REPLY, True),
    ({"x-ms-deployment-name": "gpt-41-ptu", "x-ms-spillover-error": "429"}, JSON_REPLY, False),
    ({}, JSON_REPLY, False),
], ids=["spilled", "header-case", "stream", "spillover-failed", "none"])
def test_spillover_is_whether_the_backend_response_named_a_spillover(
        headers: dict[str, str], content_type: dict[str, str], spillover: bool) -> None:
    stream = "event-stream" in content_type["Content-Type"]
    body = {"messages": MESSAGES, "stream": stream}
    outcome = Gateway().send(chat_call(body), azure_openai(
        Reply(200, content_type | headers, "data: {}\n\n" if stream else CHAT_RESPONSE)))
    assert outcome.event["spillover"] is spillover
    assert outcome.response_reads == (0 if stream else 1), "headers only: a stream's body is never read"


@pytest.mark.parametrize("on_error_response", ["synthetic", "none"])
def test_spillover_is_null_without_a_backend_response(on_error_response: Literal["synthetic", "none"]) -> None:
    refused = Gateway().send(Call("POST", DEPLOYMENT_URL.format("gpt-4o-prod", "chat/completions"), "{}",
                                  {"Content-Type": "application/json"}, subscription=None),
                             on_error_response=on_error_response)
    assert refused.event["spillover"] is None
    assert timeout_event(on_error_response=on_error_response)["spillover"] is None


def test_an_error_raised_in_outbound_keeps_the_backend_responses_spillover() -> None:
    """on-error after the backend answered (an outbound failure) still sees the backend's headers."""
    text = API_POLICY.read_text(encoding="utf-8")
    failure = '        <set-variable name="x" value="@(int.Parse("x"))" />\n'
    failing = text.replace("    <outbound>\n", "    <outbound>\n" + failure)
    assert failing != text
    outcome = Gateway({API_POLICY.name: failing}).send(chat_call({"messages": MESSAGES}), azure_openai(
        Reply(200, JSON_REPLY | {"x-ms-spillover-from-gpt-41-ptu": "gpt-41-ptu"}, CHAT_RESPONSE)))
    assert outcome.last_error is not None and outcome.last_error.Section == "outbound"
    event = outcome.event
    assert event["spillover"] is True and event["usageSource"] == "none" and event["statusCode"] == 200
    assert schema_problems(event) == []


def test_a_spillover_ignoring_where_the_error_happened_fails_the_check() -> None:
    text = EMIT_FRAGMENT.read_text(encoding="utf-8")
    careless = text.replace(' && (inOutbound || failedIn.Equals("outbound", StringComparison.OrdinalIgnoreCase))', "")
    assert careless != text
    assert timeout_event({EMIT_FRAGMENT.name: careless})["spillover"] is False, "false instead of null"


def test_audio_tokens_come_from_the_usage_details_and_are_zero_otherwise() -> None:
    audio = (RESPONSES_DIR / "audio-chat.json").read_text(encoding="utf-8")
    event = Gateway().send(chat_call({"messages": MESSAGES, "modalities": ["text", "audio"]}),
                           azure_openai(Reply(200, JSON_REPLY, audio))).event
    assert {k: event["usage"][k] for k in ("promptTokens", "audioPromptTokens", "completionTokens",
                                           "audioCompletionTokens")} == {
        "promptTokens": 1500, "audioPromptTokens": 1200, "completionTokens": 400, "audioCompletionTokens": 300}
    assert schema_problems(event) == []
    plain = Gateway().send(chat_call({"messages": MESSAGES}), azure_openai(Reply(200, JSON_REPLY, RESPONSES_RESPONSE)))
    assert (plain.event["usage"]["audioPromptTokens"], plain.event["usage"]["audioCompletionTokens"]) == (0, 0)


def test_no_prompt_completion_or_audio_content_reaches_the_event() -> None:
    audio = (RESPONSES_DIR / "audio-chat.json").read_text(encoding="utf-8")
    body = {"messages": MESSAGES, "service_tier": "priority", "stream": False}
    outcome = Gateway().send(chat_call(body), azure_openai(Reply(200, JSON_REPLY, audio)))
    message = outcome.events[0][1]
    assert "MESSAGE-TEXT" not in message and "never logged" not in message
