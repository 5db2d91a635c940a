"""Static analysis of the APIM policies (apim_policies/): the policy-expression masker, the
policy-element checker, the allowed-types check of the C# expressions and the reader of the event
that log-to-eventhub writes. No APIM runtime is involved; tests/test_apim_policies.py uses these.

The tables below are built from these Microsoft Learn pages:

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

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
    "send-request": PolicySpec(ALL_SECTIONS, LEARN + "send-request-policy",
                               frozenset({"mode", "response-variable-name", "timeout", "ignore-error"}),
                               frozenset({"response-variable-name"}), frozenset({"ignore-error"}),
                               children=("set-url", "set-method", "set-header", "set-body",
                                         "authentication-certificate", "authentication-managed-identity",
                                         "proxy")),
    "cache-lookup-value": PolicySpec(ALL_SECTIONS, LEARN + "cache-lookup-value-policy",
                                     frozenset({"key", "default-value", "variable-name", "caching-type"}),
                                     frozenset({"key", "variable-name"}),
                                     frozenset({"variable-name", "caching-type"})),
    "cache-store-value": PolicySpec(ALL_SECTIONS, LEARN + "cache-store-value-policy",
                                    frozenset({"key", "value", "duration", "caching-type"}),
                                    frozenset({"key", "value", "duration"}), frozenset({"caching-type"})),
}
# Policies each section may hold at most once (their usage notes), and those a fragment cannot hold
# ("This policy isn't supported within policy fragments", cache-lookup-value's usage notes).
ONCE_PER_SECTION = frozenset({"cache-lookup-value", "cache-store-value"})
NOT_IN_FRAGMENTS = frozenset({"cache-lookup-value"})
# Elements that only exist inside a policy: parent -> child -> (attributes, grandchildren, text).
INNER: dict[str, dict[str, tuple[frozenset[str], tuple[str, ...], bool]]] = {
    "choose": {"when": (frozenset({"condition"}), (), False), "otherwise": (frozenset(), (), False)},
    "set-header": {"value": (frozenset(), (), True)},
    "send-request": {
        "set-url": (frozenset(), (), True),
        "set-method": (frozenset(), (), True),
        "set-header": (frozenset({"name", "exists-action"}), ("value",), False),
        "set-body": (frozenset({"template", "xsi-nil"}), (), True),
        "authentication-managed-identity": (frozenset({"resource", "client-id"}), (), False),
    },
    "return-response": {
        "set-status": (frozenset({"code", "reason"}), (), False),
        "set-header": (frozenset({"name", "exists-action"}), ("value",), False),
        "set-body": (frozenset({"template", "xsi-nil"}), (), True),
    },
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
                for once in sorted(ONCE_PER_SECTION):
                    if sum(1 for _ in section.iter(once)) > 1:
                        problems.append(f"{name}: <{once}> may be used once in {section.tag}")
                for index, element in enumerate(section):
                    problems.extend(check_policy_element(element, section.tag, document,
                                                         f"{name}:{section.tag}[{index}]"))
        elif root.tag == "fragment":
            fid = fragment_id(document.path)
            sections = used.get(fid, set())
            if not sections:
                problems.append(f"{name}: fragment {fid} is included nowhere")
            for bad in ("inbound", "backend", "outbound", "on-error", "base", "include-fragment",
                        *sorted(NOT_IN_FRAGMENTS)):
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


def section_statements(root: ET.Element, section: str) -> list[str]:
    """The section's top-level statements: tag, or include-fragment:<id>."""
    found = root.find(section)
    assert found is not None, section
    return [f"include-fragment:{e.get('fragment-id')}" if e.tag == "include-fragment" else e.tag for e in found]


NAMED_VALUE = re.compile(r"\{\{([A-Za-z0-9._-]+)\}\}")


def named_values_used() -> set[str]:
    return {name for path in policy_files() for name in NAMED_VALUE.findall(path.read_text(encoding="utf-8"))}


def named_values_documented() -> set[str]:
    """Names in the first column of the README's named-values table (`| `name` | ...`)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Named values", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\|\s*`([A-Za-z0-9._-]+)`\s*\|", section, flags=re.MULTILINE))


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
    # the response object send-request stores (its reference's examples cast to it)
    "IResponse",
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
    tier_sources: set[str]


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
    tier_sources = set(re.findall(r'\bserviceTierSource\s*=\s*"([^"]*)"', code))
    return EmittedShape([name for name, _ in event], usage, tags, sources, tier_sources)


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
    tier_enum = schema["properties"].get("serviceTierSource", {}).get("enum", [])
    problems += [f"serviceTierSource {value!r} is not in the schema's enum" for value in sorted(shape.tier_sources)
                 if value not in tier_enum]
    return problems


def emit_expression(text: str | None = None) -> Expression:
    document = parse_policy(EMIT_FRAGMENT, text)
    log = next(document.root.iter("log-to-eventhub"))
    expression = document.expression(log.text)
    assert expression is not None and expression.kind == "text"
    return expression
