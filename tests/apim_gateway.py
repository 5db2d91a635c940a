"""A simulated APIM gateway that runs apim_policies/ on one request: the policy documents are
walked section by section (inbound, backend, outbound, on-error) and every policy expression is
evaluated by tests/apim_csharp.py against a `context` built like APIM's (the context-variable
table of https://learn.microsoft.com/azure/api-management/api-management-policy-expressions).

Only the policies this project uses are simulated, and only as far as their reference pages
describe them: choose, set-variable, set-header, set-body, include-fragment, base (no enclosing
scope policies here), authentication-managed-identity, validate-azure-ad-token (a token is valid
or not, as the test says), forward-request (timeout raises forward-request / Timeout,
https://learn.microsoft.com/azure/api-management/api-management-error-handling-policies) and
log-to-eventhub (the messages are collected), send-request (mode new; a test's `storage` answers it,
a timeout with ignore-error leaves the response variable null), cache-lookup-value and
cache-store-value (one cache per Gateway, kept across requests, no expiry of its own) and
return-response (ends the request: no later section runs). An error anywhere jumps to on-error with
context.LastError set. Body reading follows IMessageBody.As<T>: a gzip or uncompressed body can be
read, any other Content-Encoding cannot (MicrosoftDocs/azure-docs#59837), and reading a
text/event-stream body is reported as a test failure (it would buffer the stream).

What APIM itself does around these steps (whether context.Response is null in on-error, the
status code of a refused request) is not documented; `on_error_response` lets a test try both.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from tests.apim_csharp import (
    CSharpException,
    DateTimeValue,
    GuidValue,
    HostObject,
    Interpreter,
    InterpreterError,
    TimeSpan,
    datetime_value,
    parse_expression_code,
    parse_jobject,
)
from tests.apim_static import API_POLICY, FRAGMENT_DIR, PolicyDocument, parse_policy

# The named values the tests run with (README, "Named values").
NAMED_VALUES = {
    "chargeback-entra-validation": "disabled",
    "chargeback-entra-tenant-ids": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "chargeback-entra-client-app-id": "00000000-0000-0000-0000-000000000000",
    "chargeback-entra-audience": "api://apim-openai-chargeback",
    "chargeback-cost-center-header": "x-cost-center",
    "chargeback-cost-center-map": "team-search-prod=CC-1001-search;team-support-prod=CC-2002-support",
    "chargeback-budget-state-url": "https://chargebkdata.blob.core.windows.net/chargeback/dev/gateway/budgets/",
    "chargeback-budget-fail-closed": "false",
}
READABLE_ENCODINGS = frozenset({"", "identity", "gzip"})


# --------------------------------------------------------------------------------------------
# The context variable
# --------------------------------------------------------------------------------------------


class Headers(HostObject):
    """IReadOnlyDictionary<string, string[]> with APIM's GetValueOrDefault (names case-insensitive)."""

    members: ClassVar[frozenset[str]] = frozenset({"GetValueOrDefault", "ContainsKey", "Keys", "Count"})

    def __init__(self, items: Mapping[str, str | list[str]] | None = None) -> None:
        self.items: dict[str, list[str]] = {}
        for name, value in (items or {}).items():
            self.items[name] = list(value) if isinstance(value, list) else [value]

    def key(self, name: str) -> str | None:
        return next((k for k in self.items if k.lower() == name.lower()), None)

    def get(self, name: str) -> str | None:
        key = self.key(name)
        return None if key is None else ",".join(self.items[key])

    def set(self, name: str, values: list[str]) -> None:
        self.delete(name)
        self.items[name] = values

    def delete(self, name: str) -> None:
        key = self.key(name)
        if key is not None:
            del self.items[key]

    def GetValueOrDefault(self, name: str, default: Any, *, type_args: tuple[str, ...] = ()) -> Any:
        value = self.get(name)
        return default if value is None else value

    def ContainsKey(self, name: str, *, type_args: tuple[str, ...] = ()) -> bool:
        return self.key(name) is not None

    @property
    def Keys(self) -> list[str]:
        return list(self.items)

    @property
    def Count(self) -> int:
        return len(self.items)

    def item(self, name: Any) -> list[str]:
        key = self.key(str(name))
        if key is None:
            raise CSharpException("KeyNotFoundException", str(name))
        return list(self.items[key])


class Query(Headers):
    """IUrl.Query: the same dictionary, names compared as sent."""

    def key(self, name: str) -> str | None:
        return name if name in self.items else None


@dataclass
class Url(HostObject):
    members: ClassVar[frozenset[str]] = frozenset({"Host", "Path", "Port", "Query", "QueryString", "Scheme"})
    Path: str
    Query: Query
    QueryString: str
    Host: str = "contoso-apim.azure-api.net"
    Port: int = 443
    Scheme: str = "https"


def parse_url(url: str) -> Url:
    parts = urllib.parse.urlsplit(url)
    query = Query()
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        query.items.setdefault(name, []).append(value)
    return Url(parts.path, query, "?" + parts.query if parts.query else "")


class Body(HostObject):
    """IMessageBody: As<T>(preserveContent)."""

    members: ClassVar[frozenset[str]] = frozenset({"As"})

    def __init__(self, text: str, *, encoding: str = "", stream: bool = False) -> None:
        self.text = text
        self.encoding = encoding.lower()
        self.stream = stream
        self.reads = 0
        self.consumed = False

    def As(self, preserveContent: bool = False, *, type_args: tuple[str, ...] = ()) -> Any:
        if self.stream:
            raise InterpreterError("a policy read a text/event-stream body: the stream would be buffered")
        if self.consumed:
            raise InterpreterError("a body read again after As<T>() without preserveContent")
        self.reads += 1
        self.consumed = not preserveContent
        if self.encoding not in READABLE_ENCODINGS:
            raise CSharpException("InvalidDataException", f"APIM cannot decode a {self.encoding} body")
        if type_args == ("string",):
            return self.text
        if type_args == ("JObject",):
            return parse_jobject(self.text)
        raise InterpreterError(f"Body.As<{','.join(type_args)}>")


@dataclass
class Request(HostObject):
    members: ClassVar[frozenset[str]] = frozenset({"Body", "Headers", "IpAddress", "Method", "OriginalUrl", "Url",
                                                   "MatchedParameters", "Certificate"})
    Method: str
    OriginalUrl: Url
    Url: Url
    Headers: Headers
    Body: Body | None
    IpAddress: str = "203.0.113.7"
    MatchedParameters: dict[str, str] = field(default_factory=dict)
    Certificate: None = None


@dataclass
class Response(HostObject):
    members: ClassVar[frozenset[str]] = frozenset({"Body", "Headers", "StatusCode", "StatusReason"})
    StatusCode: int
    Headers: Headers
    Body: Body
    StatusReason: str = ""


@dataclass
class Named(HostObject):
    """context.Api, .Operation, .Product, .Subscription, .Deployment, .LastError: plain members."""

    members: ClassVar[frozenset[str]] = frozenset({
        "Id", "Name", "Path", "Method", "UrlTemplate", "Region", "ServiceName", "GatewayId", "Source", "Reason",
        "Message", "Scope", "Section", "PolicyId", "Key"})
    Id: str | None = None
    Name: str | None = None
    Path: str | None = None
    Method: str | None = None
    UrlTemplate: str | None = None
    Region: str | None = None
    ServiceName: str | None = None
    GatewayId: str | None = None
    Source: str | None = None
    Reason: str | None = None
    Message: str | None = None
    Scope: str | None = None
    Section: str | None = None
    PolicyId: str | None = None
    Key: str | None = None


class Variables(HostObject):
    """context.Variables: GetValueOrDefault<T> throws when the stored value is not a T."""

    members: ClassVar[frozenset[str]] = frozenset({"GetValueOrDefault", "ContainsKey", "Count"})
    TYPES: ClassVar[dict[str, type]] = {"string": str, "bool": bool, "int": int, "long": int}

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def GetValueOrDefault(self, name: str, default: Any, *, type_args: tuple[str, ...] = ()) -> Any:
        if name not in self.values:
            return default
        value = self.values[name]
        if type_args:
            expected = self.TYPES.get(type_args[0])
            if expected is None:
                raise InterpreterError(f"GetValueOrDefault<{type_args[0]}>")
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise CSharpException("InvalidCastException", f"{name} is not a {type_args[0]}")
        return value

    def ContainsKey(self, name: str, *, type_args: tuple[str, ...] = ()) -> bool:
        return name in self.values

    @property
    def Count(self) -> int:
        return len(self.values)

    def item(self, name: Any) -> Any:
        if name not in self.values:
            raise CSharpException("KeyNotFoundException", str(name))
        return self.values[name]


@dataclass
class Context(HostObject):
    members: ClassVar[frozenset[str]] = frozenset({
        "Api", "Deployment", "Elapsed", "LastError", "Operation", "Product", "Request", "RequestId", "Response",
        "Subscription", "Timestamp", "Tracing", "User", "Variables"})
    Api: Named
    Deployment: Named
    Elapsed: TimeSpan
    Operation: Named | None
    Product: Named | None
    Request: Request
    RequestId: GuidValue
    Subscription: Named | None
    Timestamp: DateTimeValue
    Variables: Variables
    LastError: Named | None = None
    Response: Response | None = None
    Tracing: bool = False
    User: None = None


# --------------------------------------------------------------------------------------------
# A request, the backend, and what happened
# --------------------------------------------------------------------------------------------


@dataclass
class Call:
    """What a client sends, and what APIM matched it to."""

    method: str
    url: str  # path and query, e.g. /openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    subscription: str | None = "team-search-prod"  # None: no (valid) subscription key
    product: str | None = "openai-standard"
    operation: str | None = "wildcard-post"  # APIM's matched operation id; None: no operation matched
    entra_token_valid: bool = True  # what validate-azure-ad-token decides, when it runs


@dataclass
class Forwarded:
    """The request as forward-request sends it to Azure OpenAI."""

    method: str
    url: str
    headers: Headers
    body: str | None
    timeout: str | None
    attributes: dict[str, str]


@dataclass
class Reply:
    """What Azure OpenAI answers (or that it does not answer in time)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    body: str = "{}"
    timeout: bool = False


Backend = Callable[[Forwarded], Reply]


@dataclass
class Sent:
    """A request a send-request policy made (the budget gate's read of its blob)."""

    method: str
    url: str
    headers: dict[str, str]
    timeout: str | None
    ignore_error: bool
    managed_identity_resource: str | None


# What Blob Storage answers a send-request: a Reply (timeout=True: no answer in time).
Storage = Callable[[Sent], Reply]


def no_blob(sent: Sent) -> Reply:
    """Blob Storage without the requested blob (Get Blob's 404)."""
    return Reply(404, {"x-ms-error-code": "BlobNotFound", "Content-Type": "application/xml"}, "<Error/>")


@dataclass
class Returned:
    """The response return-response sent to the caller."""

    status: int
    headers: dict[str, str]
    body: str


class _ReturnResponse(Exception):
    def __init__(self, returned: Returned) -> None:
        super().__init__(returned.status)
        self.returned = returned


def azure_openai(reply: Reply) -> Backend:
    """A backend that answers `reply`, compressed like a server that prefers br, then zstd, then gzip
    among the codings the forwarded Accept-Encoding names (q-values ignored)."""

    def answer(forwarded: Forwarded) -> Reply:
        offered = [part.split(";")[0].strip().lower() for part in
                   (forwarded.headers.get("Accept-Encoding") or "").split(",")]
        chosen = next((coding for coding in ("br", "zstd", "gzip") if coding in offered), "")
        headers = dict(reply.headers)
        if chosen and "text/event-stream" not in headers.get("Content-Type", ""):
            headers["Content-Encoding"] = chosen
        return Reply(reply.status, headers, reply.body, reply.timeout)

    return answer


@dataclass
class Outcome:
    events: list[tuple[str | None, str]]  # (partition key, message) per log-to-eventhub
    forwarded: Forwarded | None
    variables: dict[str, Any]
    last_error: Named | None
    response_reads: int  # how often a policy read the backend response body
    request_reads: int  # how often a policy read the request body
    returned: Returned | None = None  # what return-response answered, when one did
    response_headers: dict[str, str] = field(default_factory=dict)  # the final response's headers
    sent: list[Sent] = field(default_factory=list)  # the send-request calls

    @property
    def event(self) -> dict[str, Any]:
        """The one event the request emitted."""
        assert len(self.events) == 1, f"{len(self.events)} events"
        message = self.events[0][1]
        event: dict[str, Any] = json.loads(message)
        return event


class GatewayError(Exception):
    def __init__(self, source: str, reason: str, message: str, section: str, status: int = 500) -> None:
        super().__init__(f"{source}/{reason}: {message}")
        self.error = Named(Source=source, Reason=reason, Message=message, Section=section, Scope="api")
        self.status = status


# --------------------------------------------------------------------------------------------
# The gateway
# --------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 3, 9, 14, 29, 326521, tzinfo=UTC)
ELAPSED = TimeSpan(1.8431234)
REQUEST_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


class Gateway:
    """The API policy and its fragments, with named values substituted, ready to run requests."""

    def __init__(self, texts: Mapping[str, str] | None = None,
                 named_values: Mapping[str, str] = NAMED_VALUES, storage: Storage = no_blob) -> None:
        """texts: policy file name -> text, to run a changed copy (seeded mistakes); the files otherwise.
        storage answers send-request; the internal cache (key -> (value, duration)) lives as long as
        the gateway, across requests, and never expires by itself (a test drops entries to expire them)."""
        self.named_values = dict(named_values)
        self.storage = storage
        self.cache: dict[str, tuple[Any, Any]] = {}
        self.documents: dict[str, PolicyDocument] = {}
        paths = [API_POLICY, *sorted(FRAGMENT_DIR.glob("*.xml"))]
        for path in paths:
            text = (texts or {}).get(path.name, path.read_text(encoding="utf-8"))
            for name, value in self.named_values.items():
                text = text.replace("{{" + name + "}}", value)
            if "{{" in text and "}}" in text[text.index("{{"):]:
                raise InterpreterError(f"{path.name}: a named value without a value in the tests")
            self.documents[path.name] = parse_policy(Path(path.name), text)
        self.trees: dict[str, Any] = {}

    def tree(self, code: str) -> Any:
        if code not in self.trees:
            self.trees[code] = parse_expression_code(code)
        return self.trees[code]

    def send(self, call: Call, backend: Backend | None = None, *,
             on_error_response: Literal["synthetic", "none"] = "synthetic") -> Outcome:
        return _Run(self, call, backend or azure_openai(Reply()), on_error_response).outcome()


class _Run:
    def __init__(self, gateway: Gateway, call: Call, backend: Backend,
                 on_error_response: Literal["synthetic", "none"]) -> None:
        self.gateway = gateway
        self.backend = backend
        self.on_error_response = on_error_response
        self.events: list[tuple[str | None, str]] = []
        self.forwarded: Forwarded | None = None
        self.sent: list[Sent] = []
        self.returned: Returned | None = None
        url = parse_url(call.url)
        headers = Headers(call.headers)
        body = Body(call.body) if call.body is not None else None
        if call.body is not None and headers.get("Content-Length") is None:
            headers.set("Content-Length", [str(len(call.body.encode()))])
        self.request_body = body
        self.context = Context(
            Api=Named(Id="azure-openai", Name="Azure OpenAI", Path="openai"),
            Deployment=Named(Region="Sweden Central", ServiceName="contoso-apim", GatewayId="managed"),
            Elapsed=ELAPSED,
            Operation=None if call.operation is None else Named(Id=call.operation, Method=call.method,
                                                                Name=call.operation),
            Product=None if call.product is None or call.subscription is None else Named(Id=call.product),
            Request=Request(call.method, url, parse_url(call.url), headers, body),
            RequestId=GuidValue(REQUEST_ID),
            Subscription=None if call.subscription is None else Named(Id=call.subscription, Name=call.subscription),
            Timestamp=datetime_value(NOW),
            Variables=Variables(),
        )
        self.call = call
        self.now = datetime_value(NOW)

    # --- running ---------------------------------------------------------------------------
    def outcome(self) -> Outcome:
        api = self.gateway.documents[API_POLICY.name]
        sections = {section.tag: section for section in api.root}
        try:
            if self.call.subscription is None:
                raise GatewayError("authorization", "SubscriptionKeyNotFound",
                                   "Access denied due to missing subscription key.", "inbound", 401)
            for name in ("inbound", "backend", "outbound"):
                self.section = name
                self.run_all(list(sections[name]), api)
        except _ReturnResponse as answer:  # return-response ends the request: no later section runs
            self.returned = answer.returned
        except GatewayError as failure:
            self.context.LastError = failure.error
            if self.context.Response is None and self.on_error_response == "synthetic":
                self.context.Response = Response(failure.status, Headers(), Body(""))
            self.section = "on-error"
            with contextlib.suppress(GatewayError):  # an error in on-error ends the request
                self.run_all(list(sections["on-error"]), api)
        response = self.context.Response
        headers = {name: ",".join(values) for name, values in response.Headers.items.items()} \
            if response is not None else {}
        return Outcome(self.events, self.forwarded, dict(self.context.Variables.values), self.context.LastError,
                       response.Body.reads if response is not None else 0,
                       self.request_body.reads if self.request_body is not None else 0,
                       self.returned, headers, self.sent)

    def run_all(self, elements: list[ET.Element], document: PolicyDocument) -> None:
        for element in elements:
            self.statement(element, document)

    def evaluate(self, value: str | None, document: PolicyDocument, element: ET.Element) -> Any:
        """A policy attribute or text: its expression's value, else the literal text."""
        expression = document.expression(value)
        if expression is None:
            return value
        try:
            return Interpreter({"context": self.context}, self.now).run(self.gateway.tree(expression.code))
        except CSharpException as error:
            raise GatewayError(element.tag, "ExpressionValueEvaluationFailure", str(error), self.section) from None

    def statement(self, element: ET.Element, document: PolicyDocument) -> None:
        tag = element.tag
        if tag == "base":
            return  # no enclosing scope has policies in these tests
        if tag == "include-fragment":
            fragment = self.gateway.documents[f"{element.get('fragment-id')}.xml"]
            self.run_all(list(fragment.root), fragment)
        elif tag == "choose":
            for branch in element:
                if branch.tag == "otherwise" or self.condition(branch, document):
                    self.run_all(list(branch), document)
                    break
        elif tag == "set-variable":
            name = element.get("name")
            assert name is not None
            value = self.evaluate(element.get("value"), document, element)
            if not isinstance(value, (str, bool, int, float)) or value is None:
                raise InterpreterError(f"set-variable {name}: a {type(value).__name__} is not a basic type")
            self.context.Variables.values[name] = value
        elif tag == "set-header":
            self.set_header(element, document)
        elif tag == "set-body":
            if self.section != "inbound":
                raise InterpreterError("set-body outside inbound is not simulated")
            value = self.evaluate((element.text or "").strip(), document, element)
            if not isinstance(value, str):
                raise InterpreterError("set-body must give a string")
            self.request_body = Body(value)
            self.context.Request.Body = self.request_body
            self.context.Request.Headers.set("Content-Length", [str(len(value.encode()))])
        elif tag == "authentication-managed-identity":
            self.context.Request.Headers.set("Authorization", ["Bearer managed-identity-token"])
        elif tag == "validate-azure-ad-token":
            tenant = self.evaluate(element.get("tenant-id"), document, element)
            if not isinstance(tenant, str):
                raise InterpreterError("tenant-id must be a string")
            if not self.call.entra_token_valid:
                raise GatewayError("validate-azure-ad-token", "TokenNotPresent", "JWT not present.", self.section, 401)
        elif tag == "forward-request":
            self.forward(element)
        elif tag == "cache-lookup-value":
            key = self.evaluate(element.get("key"), document, element)
            name = element.get("variable-name")
            assert name is not None
            if key in self.gateway.cache:
                self.context.Variables.values[name] = self.gateway.cache[key][0]
            elif element.get("default-value") is not None:
                self.context.Variables.values[name] = self.evaluate(element.get("default-value"), document, element)
        elif tag == "cache-store-value":
            key = self.evaluate(element.get("key"), document, element)
            value = self.evaluate(element.get("value"), document, element)
            duration = self.evaluate(element.get("duration"), document, element)
            if not isinstance(key, str):
                raise InterpreterError("cache-store-value: the key must be a string")
            self.gateway.cache[key] = (value, duration)
        elif tag == "send-request":
            self.send_request(element, document)
        elif tag == "return-response":
            self.return_response(element, document)
        elif tag == "log-to-eventhub":
            key = self.evaluate(element.get("partition-key"), document, element)
            message = self.evaluate((element.text or "").strip(), document, element)
            if not isinstance(message, str) or not (key is None or isinstance(key, str)):
                raise InterpreterError("log-to-eventhub takes a string message and partition key")
            self.events.append((key, message))
        else:
            raise InterpreterError(f"<{tag}> is not simulated")

    def header_values(self, element: ET.Element, document: PolicyDocument) -> list[str]:
        values = []
        for child in element:
            value = self.evaluate((child.text or "").strip(), document, child)
            if not isinstance(value, str):
                raise InterpreterError(f"set-header {element.get('name')}: a value must be a string")
            values.append(value)
        return values

    def send_request(self, element: ET.Element, document: PolicyDocument) -> None:
        """send-request mode=new: set-url, set-method, set-header, authentication-managed-identity;
        with ignore-error an error (here a timeout) leaves the response variable null."""
        if element.get("mode", "new") != "new":
            raise InterpreterError("send-request mode=copy is not simulated")
        url = method = resource = None
        headers: dict[str, str] = {}
        for child in element:
            if child.tag == "set-url":
                url = self.evaluate((child.text or "").strip(), document, child)
            elif child.tag == "set-method":
                method = (child.text or "").strip()
            elif child.tag == "set-header":
                headers[child.get("name", "")] = ",".join(self.header_values(child, document))
            elif child.tag == "authentication-managed-identity":
                resource = child.get("resource")
            else:
                raise InterpreterError(f"send-request <{child.tag}> is not simulated")
        if not isinstance(url, str) or not method:
            raise InterpreterError("send-request needs set-url and set-method")
        ignore_error = element.get("ignore-error", "false") == "true"
        sent = Sent(method, url, headers, element.get("timeout"), ignore_error, resource)
        self.sent.append(sent)
        name = element.get("response-variable-name")
        assert name is not None
        reply = self.gateway.storage(sent)
        if reply.timeout:
            if not ignore_error:
                raise GatewayError("send-request", "Timeout", "The request timed out", self.section)
            self.context.Variables.values[name] = None
            return
        reply_headers = Headers(reply.headers)
        self.context.Variables.values[name] = Response(reply.status, reply_headers, Body(reply.body))

    def return_response(self, element: ET.Element, document: PolicyDocument) -> None:
        status, headers, body = 200, {}, ""
        for child in element:
            if child.tag == "set-status":
                code = self.evaluate(child.get("code"), document, child)
                status = int(code) if isinstance(code, (str, int)) else 0
            elif child.tag == "set-header":
                headers[child.get("name", "")] = ",".join(self.header_values(child, document))
            elif child.tag == "set-body":
                value = self.evaluate((child.text or "").strip(), document, child)
                if not isinstance(value, str):
                    raise InterpreterError("set-body must give a string")
                body = value
            else:
                raise InterpreterError(f"return-response <{child.tag}> is not simulated")
        raise _ReturnResponse(Returned(status, headers, body))

    def condition(self, branch: ET.Element, document: PolicyDocument) -> bool:
        value = self.evaluate(branch.get("condition"), document, branch)
        if not isinstance(value, bool):
            raise InterpreterError("a <when> condition must be a bool")
        return value

    def set_header(self, element: ET.Element, document: PolicyDocument) -> None:
        name = element.get("name")
        assert name is not None
        action = element.get("exists-action", "override")
        headers = self.context.Request.Headers if self.section in ("inbound", "backend") else \
            (self.context.Response.Headers if self.context.Response is not None else Headers())
        if action == "delete":
            headers.delete(name)
            return
        values = []
        for child in element:
            value = self.evaluate((child.text or "").strip(), document, child)
            if not isinstance(value, str):
                raise InterpreterError(f"set-header {name}: a value must be a string")
            values.append(value)
        existing = headers.key(name)
        if action == "skip" and existing is not None:
            return
        if action == "append" and existing is not None:
            headers.items[existing].extend(values)
            return
        headers.set(name, values)

    def forward(self, element: ET.Element) -> None:
        request = self.context.Request
        body = request.Body.text if request.Body is not None else None
        self.forwarded = Forwarded(request.Method, request.Url.Path + request.Url.QueryString, request.Headers, body,
                                   element.get("timeout"), dict(element.attrib))
        reply = self.backend(self.forwarded)
        if reply.timeout:
            raise GatewayError("forward-request", "Timeout", "Request to the backend service timed out", "backend")
        headers = Headers(reply.headers)
        stream = "text/event-stream" in (headers.get("Content-Type") or "")
        self.context.Response = Response(reply.status, headers,
                                         Body(reply.body, encoding=headers.get("Content-Encoding") or "",
                                              stream=stream))

