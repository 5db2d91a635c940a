"""The APIM policies (apim_policies/) checked without an APIM runtime: statically against the APIM
policy reference, and with recorded events against the pipeline's own decoder and pricing.

What only a live APIM can confirm is listed in apim_policies/README.md ("Checked only against the
documentation"). The tables below are built from these Microsoft Learn pages (read 2026-11):

- policy expressions, allowed .NET types and the context variable:
  https://learn.microsoft.com/azure/api-management/api-management-policy-expressions
- policy sections and attributes: the reference page of each policy, e.g.
  https://learn.microsoft.com/azure/api-management/log-to-eventhub-policy
- policies allowed in on-error:
  https://learn.microsoft.com/azure/api-management/api-management-error-handling-policies
- policy fragments (root <fragment>, no sections, no <base/>, no nested fragments):
  https://learn.microsoft.com/azure/api-management/policy-fragments
"""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
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

REPO = Path(__file__).resolve().parent.parent
POLICY_DIR = REPO / "apim_policies"
API_POLICY = POLICY_DIR / "openai-api.policy.xml"
FRAGMENT_DIR = POLICY_DIR / "fragments"
EMIT_FRAGMENT = FRAGMENT_DIR / "chargeback-emit-usage.xml"
README = POLICY_DIR / "README.md"
SCHEMA_PATH = REPO / "schemas" / "usage-event.v1.schema.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "apim"
EVENTS_DIR = FIXTURES / "events"
RESPONSES_DIR = FIXTURES / "responses"
DEPLOYMENTS_CSV = FIXTURES / "deployments.csv"

SECTIONS = ("inbound", "backend", "outbound", "on-error")


def policy_files() -> list[Path]:
    return [API_POLICY, *sorted(FRAGMENT_DIR.glob("*.xml"))]


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


# --------------------------------------------------------------------------------------------
# Masking policy expressions the way APIM's parser reads them
# --------------------------------------------------------------------------------------------
# APIM reads an attribute value or an element's text that starts with @( or @{ as a C# policy
# expression, up to its balanced closing bracket; the rest of the document is XML. Expressions
# are written raw (as in the policy reference's own examples and in APIM's "rawxml" format):
# they may contain ", <, >, && and generics, which would not be well-formed XML. The masker finds
# each expression's extent with a small C# lexer (strings, verbatim strings, char literals and
# comments are skipped while counting brackets) and replaces it with a placeholder.

PLACEHOLDER = "__APIM_EXPRESSION_{}__"


class MaskError(ValueError):
    """The document has an expression whose extent cannot be determined."""


@dataclass(frozen=True)
class Expression:
    placeholder: str
    code: str  # the whole expression, @( ... ) or @{ ... }
    kind: Literal["attribute", "text"]
    line: int

    @property
    def body(self) -> str:
        """The C# inside the outer brackets."""
        return self.code[2:-1]


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def literal_end(text: str, k: int) -> tuple[int, Literal["string", "char", "comment"]] | None:
    """When a C# string, verbatim string, char literal or comment starts at k: the index just past
    it and its kind; None otherwise."""
    n = len(text)
    c = text[k]
    nxt = text[k + 1] if k + 1 < n else ""
    if c == "$" and nxt in ('"', "@"):
        raise MaskError(f"line {_line(text, k)}: interpolated strings are not supported here")
    if c == "@" and nxt == '"':  # verbatim string: "" is an escaped quote
        j = k + 2
        while j < n:
            if text[j] == '"':
                if text[j + 1 : j + 2] == '"':
                    j += 2
                    continue
                return j + 1, "string"
            j += 1
        raise MaskError(f"line {_line(text, k)}: unterminated verbatim string")
    if c == '"':  # regular string: backslash escapes, no line break
        j = k + 1
        while j < n and text[j] != "\n":
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == '"':
                return j + 1, "string"
            j += 1
        raise MaskError(f"line {_line(text, k)}: unterminated string literal")
    if c == "'":  # char literal: 'x', '\'' or '\u0041'
        j = text.find("'", k + 3) if nxt == "\\" else k + 2
        if j < 0 or j >= n or text[j] != "'" or "\n" in text[k:j]:
            raise MaskError(f"line {_line(text, k)}: unterminated char literal")
        return j + 1, "char"
    if c == "/" and nxt == "/":
        newline = text.find("\n", k)
        return (n if newline < 0 else newline), "comment"
    if c == "/" and nxt == "*":
        end = text.find("*/", k + 2)
        if end < 0:
            raise MaskError(f"line {_line(text, k)}: unterminated comment")
        return end + 2, "comment"
    return None


def expression_end(text: str, at: int) -> int:
    """Index just past the expression starting at `at` (which holds the '@' of '@(' or '@{')."""
    opener = text[at + 1]
    closer = {"(": ")", "{": "}"}[opener]
    depth = 0
    k = at + 1
    while k < len(text):
        literal = literal_end(text, k)
        if literal is not None:
            k = literal[0]
            continue
        if text[k] == opener:
            depth += 1
        elif text[k] == closer:
            depth -= 1
            if depth == 0:
                return k + 1
        k += 1
    raise MaskError(f"line {_line(text, at)}: expression is not closed")


def blank_literals(code: str, *, comments: bool = True) -> str:
    """The same code, same length and lines, with the inside of every string and char literal (and
    every comment, unless comments=False) replaced by spaces: what is left is C# structure."""
    out = list(code)
    k = 0
    while k < len(code):
        literal = literal_end(code, k)
        if literal is None:
            k += 1
            continue
        end, kind = literal
        if kind != "comment" or comments:
            first, last = (k, end) if kind == "comment" else (k + 1 + (code[k] == "@"), end - 1)
            for index in range(first, last):
                if out[index] != "\n":
                    out[index] = " "
        k = end
    return "".join(out)


def mask_expressions(text: str) -> tuple[str, dict[str, Expression]]:
    """The document with each policy expression replaced by a placeholder, and the expressions."""
    out: list[str] = []
    expressions: dict[str, Expression] = {}
    last = 0  # text[last:] is not yet copied to out
    i = 0
    n = len(text)

    def take(start: int, end: int, kind: Literal["attribute", "text"]) -> None:
        nonlocal last
        placeholder = PLACEHOLDER.format(len(expressions))
        expressions[placeholder] = Expression(placeholder, text[start:end], kind, _line(text, start))
        out.append(text[last:start])
        out.append(placeholder)
        last = end

    while i < n:
        if text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            if end < 0:
                raise MaskError(f"line {_line(text, i)}: unterminated XML comment")
            i = end + 3
        elif text.startswith("<![CDATA[", i):
            end = text.find("]]>", i)
            if end < 0:
                raise MaskError(f"line {_line(text, i)}: unterminated CDATA section")
            i = end + 3
        elif text.startswith("<?", i):
            end = text.find("?>", i)
            if end < 0:
                raise MaskError(f"line {_line(text, i)}: unterminated processing instruction")
            i = end + 2
        elif text[i] == "<":  # a tag: attribute values may start with an expression
            k = i + 1
            while k < n and text[k] != ">":
                if text[k] in "\"'":
                    quote = text[k]
                    start = k + 1
                    if text.startswith(("@(", "@{"), start):
                        end = expression_end(text, start)
                        if end >= n or text[end] != quote:
                            raise MaskError(f"line {_line(text, end)}: attribute value goes on after its "
                                            "expression")
                        take(start, end, "attribute")
                        k = end
                    else:
                        close = text.find(quote, start)
                        if close < 0:
                            raise MaskError(f"line {_line(text, k)}: unterminated attribute value")
                        k = close
                k += 1
            i = k + 1
        else:  # element text: an expression when it starts (after blanks) with @( or @{
            k = i
            while k < n and text[k] in " \t\r\n":
                k += 1
            if text.startswith(("@(", "@{"), k):
                end = expression_end(text, k)
                take(k, end, "text")
                rest = end
                while rest < n and text[rest] in " \t\r\n":
                    rest += 1
                if rest < n and text[rest] != "<":
                    raise MaskError(f"line {_line(text, rest)}: element text goes on after its expression")
                i = rest
            else:
                lt = text.find("<", i)
                i = n if lt < 0 else lt
    out.append(text[last:])
    return "".join(out), expressions


@dataclass
class PolicyDocument:
    path: Path
    text: str
    root: ET.Element
    expressions: dict[str, Expression]

    def expression(self, value: str | None) -> Expression | None:
        return self.expressions.get((value or "").strip())


def parse_policy(path: Path, text: str | None = None) -> PolicyDocument:
    raw = path.read_text(encoding="utf-8") if text is None else text
    masked, expressions = mask_expressions(raw)
    return PolicyDocument(path, raw, ET.fromstring(masked), expressions)


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


# --------------------------------------------------------------------------------------------
# Well-formed, real policy elements, in allowed sections
# --------------------------------------------------------------------------------------------

ALL_SECTIONS = frozenset(SECTIONS)


@dataclass(frozen=True)
class PolicySpec:
    """One policy as the reference describes it."""

    sections: frozenset[str]
    url: str
    attributes: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    no_expressions: frozenset[str] = frozenset()  # attributes where expressions aren't allowed
    children: tuple[str, ...] = ()  # allowed child elements, in the documented order
    text: bool = False  # takes text (an expression or a literal)


LEARN = "https://learn.microsoft.com/azure/api-management/"
POLICIES: dict[str, PolicySpec] = {
    "base": PolicySpec(ALL_SECTIONS, LEARN + "api-management-howto-policies"),
    "choose": PolicySpec(ALL_SECTIONS, LEARN + "choose-policy", children=("when", "otherwise")),
    "set-variable": PolicySpec(ALL_SECTIONS, LEARN + "set-variable-policy", frozenset({"name", "value"}),
                               frozenset({"name", "value"}), frozenset({"name"})),
    "include-fragment": PolicySpec(ALL_SECTIONS, LEARN + "include-fragment-policy", frozenset({"fragment-id"}),
                                   frozenset({"fragment-id"}), frozenset({"fragment-id"})),
    "log-to-eventhub": PolicySpec(ALL_SECTIONS, LEARN + "log-to-eventhub-policy",
                                  frozenset({"logger-id", "partition-id", "partition-key"}), frozenset({"logger-id"}),
                                  frozenset({"logger-id", "partition-id"}), text=True),
    "set-header": PolicySpec(ALL_SECTIONS, LEARN + "set-header-policy", frozenset({"name", "exists-action"}),
                             frozenset({"name"}), children=("value",)),
    "set-body": PolicySpec(frozenset({"inbound", "outbound", "backend"}), LEARN + "set-body-policy",
                           frozenset({"template", "xsi-nil"}), no_expressions=frozenset({"xsi-nil"}),
                           text=True),
    "validate-azure-ad-token": PolicySpec(
        frozenset({"inbound"}), LEARN + "validate-azure-ad-token-policy",
        frozenset({"tenant-id", "header-name", "query-parameter-name", "token-value", "authentication-endpoint",
                   "failed-validation-httpcode", "failed-validation-error-message", "output-token-variable-name"}),
        frozenset({"tenant-id"}), frozenset({"output-token-variable-name"}),
        children=("client-application-ids", "backend-application-ids", "audiences", "required-claims")),
    "authentication-managed-identity": PolicySpec(
        frozenset({"inbound"}), LEARN + "authentication-managed-identity-policy",
        frozenset({"resource", "client-id", "output-token-variable-name", "ignore-error"}), frozenset({"resource"}),
        frozenset({"client-id", "output-token-variable-name"})),
    "forward-request": PolicySpec(
        frozenset({"backend"}), LEARN + "forward-request-policy",
        frozenset({"timeout", "follow-redirects", "buffer-request-body", "buffer-response",
                   "fail-on-error-status-code"})),
    "return-response": PolicySpec(ALL_SECTIONS, LEARN + "return-response-policy",
                                  frozenset({"response-variable-name"}),
                                  children=("set-status", "set-header", "set-body")),
    "set-status": PolicySpec(ALL_SECTIONS, LEARN + "set-status-policy", frozenset({"code", "reason"}),
                             frozenset({"code"})),
}
# Elements that only exist inside a policy: parent -> child -> (attributes, grandchildren, text).
INNER: dict[str, dict[str, tuple[frozenset[str], tuple[str, ...], bool]]] = {
    "choose": {"when": (frozenset({"condition"}), (), False), "otherwise": (frozenset(), (), False)},
    "set-header": {"value": (frozenset(), (), True)},
    "validate-azure-ad-token": {
        "client-application-ids": (frozenset(), ("application-id",), False),
        "backend-application-ids": (frozenset(), ("application-id",), False),
        "audiences": (frozenset(), ("audience",), False),
        "required-claims": (frozenset(), ("claim",), False),
    },
}
LEAVES: dict[str, tuple[frozenset[str], tuple[str, ...], bool]] = {
    "application-id": (frozenset(), (), True),
    "audience": (frozenset(), (), True),
    "claim": (frozenset({"name", "match", "separator"}), ("value",), False),
    "value": (frozenset(), (), True),
}
# https://learn.microsoft.com/azure/api-management/api-management-error-handling-policies lists the
# policies allowed in on-error; base and include-fragment are documented as usable in on-error by
# their own pages (the list predates policy fragments).
ON_ERROR_ALLOWED = frozenset({
    "choose", "set-variable", "find-and-replace", "return-response", "set-header", "set-method", "set-status",
    "send-request", "send-one-way-request", "log-to-eventhub", "json-to-xml", "xml-to-json", "limit-concurrency",
    "mock-response", "retry", "trace", "base", "include-fragment",
})


def fragment_id(path: Path) -> str:
    return path.stem


def fragment_sections(documents: list[PolicyDocument]) -> dict[str, set[str]]:
    """fragment id -> the sections it is included in, across the API policy (and nested chooses)."""
    used: dict[str, set[str]] = {}
    for document in documents:
        if document.root.tag != "policies":
            continue
        for section in document.root:
            for element in section.iter("include-fragment"):
                used.setdefault(element.get("fragment-id", ""), set()).add(section.tag)
    return used


def check_policy_element(element: ET.Element, section: str, document: PolicyDocument, where: str) -> Iterator[str]:
    """Problems with one policy statement used in `section`, and with its children."""
    spec = POLICIES.get(element.tag)
    if spec is None:
        yield f"{where}: <{element.tag}> is not an APIM policy this project knows from the reference"
        return
    if section not in spec.sections:
        yield f"{where}: <{element.tag}> is not allowed in {section} (allowed: {sorted(spec.sections)}; {spec.url})"
    if section == "on-error" and element.tag not in ON_ERROR_ALLOWED:
        yield f"{where}: <{element.tag}> is not among the policies allowed in on-error"
    attributes = set(element.attrib) - {"id"}
    if not attributes <= spec.attributes:
        yield f"{where}: <{element.tag}> has unknown attribute(s) {sorted(attributes - spec.attributes)}"
    if not spec.required <= attributes:
        yield f"{where}: <{element.tag}> lacks required attribute(s) {sorted(spec.required - attributes)}"
    for name in spec.no_expressions & attributes:
        if document.expression(element.get(name)):
            yield f"{where}: <{element.tag} {name}> does not allow policy expressions"
    if element.tag == "log-to-eventhub" and {"partition-id", "partition-key"} <= attributes:
        yield f"{where}: log-to-eventhub takes partition-id or partition-key, never both"
    if (element.text or "").strip() and not spec.text:
        yield f"{where}: <{element.tag}> takes no text"
    if element.tag == "choose":
        whens = [child.tag for child in element]
        if not whens or whens[0] != "when" or any(t not in ("when", "otherwise") for t in whens) or \
                whens.count("otherwise") > 1 or ("otherwise" in whens and whens[-1] != "otherwise"):
            yield f"{where}: <choose> needs <when> elements then at most one final <otherwise>"
        for child in element:
            if child.tag == "when" and not child.get("condition"):
                yield f"{where}: <when> needs a condition"
            for index, statement in enumerate(child):
                yield from check_policy_element(statement, section, document, f"{where}/{child.tag}[{index}]")
        return
    yield from check_inner(element, INNER.get(element.tag, {}), spec.children, where)


def check_inner(element: ET.Element, allowed: dict[str, tuple[frozenset[str], tuple[str, ...], bool]],
                order: tuple[str, ...], where: str) -> Iterator[str]:
    tags = [child.tag for child in element]
    unknown = [t for t in tags if t not in order]
    if unknown:
        yield f"{where}: <{element.tag}> cannot contain {unknown}"
        return
    if tags != sorted(tags, key=order.index):
        yield f"{where}: <{element.tag}> children must follow the documented order {list(order)}"
    for child in element:
        attributes, grandchildren, text = allowed.get(child.tag) or LEAVES[child.tag]
        if not set(child.attrib) <= attributes:
            yield f"{where}/{child.tag}: unknown attribute(s) {sorted(set(child.attrib) - attributes)}"
        if (child.text or "").strip() and not text:
            yield f"{where}/{child.tag}: takes no text"
        if grandchildren or len(child):
            yield from check_inner(child, {}, grandchildren, f"{where}/{child.tag}")


def policy_problems(documents: list[PolicyDocument]) -> list[str]:
    problems: list[str] = []
    used = fragment_sections(documents)
    for document in documents:
        name = document.path.name
        root = document.root
        if root.tag == "policies":
            tags = [section.tag for section in root]
            if tags != list(SECTIONS):
                problems.append(f"{name}: sections must be exactly {list(SECTIONS)} in that order, got {tags}")
            for section in root:
                for index, element in enumerate(section):
                    problems.extend(check_policy_element(element, section.tag, document,
                                                         f"{name}:{section.tag}[{index}]"))
        elif root.tag == "fragment":
            fid = fragment_id(document.path)
            sections = used.get(fid, set())
            if not sections:
                problems.append(f"{name}: fragment {fid} is included nowhere")
            for bad in ("inbound", "backend", "outbound", "on-error", "base", "include-fragment"):
                if any(True for _ in root.iter(bad)):
                    problems.append(f"{name}: a fragment cannot contain <{bad}>")
            for included_in in sorted(sections):
                for index, element in enumerate(root):
                    problems.extend(check_policy_element(element, included_in, document,
                                                         f"{name}[{index}] (included in {included_in})"))
        else:
            problems.append(f"{name}: root must be <policies> or <fragment>, got <{root.tag}>")
    for fid in used:
        if not (FRAGMENT_DIR / f"{fid}.xml").exists():
            problems.append(f"include-fragment names {fid!r} but apim_policies/fragments/{fid}.xml does not exist")
    return problems


def all_documents() -> list[PolicyDocument]:
    return [parse_policy(path) for path in policy_files()]


@pytest.mark.parametrize("path", policy_files(), ids=lambda p: p.name)
def test_every_policy_file_is_well_formed_once_expressions_are_masked(path: Path) -> None:
    document = parse_policy(path)
    assert document.expressions, "every policy file here uses expressions"
    for expression in document.expressions.values():
        assert not re.search(r"&(quot|lt|gt|amp|apos|#\d+|#x[0-9a-fA-F]+);", expression.code), (
            f"{path.name}:{expression.line}: write expressions raw, not XML-escaped (rawxml form)")


def test_policy_elements_are_real_and_in_allowed_sections() -> None:
    assert policy_problems(all_documents()) == []


def section_statements(root: ET.Element, section: str) -> list[str]:
    """The section's top-level statements: tag, or include-fragment:<id>."""
    found = root.find(section)
    assert found is not None, section
    return [f"include-fragment:{e.get('fragment-id')}" if e.tag == "include-fragment" else e.tag for e in found]


def test_api_policy_has_the_required_pieces() -> None:
    root = parse_policy(API_POLICY).root
    assert section_statements(root, "inbound") == [
        "include-fragment:chargeback-resolve-caller", "base", "include-fragment:chargeback-validate-entra-token",
        "include-fragment:chargeback-stream-include-usage", "authentication-managed-identity", "set-header"]
    identity = root.find("inbound/authentication-managed-identity")
    assert identity is not None and identity.get("resource") == "https://cognitiveservices.azure.com"
    forward = root.find("backend/forward-request")
    assert forward is not None and forward.get("buffer-response") == "false"
    assert forward.get("fail-on-error-status-code") == "false"
    # Emit first, then <base />: see apim_policies/README.md, "Exactly one event per request".
    assert section_statements(root, "outbound") == ["include-fragment:chargeback-emit-usage", "base"]
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
    partition = parse_policy(EMIT_FRAGMENT).expression(log.get("partition-key"))
    assert partition is not None and '"chargeback-subscription-id"' in partition.code


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


NAMED_VALUE = re.compile(r"\{\{([A-Za-z0-9._-]+)\}\}")


def named_values_used() -> set[str]:
    return {name for path in policy_files() for name in NAMED_VALUE.findall(path.read_text(encoding="utf-8"))}


def named_values_documented() -> set[str]:
    """Names in the first column of the README's named-values table (`| `name` | ...`)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Named values", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\|\s*`([A-Za-z0-9._-]+)`\s*\|", section, flags=re.MULTILINE))


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


# --------------------------------------------------------------------------------------------
# Expressions use only the allowed types and members
# --------------------------------------------------------------------------------------------
# https://learn.microsoft.com/azure/api-management/api-management-policy-expressions#CLRTypes
# (short names as written in expressions; "All" members unless listed in RESTRICTED_MEMBERS).
ALLOWED_TYPES = frozenset({
    # Newtonsoft.Json
    "Formatting", "JsonConvert", "Extensions", "JArray", "JConstructor", "JContainer", "JObject", "JProperty",
    "JRaw", "JToken", "JTokenType", "JValue",
    # System
    "Array", "BitConverter", "Boolean", "Byte", "Char", "Convert", "DateTime", "DateTimeKind", "DateTimeOffset",
    "Decimal", "Double", "Enum", "Exception", "Guid", "Int16", "Int32", "Int64", "Math", "MidpointRounding",
    "Nullable", "Random", "SByte", "Single", "String", "StringComparer", "StringComparison", "StringSplitOptions",
    "TimeSpan", "TimeZone", "TimeZoneInfo", "Tuple", "UInt16", "UInt32", "UInt64", "Uri", "UriPartial",
    # System.Collections.Generic, System.Linq, System.IO, System.Net, System.Text
    "Dictionary", "HashSet", "ICollection", "IDictionary", "IEnumerable", "IEnumerator", "IList",
    "IReadOnlyCollection", "IReadOnlyDictionary", "ISet", "KeyValuePair", "List", "Queue", "Stack", "Enumerable",
    "StringReader", "StringWriter", "IPAddress", "WebUtility", "Encoding", "StringBuilder",
    "Capture", "CaptureCollection", "Group", "GroupCollection", "Match", "Regex", "RegexOptions",
    # System.Xml.Linq
    "XAttribute", "XCData", "XComment", "XContainer", "XDeclaration", "XDocument", "XDocumentType", "XElement",
    "XName", "XNamespace", "XNode", "XNodeDocumentOrderComparer", "XNodeEqualityComparer", "XObject",
    "XProcessingInstruction", "XText", "XmlNodeType",
    # System.Security.Cryptography (a few of those listed)
    "HashAlgorithm", "HMACSHA256", "SHA256", "MD5", "RSA", "X509Certificate2",
    # APIM's own types from the context-variable table
    "Jwt", "BasicAuthCredentials",
})
RESTRICTED_MEMBERS: dict[str, frozenset[str]] = {
    "DateTime": frozenset({
        "Add", "AddDays", "AddHours", "AddMilliseconds", "AddMinutes", "AddMonths", "AddSeconds", "AddTicks",
        "AddYears", "Date", "Day", "DayOfWeek", "DayOfYear", "DaysInMonth", "Hour", "IsDaylightSavingTime",
        "IsLeapYear", "MaxValue", "Millisecond", "Minute", "MinValue", "Month", "Now", "Parse", "Second",
        "Subtract", "Ticks", "TimeOfDay", "Today", "ToString", "UtcNow", "Year"}),
    "DateTimeKind": frozenset({"Utc"}),
    "JsonConvert": frozenset({"SerializeObject", "DeserializeObject"}),
    "Enum": frozenset({"Parse", "TryParse", "ToString"}),
    "Regex": frozenset({"IsMatch", "Match", "Matches", "Replace", "Unescape", "Split"}),
    "Match": frozenset({"Empty", "Groups", "Result"}),
}
# The context variable: member -> the type it returns; None = a .NET type whose members are all allowed.
CONTEXT_API: dict[str, dict[str, str | None]] = {
    "context": {"Api": "IApi", "Deployment": "Deployment", "Elapsed": None, "LastError": "LastError",
                "Operation": "Operation", "Product": "Product", "Request": "Request", "RequestId": None,
                "Response": "Response", "Subscription": "Subscription", "Timestamp": None, "Tracing": None,
                "User": "User", "Variables": None, "Trace": None, "Workspace": "Workspace"},
    "IApi": {"Id": None, "IsCurrentRevision": None, "Name": None, "Path": None, "Revision": None,
             "ServiceUrl": "IUrl", "Version": None, "Protocols": None, "SubscriptionKeyParameterNames": None},
    "Deployment": {"Gateway": None, "GatewayId": None, "Region": None, "ServiceId": None, "ServiceName": None,
                   "SustainabilityInfo": None, "Certificates": None},
    "LastError": {"Source": None, "Reason": None, "Message": None, "Scope": None, "Section": None, "Path": None,
                  "PolicyId": None},
    "Operation": {"Id": None, "Method": None, "Name": None, "UrlTemplate": None},
    "Product": {"ApprovalRequired": None, "Groups": None, "Id": None, "Name": None, "State": None,
                "SubscriptionsLimit": None, "SubscriptionRequired": None},
    "Request": {"Body": "IMessageBody", "Certificate": None, "Headers": None, "IpAddress": None,
                "MatchedParameters": None, "Method": None, "OriginalUrl": "IUrl", "Url": "IUrl",
                "PrivateEndpointConnection": None},
    "Response": {"Body": "IMessageBody", "Headers": None, "StatusCode": None, "StatusReason": None},
    "Subscription": {"CreatedDate": None, "EndDate": None, "Id": None, "Key": None, "Name": None,
                     "PrimaryKey": None, "SecondaryKey": None, "StartDate": None},
    "User": {"Email": None, "FirstName": None, "Groups": None, "Id": None, "Identities": None, "LastName": None,
             "Note": None, "RegistrationDate": None},
    "Workspace": {"Id": None, "Name": None},
    "IUrl": {"Host": None, "Path": None, "Port": None, "Query": None, "QueryString": None, "Scheme": None},
    "IMessageBody": {"As": None, "AsFormUrlEncodedContent": None},
}
# Extension methods APIM adds on strings and its Jwt type's members.
APIM_EXTENSIONS = frozenset({"AsJwt", "TryParseJwt", "AsBasic", "TryParseBasic"})
JWT_MEMBERS = frozenset({"Algorithm", "Audiences", "Claims", "ExpirationTime", "Id", "Issuer", "IssuedAt",
                         "NotBefore", "Subject", "Type"})
CSHARP_KEYWORDS = frozenset({
    "abstract", "as", "base", "bool", "break", "byte", "case", "catch", "char", "checked", "class", "const",
    "continue", "decimal", "default", "delegate", "do", "double", "else", "enum", "event", "explicit", "extern",
    "false", "finally", "fixed", "float", "for", "foreach", "goto", "if", "implicit", "in", "int", "interface",
    "internal", "is", "lock", "long", "namespace", "new", "null", "object", "operator", "out", "override",
    "params", "private", "protected", "public", "readonly", "ref", "return", "sbyte", "sealed", "short", "sizeof",
    "stackalloc", "static", "string", "struct", "switch", "this", "throw", "true", "try", "typeof", "uint",
    "ulong", "unchecked", "unsafe", "ushort", "using", "virtual", "void", "volatile", "while", "var", "nameof",
    "when",
})


def string_literals(code: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', code)]


def expression_type_problems(code: str) -> list[str]:
    """Type and member uses in one expression that the allow-list does not cover."""
    problems: list[str] = []
    bare = blank_literals(code).replace("?.", ".")
    for match in re.finditer(r"\bnew\s*(\[\s*\]|\{|[A-Za-z_][\w.]*)", bare):
        target = match.group(1)
        if target == "{":
            problems.append("anonymous types (new { ... }) are not in the allowed types")
        elif not target.startswith("[") and target.split(".")[-1] not in ALLOWED_TYPES:
            problems.append(f"new {target}: not an allowed type")
    for match in re.finditer(r"(?<![\w.])([A-Za-z_]\w*)", bare):
        name = match.group(1)
        if name in CSHARP_KEYWORDS or name == "context" or name[0].islower() or name[0] == "_":
            continue
        if name not in ALLOWED_TYPES:
            problems.append(f"{name}: not an allowed type")
    for match in re.finditer(r"(?<![\w.])([A-Z]\w*)((?:\.[A-Za-z_]\w*)+)", bare):
        type_name, members = match.group(1), match.group(2).split(".")[1:]
        allowed = RESTRICTED_MEMBERS.get(type_name)
        if allowed is not None:
            chain = members if type_name == "DateTime" else members[:1]
            problems.extend(f"{type_name}.{m}: member not allowed" for m in chain if m not in allowed)
    for match in re.finditer(r"(?<![\w.])context((?:\.[A-Za-z_]\w*)+)", bare):
        current: str | None = "context"
        for member in match.group(1).split(".")[1:]:
            if current is None:
                break
            members = CONTEXT_API[current]
            if member not in members:
                problems.append(f"context ... {current}.{member}: not a documented member")
                break
            current = members[member]
    for match in re.finditer(r"\.\s*(As[A-Z]\w*|TryParse[A-Z]\w*)\s*[(<]", bare):
        name = match.group(1)
        if name not in APIM_EXTENSIONS and name not in ("As", "AsFormUrlEncodedContent"):
            problems.append(f".{name}(): not a documented method")
    for match in re.finditer(r"\bjwt\.(\w+)", bare):
        if match.group(1) not in JWT_MEMBERS:
            problems.append(f"Jwt.{match.group(1)}: not a documented member")
    return problems


def all_expressions() -> list[tuple[Path, Expression]]:
    return [(path, e) for path in policy_files() for e in parse_policy(path).expressions.values()]


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
    guard = code.rfind("if (inOutbound && json && context.Response.Body != null)", 0, reads[0])
    assert guard >= 0, "the only response-body read sits under the non-streamed JSON guard"
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
    assert 'facts["addIncludeUsage"] = streamed && completions && !included;' in facts.code
    assert "catch (Exception)" in facts.code


def test_every_resolve_expression_catches_its_own_exceptions() -> None:
    """on-error re-runs the resolve fragment: an exception there would lose the event."""
    resolve = parse_policy(FRAGMENT_DIR / "chargeback-resolve-caller.xml")
    for element in resolve.root:
        expression = resolve.expression(element.get("value"))
        assert expression is not None
        if expression.code.startswith("@{"):
            assert "catch (Exception)" in expression.code, element.get("name")


# --------------------------------------------------------------------------------------------
# The event the policy writes == the schema's properties
# --------------------------------------------------------------------------------------------


def matching_paren(code: str, open_index: int) -> int:
    """Index of the ')' closing the '(' at open_index, skipping literals (via the masker's lexer)."""
    return expression_end("@" + code[open_index:], 0) + open_index - 2


def split_arguments(arguments: str) -> list[str]:
    """Top-level comma-separated arguments, literals and nesting respected."""
    bare = blank_literals(arguments)
    parts: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(bare):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(arguments[start:index])
            start = index + 1
    parts.append(arguments[start:])
    return [p.strip() for p in parts if p.strip()]


def jobject_properties(code: str, variable: str) -> list[tuple[str, str]]:
    """(name, value expression) of each `new JProperty(...)` in `variable = new JObject(...)`."""
    found = re.search(rf"\b{re.escape(variable)}\s*=\s*new\s+JObject\s*\(", code)
    if found is None:
        raise AssertionError(f"no `{variable} = new JObject(...)` in the expression")
    open_index = found.end() - 1
    close_index = matching_paren(code, open_index)
    properties = []
    for argument in split_arguments(code[open_index + 1 : close_index]):
        prop = re.fullmatch(r'new\s+JProperty\s*\(\s*"([^"]+)"\s*,\s*(.*)\)', argument, flags=re.DOTALL)
        if prop is None:
            raise AssertionError(f"{variable}: argument is not new JProperty(\"name\", value): {argument[:60]}")
        properties.append((prop.group(1), prop.group(2).strip()))
    return properties


@dataclass(frozen=True)
class EmittedShape:
    event: list[str]
    usage: list[str]
    tags: list[str]
    usage_sources: set[str]


def emitted_shape(code: str) -> EmittedShape:
    """The JSON the log-to-eventhub expression writes, read from its code."""
    returned = re.search(r"return\s+(\w+)\.ToString\(\s*Formatting\.None\s*\)\s*;\s*\}$", code.strip())
    if returned is None:
        raise AssertionError("the message must be `return <event>.ToString(Formatting.None);`")
    event = jobject_properties(code, returned.group(1))
    values = dict(event)
    usage_variable = values.get("usage", "")
    usage = [name for name, _ in jobject_properties(code, usage_variable)] if usage_variable.isidentifier() else []
    tags_variable = values.get("tags", "")
    tags = re.findall(rf'\b{re.escape(tags_variable)}\["([^"]+)"\]\s*=', code) if tags_variable.isidentifier() else []
    sources = set(re.findall(r'\busageSource\s*=\s*"([^"]*)"', code))
    return EmittedShape([name for name, _ in event], usage, tags, sources)


def schema_shape(schema: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    properties: dict[str, Any] = schema["properties"]
    usage_object = next(option for option in properties["usage"]["oneOf"] if option.get("type") == "object")
    return list(properties), list(usage_object["properties"]), list(properties["usageSource"]["enum"])


def field_mismatches(log_expression: str, schema: dict[str, Any]) -> list[str]:
    shape = emitted_shape(log_expression)
    event_fields, usage_fields, sources = schema_shape(schema)
    problems: list[str] = []
    for label, written, wanted in (("event", shape.event, event_fields), ("usage", shape.usage, usage_fields)):
        problems += [f"{label} field {name!r} is in the schema but the policy does not write it"
                     for name in wanted if name not in written]
        problems += [f"{label} field {name!r} is written by the policy but is not in the schema"
                     for name in written if name not in wanted]
        if len(set(written)) != len(written):
            problems.append(f"{label}: a field is written twice")
    problems += [f"usageSource {value!r} is not in the schema's enum" for value in sorted(shape.usage_sources)
                 if value not in sources]
    return problems


def emit_expression(text: str | None = None) -> Expression:
    document = parse_policy(EMIT_FRAGMENT, text)
    log = next(document.root.iter("log-to-eventhub"))
    expression = document.expression(log.text)
    assert expression is not None and expression.kind == "text"
    return expression


def test_the_event_written_by_log_to_eventhub_has_exactly_the_schemas_fields() -> None:
    assert field_mismatches(emit_expression().code, load_schema()) == []
    shape = emitted_shape(emit_expression().code)
    assert shape.usage_sources == {"response", "stream", "none"}
    # ... and the schema is the decoder's contract (tests/test_contract.py checks them field by field).
    assert sorted(shape.event) == sorted(WIRE_FIELDS)
    assert sorted(shape.usage) == sorted(USAGE_FIELDS)


@pytest.mark.parametrize(("old", "new"), [("costCenter", "costCentre"), ("cachedTokens", "cachedTokenCount"),
                                          ("schemaVersion", "version")])
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


def test_a_usage_source_outside_the_schema_enum_fails_the_check() -> None:
    text = EMIT_FRAGMENT.read_text(encoding="utf-8").replace('usageSource = "stream";', 'usageSource = "streamed";')
    assert "usageSource 'streamed' is not in the schema's enum" in field_mismatches(emit_expression(text).code,
                                                                                   load_schema())


def test_tags_written_by_on_error_fit_the_schema() -> None:
    shape = emitted_shape(emit_expression().code)
    tags_schema = load_schema()["properties"]["tags"]
    assert shape.tags == ["apimErrorSource", "apimErrorReason"]
    assert len(shape.tags) <= tags_schema["maxProperties"]
    assert all(1 <= len(name) <= tags_schema["propertyNames"]["maxLength"] for name in shape.tags)


def test_the_largest_possible_event_stays_far_below_the_limits() -> None:
    """Every string at the 256-character cap the policy clips to: well under the pipeline's 64 KB and
    log-to-eventhub's 200 KB (where it would be truncated silently)."""
    shape = emitted_shape(emit_expression().code)
    big = "x" * 256
    event: dict[str, Any] = dict.fromkeys(shape.event, big)
    event.update(schemaVersion=1, stream=True, statusCode=599, durationMs=86_400_000, usageSource="response",
                 usage=dict.fromkeys(shape.usage, 10**12), tags=dict.fromkeys(shape.tags, big))
    size = len(json.dumps(event, separators=(",", ":")).encode())
    assert size < 5 * 1024 < MAX_EVENT_BYTES < 200 * 1024
    clip = emit_expression().code.count(".Length > 256 ?")
    assert clip >= 5, "strings the emit fragment reads itself (model, api, operation, region, tags) are clipped"


# --------------------------------------------------------------------------------------------
# Recorded events: one per case, exactly as the policy writes them; decode and price them
# --------------------------------------------------------------------------------------------
# Usage mapping per API, as the emit expression reads it (the test checks the expression names
# these paths), used to derive each event's usage from the recorded Azure OpenAI response.
USAGE_PATHS: dict[str, dict[str, str]] = {
    "chat, completions, embeddings": {
        "promptTokens": "prompt_tokens", "completionTokens": "completion_tokens",
        "cachedTokens": "prompt_tokens_details.cached_tokens",
        "reasoningTokens": "completion_tokens_details.reasoning_tokens"},
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

    def read(path: str) -> int | None:
        value: Any = block
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    prompt = read(paths["promptTokens"])
    if prompt is None:
        return None
    completion = read(paths["completionTokens"]) or 0
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion,
            "cachedTokens": read(paths["cachedTokens"]) or 0, "reasoningTokens": read(paths["reasoningTokens"]) or 0}


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
    if event["stream"] and not case.response:
        assert status_ok and event["usage"] is None and event["model"] is None and event["usageSource"] == "stream"
    if case.on_error:
        assert event["usage"] is None and event["usageSource"] == "none" and event["model"] is None
        assert set(event["tags"]) == {"apimErrorSource", "apimErrorReason"}
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


def test_cached_and_reasoning_tokens_are_subsets() -> None:
    cached = decode(next(c for c in CASES if c.name == "cached-prompt")).usage
    reasoning = decode(next(c for c in CASES if c.name == "reasoning")).usage
    assert cached is not None and cached.cached_tokens == 8192 <= cached.prompt_tokens
    assert reasoning is not None and reasoning.reasoning_tokens == 1900 <= reasoning.completion_tokens
