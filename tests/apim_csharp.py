"""A small interpreter for the C# subset that the APIM policy expressions (apim_policies/) are
written in, with the .NET and Newtonsoft.Json members they call, so that tests can run the
policies' own code instead of a Python copy of it.

It is deliberately strict: syntax, types or members it does not know raise InterpreterError,
which no C# `catch` can swallow, so an expression that uses something new fails its test instead
of silently taking its catch branch. .NET exceptions the code may meet at run time (a null
reference, Substring out of range, JObject.Parse of bad JSON, a failed cast, ...) are raised as
CSharpException, which `catch (Exception)` catches, as in APIM.

Semantics follow the .NET reference of each member used (String, JObject/JToken, Regex,
WebUtility, DateTime, TimeSpan, Guid); culture-sensitive string operations are treated as ordinal.
This is a test aid, not APIM: it cannot prove that APIM compiles an expression (see
apim_policies/README.md, "Checked only against the documentation").
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

Node = tuple[Any, ...]


class InterpreterError(Exception):
    """Code or a member this interpreter does not support: never caught by a C# catch."""


class CSharpException(Exception):
    """A .NET exception raised while running the code; `catch (Exception)` catches it."""

    def __init__(self, type_name: str, message: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


# --------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # ident, number, string, char, op, eof
    value: Any
    pos: int


_OPERATORS = sorted(["==", "!=", "<=", ">=", "&&", "||", "??", "?.", "++", "--", "+=", "-=", "*=", "/=", "=>",
                     "(", ")", "{", "}", "[", "]", ";", ",", ".", "?", ":", "<", ">", "=", "!", "+", "-", "*",
                     "/", "%", "&", "|"], key=len, reverse=True)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'", "b": "\b", "f": "\f",
            "v": "\v", "a": "\a"}


def _unescape(text: str, pos: int) -> tuple[str, int]:
    """The character of the escape sequence at text[pos] (just after the backslash), and the index past it."""
    c = text[pos]
    if c == "u":
        return chr(int(text[pos + 1:pos + 5], 16)), pos + 5
    if c in _ESCAPES:
        return _ESCAPES[c], pos + 1
    raise InterpreterError(f"unsupported escape \\{c}")


def tokenize(code: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c.isspace():
            i += 1
        elif code.startswith("//", i):
            end = code.find("\n", i)
            i = n if end < 0 else end
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            if end < 0:
                raise InterpreterError("unterminated comment")
            i = end + 2
        elif c == "$" and i + 1 < n and code[i + 1] in "\"@":
            raise InterpreterError("interpolated strings are not supported")
        elif c == "@" and i + 1 < n and code[i + 1] == '"':
            j, out = i + 2, []
            while True:
                if j >= n:
                    raise InterpreterError("unterminated verbatim string")
                if code[j] == '"':
                    if code[j + 1:j + 2] == '"':
                        out.append('"')
                        j += 2
                        continue
                    break
                out.append(code[j])
                j += 1
            tokens.append(Token("string", "".join(out), i))
            i = j + 1
        elif c == '"':
            j, out = i + 1, []
            while True:
                if j >= n or code[j] == "\n":
                    raise InterpreterError("unterminated string")
                if code[j] == "\\":
                    ch, j = _unescape(code, j + 1)
                    out.append(ch)
                    continue
                if code[j] == '"':
                    break
                out.append(code[j])
                j += 1
            tokens.append(Token("string", "".join(out), i))
            i = j + 1
        elif c == "'":
            if code[i + 1] == "\\":
                ch, j = _unescape(code, i + 2)
            else:
                ch, j = code[i + 1], i + 2
            if code[j:j + 1] != "'":
                raise InterpreterError("bad char literal")
            tokens.append(Token("char", ch, i))
            i = j + 1
        elif c.isdigit():
            m = re.match(r"\d+(\.\d+)?([LlUuMmDdFf]*)", code[i:])
            assert m is not None
            text = m.group(0)
            real = bool(m.group(1)) or m.group(2).lower() in ("d", "f", "m")
            number: Any = float(text.rstrip("LlUuMmDdFf")) if real else int(text.rstrip("LlUu"))
            tokens.append(Token("number", number, i))
            i += len(text)
        elif c.isalpha() or c == "_":
            m = re.match(r"[A-Za-z_]\w*", code[i:])
            assert m is not None
            tokens.append(Token("ident", m.group(0), i))
            i += len(m.group(0))
        else:
            for op in _OPERATORS:
                if code.startswith(op, i):
                    tokens.append(Token("op", op, i))
                    i += len(op)
                    break
            else:
                raise InterpreterError(f"unexpected character {c!r}")
    tokens.append(Token("eof", None, n))
    return tokens


# --------------------------------------------------------------------------------------------
# Parser: statements and expressions into nested tuples
# --------------------------------------------------------------------------------------------

TYPE_KEYWORDS = frozenset({"string", "bool", "int", "long", "double", "decimal", "float", "object", "char", "var",
                           "byte", "short", "uint", "ulong"})
# Types that may appear in a cast `(T)x`.
CAST_TYPES = TYPE_KEYWORDS | {"JObject", "JArray", "JToken", "JValue", "String", "Int32", "Int64", "Boolean",
                              "IResponse"}


class Parser:
    def __init__(self, code: str) -> None:
        self.tokens = tokenize(code)
        self.i = 0

    # --- token helpers -----------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def at(self, value: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind in ("op", "ident") and token.value == value

    def take(self, value: str | None = None) -> Token:
        token = self.peek()
        if value is not None and not self.at(value):
            raise InterpreterError(f"expected {value!r} at {token.pos}, got {token.value!r}")
        self.i += 1
        return token

    def ident(self) -> str:
        token = self.take()
        if token.kind != "ident":
            raise InterpreterError(f"expected a name at {token.pos}, got {token.value!r}")
        return str(token.value)

    # --- types -------------------------------------------------------------------------------
    def try_type(self) -> str | None:
        """A type at the current position (moving past it), or None (position unchanged)."""
        start = self.i
        token = self.peek()
        if token.kind != "ident" or token.value in ("new", "return", "if", "else", "true", "false", "null",
                                                    "foreach", "for", "while", "try", "catch", "in", "as", "is"):
            return None
        name = self.ident()
        while self.at(".") and self.peek(1).kind == "ident":
            self.take(".")
            name += "." + self.ident()
        if self.at("<"):
            self.take("<")
            args = []
            while True:
                arg = self.try_type()
                if arg is None:
                    self.i = start
                    return None
                args.append(arg)
                if self.at(","):
                    self.take(",")
                    continue
                break
            if not self.at(">"):
                self.i = start
                return None
            self.take(">")
            name += "<" + ",".join(args) + ">"
        # `T?` only as a type when a name follows (a declaration), not a conditional.
        if self.at("?") and self.peek(1).kind == "ident" and self.peek(2).kind == "op" and \
                self.peek(2).value in ("=", ";", ","):
            self.take("?")
            name += "?"
        while self.at("[") and self.at("]", 1):
            self.take("[")
            self.take("]")
            name += "[]"
        return name

    # --- statements --------------------------------------------------------------------------
    def parse_block_body(self) -> Node:
        statements = []
        while self.peek().kind != "eof":
            statements.append(self.statement())
        return ("block", statements)

    def block(self) -> Node:
        self.take("{")
        statements = []
        while not self.at("}"):
            statements.append(self.statement())
        self.take("}")
        return ("block", statements)

    def statement(self) -> Node:
        token = self.peek()
        if self.at("{"):
            return self.block()
        if self.at(";"):
            self.take(";")
            return ("block", [])
        if token.kind == "ident":
            keyword = token.value
            if keyword == "return":
                self.take()
                if self.at(";"):
                    self.take(";")
                    return ("return", None)
                value = self.expression()
                self.take(";")
                return ("return", value)
            if keyword == "if":
                self.take()
                self.take("(")
                condition = self.expression()
                self.take(")")
                then = self.statement()
                otherwise = None
                if self.at("else"):
                    self.take()
                    otherwise = self.statement()
                return ("if", condition, then, otherwise)
            if keyword == "foreach":
                self.take()
                self.take("(")
                var_type = self.try_type()
                if var_type is None:
                    raise InterpreterError("foreach needs a type")
                name = self.ident()
                self.take("in")
                iterable = self.expression()
                self.take(")")
                return ("foreach", var_type, name, iterable, self.statement())
            if keyword == "for":
                self.take()
                self.take("(")
                init = None if self.at(";") else self.simple_statement()
                self.take(";")
                test = None if self.at(";") else self.expression()
                self.take(";")
                update = None if self.at(")") else ("expr", self.expression())
                self.take(")")
                return ("for", init, test, update, self.statement())
            if keyword == "while":
                self.take()
                self.take("(")
                condition = self.expression()
                self.take(")")
                return ("while", condition, self.statement())
            if keyword in ("break", "continue"):
                self.take()
                self.take(";")
                return (keyword,)
            if keyword == "try":
                self.take()
                body = self.block()
                handlers = []
                while self.at("catch"):
                    self.take()
                    catch_type, catch_name = "Exception", None
                    if self.at("("):
                        self.take("(")
                        catch_type = self.try_type() or "Exception"
                        if self.peek().kind == "ident":
                            catch_name = self.ident()
                        self.take(")")
                    handlers.append((catch_type, catch_name, self.block()))
                final = None
                if self.at("finally"):
                    self.take()
                    final = self.block()
                return ("try", body, handlers, final)
            if keyword == "throw":
                self.take()
                thrown = None if self.at(";") else self.expression()
                self.take(";")
                return ("throw", thrown)
        statement = self.simple_statement()
        self.take(";")
        return statement

    def simple_statement(self) -> Node:
        """A declaration or an expression statement, without its `;`."""
        start = self.i
        var_type = self.try_type()
        if var_type is not None and self.peek().kind == "ident" and self.peek(1).kind == "op" and \
                self.peek(1).value in ("=", ";", ","):
            declared = []
            while True:
                name = self.ident()
                value = None
                if self.at("="):
                    self.take("=")
                    value = self.expression()
                declared.append((name, value))
                if self.at(","):
                    self.take(",")
                    continue
                break
            return ("decl", var_type, declared)
        self.i = start
        return ("expr", self.expression())

    # --- expressions -------------------------------------------------------------------------
    def expression(self) -> Node:
        return self.assignment()

    def assignment(self) -> Node:
        left = self.conditional()
        if self.peek().kind == "op" and self.peek().value in ("=", "+=", "-=", "*=", "/="):
            op = self.take().value
            if left[0] not in ("name", "index", "member"):
                raise InterpreterError("cannot assign to this expression")
            return ("assign", op, left, self.assignment())
        return left

    def conditional(self) -> Node:
        condition = self.coalesce()
        if self.at("?"):
            self.take("?")
            then = self.assignment()
            self.take(":")
            otherwise = self.assignment()
            return ("cond", condition, then, otherwise)
        return condition

    def coalesce(self) -> Node:
        left = self.binary(0)
        if self.at("??"):
            self.take()
            return ("coalesce", left, self.coalesce())
        return left

    LEVELS: ClassVar[list[tuple[str, ...]]] = [("||",), ("&&",), ("|",), ("&",), ("==", "!="),
                                               ("<", ">", "<=", ">=", "as", "is"), ("+", "-"), ("*", "/", "%")]

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            token = self.peek()
            if token.kind not in ("op", "ident") or token.value not in self.LEVELS[level]:
                return left
            op = self.take().value
            if op in ("as", "is"):
                target = self.try_type()
                if target is None:
                    raise InterpreterError(f"{op} needs a type")
                left = (op, left, target)
            else:
                left = ("binary", op, left, self.binary(level + 1))

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.value in ("!", "-", "+"):
            self.take()
            return ("unary", token.value, self.unary())
        if token.kind == "op" and token.value in ("++", "--"):
            self.take()
            return ("prefix", token.value, self.unary())
        if self.at("("):
            start = self.i
            self.take("(")
            cast_type = self.try_type()
            if cast_type is not None and cast_type.rstrip("?") in CAST_TYPES and self.at(")"):
                self.take(")")
                following = self.peek()
                if following.kind in ("ident", "number", "string", "char") or \
                        (following.kind == "op" and following.value in ("(", "!")):
                    return ("cast", cast_type, self.unary())
            self.i = start
        return self.postfix(self.primary())

    def arguments(self) -> list[tuple[str | None, Node]]:
        self.take("(")
        args: list[tuple[str | None, Node]] = []
        while not self.at(")"):
            name = None
            if self.peek().kind == "ident" and self.at(":", 1):
                name = self.ident()
                self.take(":")
            if self.at("out") or self.at("ref"):
                raise InterpreterError("out/ref arguments are not supported")
            args.append((name, self.expression()))
            if self.at(","):
                self.take(",")
        self.take(")")
        return args

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at(".") or self.at("?."):
                null_conditional = self.take().value == "?."
                name = self.ident()
                type_args: list[str] = []
                if self.at("<"):
                    start = self.i
                    self.take("<")
                    parsed = []
                    while True:
                        arg = self.try_type()
                        if arg is None:
                            break
                        parsed.append(arg)
                        if not self.at(","):
                            break
                        self.take(",")
                    if parsed and self.at(">") and self.at("(", 1):
                        self.take(">")
                        type_args = parsed
                    else:
                        self.i = start
                node = ("member", node, name, null_conditional, tuple(type_args))
            elif self.at("("):
                node = ("call", node, self.arguments())
            elif self.at("["):
                self.take("[")
                index = self.expression()
                self.take("]")
                node = ("index", node, index)
            elif self.peek().kind == "op" and self.peek().value in ("++", "--"):
                node = ("postfix", self.take().value, node)
            else:
                return node

    def primary(self) -> Node:
        token = self.take()
        if token.kind in ("number", "string", "char"):
            return ("lit", token.value)
        if token.kind == "op" and token.value == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if token.kind == "ident":
            if token.value == "true":
                return ("lit", True)
            if token.value == "false":
                return ("lit", False)
            if token.value == "null":
                return ("lit", None)
            if token.value == "new":
                if self.at("[") or self.at("{"):
                    raise InterpreterError("implicitly typed arrays and anonymous types are not supported")
                new_type = self.try_type()
                if new_type is None:
                    raise InterpreterError("new needs a type")
                if new_type.endswith("[]"):
                    items = []
                    self.take("{")
                    while not self.at("}"):
                        items.append(self.expression())
                        if self.at(","):
                            self.take(",")
                    self.take("}")
                    return ("array", new_type, items)
                args = self.arguments()
                if self.at("{"):
                    raise InterpreterError("object and collection initializers are not supported")
                return ("new", new_type, args)
            return ("name", token.value)
        raise InterpreterError(f"unexpected {token.value!r} at {token.pos}")


def parse_expression_code(code: str) -> Node:
    """The tree of a policy expression: `@(expr)` or `@{ statements }`."""
    if code.startswith("@(") and code.endswith(")"):
        parser = Parser(code[2:-1])
        node = parser.expression()
        if parser.peek().kind != "eof":
            raise InterpreterError("trailing code after the expression")
        return ("expression", node)
    if code.startswith("@{") and code.endswith("}"):
        return ("statements", Parser(code[2:-1]).parse_block_body())
    raise InterpreterError("not a policy expression")


# --------------------------------------------------------------------------------------------
# Runtime values: enums, Newtonsoft.Json tokens, host objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnumValue:
    type_name: str
    name: str


ENUMS: dict[str, frozenset[str]] = {
    "StringComparison": frozenset({"Ordinal", "OrdinalIgnoreCase", "CurrentCulture", "CurrentCultureIgnoreCase",
                                   "InvariantCulture", "InvariantCultureIgnoreCase"}),
    "JTokenType": frozenset({"None", "Object", "Array", "Constructor", "Property", "Comment", "Integer", "Float",
                             "String", "Boolean", "Null", "Undefined", "Date", "Raw", "Bytes", "Guid", "Uri",
                             "TimeSpan"}),
    "Formatting": frozenset({"None", "Indented"}),
    "StringSplitOptions": frozenset({"None", "RemoveEmptyEntries", "TrimEntries"}),
    "RegexOptions": frozenset({"None", "IgnoreCase", "Multiline", "Singleline", "CultureInvariant"}),
    "DateTimeKind": frozenset({"Utc"}),
}


def _ignore_case(comparison: Any) -> bool:
    if comparison is None:
        return False
    if not isinstance(comparison, EnumValue) or comparison.type_name != "StringComparison":
        raise InterpreterError("expected a StringComparison")
    return comparison.name.endswith("IgnoreCase")


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")


class JToken:
    """Newtonsoft.Json.Linq.JToken."""

    type_name = "None"

    @property
    def Type(self) -> EnumValue:
        return EnumValue("JTokenType", self.type_name)

    def to_python(self) -> Any:
        raise NotImplementedError


class JValue(JToken):
    def __init__(self, value: Any, type_name: str) -> None:
        self.value = value
        self.type_name = type_name

    def to_python(self) -> Any:
        return self.value


class JObject(JToken):
    type_name = "Object"

    def __init__(self) -> None:
        self.properties: dict[str, JToken] = {}

    def to_python(self) -> Any:
        return {name: token.to_python() for name, token in self.properties.items()}


class JArray(JToken):
    type_name = "Array"

    def __init__(self, items: list[JToken] | None = None) -> None:
        self.items = items or []

    def to_python(self) -> Any:
        return [item.to_python() for item in self.items]


@dataclass
class JProperty:
    Name: str
    Value: JToken


def to_jtoken(value: Any) -> JToken:
    """A .NET value as Newtonsoft turns it into a token (JProperty values, JObject indexer sets)."""
    if isinstance(value, JToken):
        return value
    if value is None:
        return JValue(None, "Null")
    if isinstance(value, bool):
        return JValue(value, "Boolean")
    if isinstance(value, int):
        return JValue(value, "Integer")
    if isinstance(value, float):
        return JValue(value, "Float")
    if isinstance(value, str):
        return JValue(value, "String")
    raise InterpreterError(f"cannot make a JToken from {type(value).__name__}")


def from_json(value: Any) -> JToken:
    """A parsed JSON value as JObject.Parse gives it (ISO date strings become Date tokens)."""
    if isinstance(value, dict):
        obj = JObject()
        for name, item in value.items():
            obj.properties[name] = from_json(item)
        return obj
    if isinstance(value, list):
        return JArray([from_json(item) for item in value])
    if isinstance(value, str) and _ISO_DATE.match(value):
        return JValue(value, "Date")
    return to_jtoken(value)


def parse_jobject(text: Any) -> JObject:
    if text is None:
        raise CSharpException("ArgumentNullException", "json")
    if not isinstance(text, str):
        raise InterpreterError("JObject.Parse takes a string")
    try:
        parsed = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as error:
        raise CSharpException("JsonReaderException", str(error)) from None
    if not isinstance(parsed, dict):
        raise CSharpException("JsonReaderException", "Error reading JObject from JsonReader")
    token = from_json(parsed)
    assert isinstance(token, JObject)
    return token


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Newtonsoft keeps the last of duplicate names when loading (MergeArrayHandling aside).
    return dict(pairs)


_NEWTONSOFT_ESCAPES = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def serialize(token: JToken, indented: bool) -> str:
    """JToken.ToString(Formatting): properties in order, Newtonsoft's default string escaping."""
    text = json.dumps(token.to_python(), ensure_ascii=False, separators=(",", ":") if not indented else (",", ": "),
                      indent=2 if indented else None, allow_nan=False)
    for char, escaped in _NEWTONSOFT_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def jtoken_to_string(token: Any) -> str | None:
    """The explicit (string) conversion of a JToken."""
    if token is None:
        return None
    if not isinstance(token, JValue):
        raise CSharpException("ArgumentException", f"Can not convert {token.type_name} to String.")
    if token.type_name == "Null":
        return None
    if token.type_name == "Boolean":
        return "True" if token.value else "False"
    return str(token.value)


def jtoken_to_long(token: Any) -> int:
    if not isinstance(token, JValue) or token.type_name not in ("Integer", "Float", "String"):
        name = token.type_name if isinstance(token, JToken) else "null"
        raise CSharpException("ArgumentException", f"Can not convert {name} to Int64.")
    if token.type_name == "Integer":
        return int(token.value)
    if token.type_name == "Float":
        return round(float(token.value))  # Convert.ToInt64(double): to nearest, ties to even
    try:
        return int(str(token.value).strip())
    except ValueError:
        raise CSharpException("FormatException", "not an integer") from None


def jtoken_to_bool(token: Any) -> bool:
    if isinstance(token, JValue) and token.type_name == "Boolean":
        return bool(token.value)
    if isinstance(token, JValue) and token.type_name == "Integer":
        return bool(token.value != 0)
    if isinstance(token, JValue) and token.type_name == "String" and str(token.value).lower() in ("true", "false"):
        return str(token.value).lower() == "true"
    name = token.type_name if isinstance(token, JToken) else "null"
    raise CSharpException("ArgumentException", f"Can not convert {name} to Boolean.")


class HostObject:
    """An object of the host (APIM's context and its parts): `members` lists what code may read;
    a member that is a Python method is callable (it gets the type arguments as `type_args`)."""

    members: ClassVar[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class TimeSpan:
    seconds: float

    @property
    def TotalMilliseconds(self) -> float:
        return self.seconds * 1000

    @property
    def TotalSeconds(self) -> float:
        return self.seconds

    @property
    def Ticks(self) -> int:
        return round(self.seconds * 10**7)


@dataclass(frozen=True)
class DateTimeValue:
    """A UTC System.DateTime with 100 ns ticks."""

    ticks: int  # since 0001-01-01

    def to_datetime(self) -> datetime:
        return datetime(1, 1, 1) + timedelta(microseconds=self.ticks // 10)  # noqa: DTZ001 - Kind Utc below

    def round_trip(self) -> str:
        base = self.to_datetime()
        return base.strftime("%Y-%m-%dT%H:%M:%S") + f".{self.ticks % 10**7:07d}Z"


def datetime_value(moment: datetime) -> DateTimeValue:
    delta = moment.replace(tzinfo=None) - datetime(1, 1, 1)  # noqa: DTZ001
    return DateTimeValue((delta.days * 86400 + delta.seconds) * 10**7 + delta.microseconds * 10)


@dataclass(frozen=True)
class GuidValue:
    text: str


@dataclass(frozen=True)
class StaticType:
    name: str


STATIC_ALIASES = {"string": "String", "String": "String", "int": "Int32", "Int32": "Int32", "long": "Int64",
                  "Int64": "Int64", "bool": "Boolean", "Boolean": "Boolean", "double": "Double", "Double": "Double"}
STATIC_TYPES = frozenset({"String", "Int32", "Int64", "Boolean", "Double", "JObject", "JToken", "JArray", "JValue",
                          "DateTime", "TimeSpan", "Regex", "WebUtility", "Math", "Guid", "Convert", "Uri", *ENUMS})


# --------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


@dataclass
class BoundMethod:
    target: Any
    name: str
    type_args: tuple[str, ...]
    static: bool = False


MAX_STEPS = 200_000


class Interpreter:
    def __init__(self, globals_: Mapping[str, Any], now: DateTimeValue) -> None:
        self.scopes: list[dict[str, Any]] = [dict(globals_)]
        self.now = now
        self.steps = 0

    # --- entry point -------------------------------------------------------------------------
    def run(self, tree: Node) -> Any:
        kind, body = tree
        if kind == "expression":
            return self.eval(body)
        try:
            self.exec(body)
        except _Return as returned:
            return returned.value
        raise InterpreterError("a multi-statement expression ended without return")

    # --- scopes ------------------------------------------------------------------------------
    def lookup(self, name: str) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        alias = STATIC_ALIASES.get(name, name)
        if alias in STATIC_TYPES:
            return StaticType(alias)
        raise InterpreterError(f"unknown name {name}")

    def store(self, name: str, value: Any) -> None:
        for scope in reversed(self.scopes):
            if name in scope:
                scope[name] = value
                return
        raise InterpreterError(f"assignment to undeclared {name}")

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise InterpreterError("too many steps (a loop that does not end?)")

    # --- statements --------------------------------------------------------------------------
    def exec(self, node: Node) -> None:
        self.tick()
        kind = node[0]
        if kind == "block":
            self.scopes.append({})
            try:
                for statement in node[1]:
                    self.exec(statement)
            finally:
                self.scopes.pop()
        elif kind == "decl":
            for name, value in node[2]:
                if name in self.scopes[-1]:
                    raise InterpreterError(f"{name} declared twice")
                self.scopes[-1][name] = self.convert(node[1], self.eval(value)) if value is not None else None
        elif kind == "expr":
            if node[1][0] not in ("assign", "call", "postfix", "prefix"):
                raise InterpreterError("only assignment, call, increment and decrement can be statements")
            self.eval(node[1])
        elif kind == "return":
            raise _Return(None if node[1] is None else self.eval(node[1]))
        elif kind == "if":
            if self.boolean(self.eval(node[1])):
                self.exec(node[2])
            elif node[3] is not None:
                self.exec(node[3])
        elif kind == "foreach":
            items = self.iterate(self.eval(node[3]))
            for item in items:
                self.scopes.append({node[2]: item})
                try:
                    self.exec(node[4])
                except _Break:
                    break
                except _Continue:
                    continue
                finally:
                    self.scopes.pop()
        elif kind in ("for", "while"):
            self.scopes.append({})
            try:
                if kind == "for" and node[1] is not None:
                    self.exec(node[1])
                condition = node[2] if kind == "for" else node[1]
                body = node[4] if kind == "for" else node[2]
                while condition is None or self.boolean(self.eval(condition)):
                    self.tick()
                    try:
                        self.exec(body)
                    except _Break:
                        break
                    except _Continue:
                        pass
                    if kind == "for" and node[3] is not None:
                        self.exec(node[3])
            finally:
                self.scopes.pop()
        elif kind == "break":
            raise _Break
        elif kind == "continue":
            raise _Continue
        elif kind == "try":
            self.exec_try(node)
        elif kind == "throw":
            raise CSharpException("Exception", "thrown by the expression")
        else:
            raise InterpreterError(f"unsupported statement {kind}")

    def exec_try(self, node: Node) -> None:
        _, body, handlers, final = node
        try:
            self.exec(body)
        except CSharpException as error:
            for catch_type, catch_name, handler in handlers:
                short = catch_type.split(".")[-1]
                if short in ("Exception", error.type_name):
                    self.scopes.append({catch_name: error} if catch_name else {})
                    try:
                        self.exec(handler)
                    finally:
                        self.scopes.pop()
                    break
            else:
                raise
        finally:
            if final is not None:
                self.exec(final)

    def iterate(self, value: Any) -> list[Any]:
        if value is None:
            raise CSharpException("NullReferenceException", "foreach over null")
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return list(value)
        if isinstance(value, JArray):
            return list(value.items)
        if isinstance(value, JObject):
            return [JProperty(name, token) for name, token in value.properties.items()]
        raise InterpreterError(f"cannot iterate over {type(value).__name__}")

    # --- conversions -------------------------------------------------------------------------
    @staticmethod
    def boolean(value: Any) -> bool:
        if not isinstance(value, bool):
            raise InterpreterError(f"expected a bool, got {type(value).__name__}")
        return value

    def convert(self, declared: str, value: Any) -> Any:
        """A value stored in a variable of the declared type (implicit conversions only)."""
        base = declared.rstrip("?")
        nullable = declared.endswith("?") or base not in ("bool", "int", "long", "double", "char")
        if value is None:
            if not nullable:
                raise InterpreterError(f"null assigned to {declared}")
            return None
        checks: dict[str, Callable[[Any], bool]] = {
            "string": lambda v: isinstance(v, str),
            "bool": lambda v: isinstance(v, bool),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "JObject": lambda v: isinstance(v, JObject),
            "JArray": lambda v: isinstance(v, JArray),
            "JToken": lambda v: isinstance(v, JToken),
            "TimeSpan": lambda v: isinstance(v, TimeSpan),
            "string[]": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
        }
        check = checks.get(base)
        if check is None:
            if base in ("var", "object") or base[0].isupper():
                return value  # host and other types: not checked
            raise InterpreterError(f"unsupported declared type {declared}")
        if not check(value):
            raise InterpreterError(f"a {type(value).__name__} stored in a {declared}")
        return float(value) if base == "double" else value

    def cast(self, target: str, value: Any) -> Any:
        base = STATIC_ALIASES.get(target.rstrip("?"), target.rstrip("?"))
        if isinstance(value, JToken) or (value is None and base in ("String",)):
            if base == "String":
                return jtoken_to_string(value)
            if base in ("Int64", "Int32"):
                result = jtoken_to_long(value)
                if base == "Int32" and not -2**31 <= result < 2**31:
                    raise CSharpException("OverflowException", "Int32")
                return result
            if base == "Boolean":
                return jtoken_to_bool(value)
            if base in ("JObject", "JArray", "JToken", "JValue"):
                expected = {"JObject": JObject, "JArray": JArray, "JToken": JToken, "JValue": JValue}[base]
                if not isinstance(value, expected):
                    raise CSharpException("InvalidCastException", f"to {base}")
                return value
        if base in ("Int64", "Int32") and isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.trunc(value)
        if base == "Double" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base == "String" and isinstance(value, str):
            return value
        if base == "Boolean" and isinstance(value, bool):
            return value
        if base in ("JToken", "JObject") and value is None:
            return None
        if base == "IResponse" and (value is None or (isinstance(value, HostObject) and "StatusCode" in value.members)):
            return value  # send-request's response variable: a response, or null (ignore-error)
        raise InterpreterError(f"unsupported cast to {target} of {type(value).__name__}")

    # --- expressions -------------------------------------------------------------------------
    def eval(self, node: Node) -> Any:
        self.tick()
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "name":
            return self.lookup(node[1])
        if kind == "member":
            target = self.eval(node[1])
            if target is None:
                if node[3]:
                    return None
                raise CSharpException("NullReferenceException", f"null.{node[2]}")
            return self.member(target, node[2], node[4])
        if kind == "call":
            callee = node[1]
            if callee[0] == "member":
                target = self.eval(callee[1])
                if target is None:
                    if callee[3]:
                        return None
                    raise CSharpException("NullReferenceException", f"null.{callee[2]}()")
                method = BoundMethod(target, callee[2], callee[4], isinstance(target, StaticType))
            else:
                raise InterpreterError("only member calls are supported")
            positional = []
            named: dict[str, Any] = {}
            for name, arg in node[2]:
                if name is None:
                    positional.append(self.eval(arg))
                else:
                    named[name] = self.eval(arg)
            return self.call(method, positional, named)
        if kind == "index":
            target = self.eval(node[1])
            return self.index(target, self.eval(node[2]))
        if kind == "new":
            if any(name is not None for name, _ in node[2]):
                raise InterpreterError(f"named arguments to new {node[1]}")
            return self.construct(node[1], [self.eval(arg) for _, arg in node[2]])
        if kind == "array":
            element = node[1][:-2]
            return [self.convert(element, self.eval(item)) for item in node[2]]
        if kind == "unary":
            value = self.eval(node[2])
            if node[1] == "!":
                return not self.boolean(value)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise InterpreterError("unary minus on a non-number")
            return -value if node[1] == "-" else value
        if kind == "binary":
            return self.binary(node[1], node[2], node[3])
        if kind == "cond":
            return self.eval(node[2]) if self.boolean(self.eval(node[1])) else self.eval(node[3])
        if kind == "coalesce":
            left = self.eval(node[1])
            return left if left is not None else self.eval(node[2])
        if kind == "cast":
            return self.cast(node[1], self.eval(node[2]))
        if kind == "as":
            value = self.eval(node[1])
            expected = {"JObject": JObject, "JArray": JArray, "JValue": JValue, "JToken": JToken, "string": str,
                        "String": str}.get(node[2])
            if expected is None:
                raise InterpreterError(f"unsupported `as {node[2]}`")
            return value if isinstance(value, expected) else None
        if kind == "assign":
            return self.assign(node[1], node[2], node[3])
        if kind in ("postfix", "prefix"):
            target = node[2]
            if target[0] != "name":
                raise InterpreterError("++/-- only on local variables")
            old = self.lookup(target[1])
            new = old + (1 if node[1] == "++" else -1)
            self.store(target[1], new)
            return old if kind == "postfix" else new
        raise InterpreterError(f"unsupported expression {kind}")

    def assign(self, op: str, target: Node, value_node: Node) -> Any:
        value = self.eval(value_node)
        if op != "=":
            current = self.eval(target)
            value = self.arithmetic(op[0], current, value)
        if target[0] == "name":
            self.store(target[1], value)
        elif target[0] == "index":
            obj = self.eval(target[1])
            key = self.eval(target[2])
            if isinstance(obj, JObject) and isinstance(key, str):
                obj.properties[key] = to_jtoken(value)
            else:
                raise InterpreterError("only JObject[\"name\"] = value is supported")
        else:
            raise InterpreterError("member assignment is not supported (context is read-only)")
        return value

    def binary(self, op: str, left_node: Node, right_node: Node) -> Any:
        if op in ("&&", "||"):
            left = self.boolean(self.eval(left_node))
            if (op == "&&" and not left) or (op == "||" and left):
                return left
            return self.boolean(self.eval(right_node))
        left, right = self.eval(left_node), self.eval(right_node)
        if op in ("==", "!="):
            return self.equals(left, right) == (op == "==")
        if op in ("<", ">", "<=", ">="):
            for value in (left, right):
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise InterpreterError(f"{op} on a non-number")
            return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
        if op in ("&", "|") and isinstance(left, bool) and isinstance(right, bool):
            return (left and right) if op == "&" else (left or right)
        return self.arithmetic(op, left, right)

    @staticmethod
    def equals(left: Any, right: Any) -> bool:
        if left is None or right is None:
            return left is None and right is None
        if isinstance(left, JToken) or isinstance(right, JToken):
            return left is right
        if isinstance(left, bool) != isinstance(right, bool):
            raise InterpreterError("== between a bool and a non-bool")
        if isinstance(left, str) != isinstance(right, str):
            raise InterpreterError("== between a string and a non-string")
        return bool(left == right)

    @staticmethod
    def text_of(value: Any) -> str:
        """What string concatenation makes of a value."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, (str, int)):
            return str(value)
        if isinstance(value, GuidValue):
            return value.text
        raise InterpreterError(f"concatenation with {type(value).__name__}")

    def arithmetic(self, op: str, left: Any, right: Any) -> Any:
        if op == "+" and (isinstance(left, str) or isinstance(right, str)):
            return self.text_of(left) + self.text_of(right)
        for value in (left, right):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise InterpreterError(f"{op} on {type(value).__name__}")
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if op in ("/", "%"):
            if right == 0 and isinstance(right, int) and isinstance(left, int):
                raise CSharpException("DivideByZeroException")
            if isinstance(left, int) and isinstance(right, int):
                quotient = abs(left) // abs(right) * (1 if (left >= 0) == (right >= 0) else -1)
                return quotient if op == "/" else left - quotient * right
            return left / right if op == "/" else math.fmod(left, right)
        raise InterpreterError(f"unsupported operator {op}")

    # --- members -----------------------------------------------------------------------------
    def member(self, target: Any, name: str, type_args: tuple[str, ...]) -> Any:
        if isinstance(target, StaticType):
            return self.static_member(target.name, name, type_args)
        if isinstance(target, str):
            if name == "Length":
                return len(target)
            return BoundMethod(target, name, type_args)
        if isinstance(target, JToken):
            if name == "Type":
                return target.Type
            if name == "Count" and isinstance(target, (JObject, JArray)):
                return len(target.properties) if isinstance(target, JObject) else len(target.items)
            return BoundMethod(target, name, type_args)
        if isinstance(target, JProperty):
            if name in ("Name", "Value"):
                return getattr(target, name)
            raise InterpreterError(f"JProperty.{name}")
        if isinstance(target, TimeSpan):
            if name in ("TotalMilliseconds", "TotalSeconds", "Ticks"):
                return getattr(target, name)
            raise InterpreterError(f"TimeSpan.{name}")
        if isinstance(target, (DateTimeValue, GuidValue, bool, int, float, list, CSharpException)):
            if isinstance(target, list) and name == "Length":
                return len(target)
            if isinstance(target, CSharpException) and name == "Message":
                return str(target)
            return BoundMethod(target, name, type_args)
        if isinstance(target, HostObject):
            if name not in type(target).members:
                raise InterpreterError(f"{type(target).__name__}.{name} is not a member of this host object")
            value = getattr(target, name)
            if callable(value) and not isinstance(value, HostObject):
                return BoundMethod(target, name, type_args)
            return value
        raise InterpreterError(f"member {name} of {type(target).__name__}")

    def static_member(self, type_name: str, name: str, type_args: tuple[str, ...]) -> Any:
        if type_name in ENUMS:
            if name not in ENUMS[type_name]:
                raise InterpreterError(f"{type_name}.{name}")
            return EnumValue(type_name, name)
        if type_name == "DateTime" and name == "UtcNow":
            return self.now
        if type_name == "String" and name == "Empty":
            return ""
        return BoundMethod(StaticType(type_name), name, type_args, static=True)

    def index(self, target: Any, key: Any) -> Any:
        if target is None:
            raise CSharpException("NullReferenceException", "null[...]")
        if isinstance(target, str):
            if not isinstance(key, int) or not 0 <= key < len(target):
                raise CSharpException("IndexOutOfRangeException")
            return target[key]
        if isinstance(target, list):
            if not isinstance(key, int) or not 0 <= key < len(target):
                raise CSharpException("IndexOutOfRangeException")
            return target[key]
        if isinstance(target, JObject):
            if not isinstance(key, str):
                raise CSharpException("ArgumentException", "JObject indexer takes a property name")
            return target.properties.get(key)
        if isinstance(target, JArray):
            if not isinstance(key, int) or not 0 <= key < len(target.items):
                raise CSharpException("ArgumentOutOfRangeException")
            return target.items[key]
        if isinstance(target, JValue):
            raise CSharpException("InvalidOperationException", "Cannot access child value on JValue.")
        if isinstance(target, HostObject) and hasattr(target, "item"):
            return target.item(key)
        raise InterpreterError(f"indexer of {type(target).__name__}")

    def construct(self, type_name: str, args: list[Any]) -> Any:
        if type_name == "JObject":
            obj = JObject()
            for arg in args:
                if not isinstance(arg, JProperty):
                    raise InterpreterError("new JObject(...) takes JProperty arguments here")
                if arg.Name in obj.properties:
                    raise CSharpException("ArgumentException", f"Can not add property {arg.Name} to JObject. "
                                                               "Property with the same name already exists on object.")
                obj.properties[arg.Name] = arg.Value
            return obj
        if type_name == "JProperty":
            if len(args) != 2 or not isinstance(args[0], str):
                raise InterpreterError("new JProperty(name, value)")
            return JProperty(args[0], to_jtoken(args[1]))
        if type_name == "JArray":
            return JArray([to_jtoken(arg) for arg in args])
        raise InterpreterError(f"new {type_name}")

    # --- calls -------------------------------------------------------------------------------
    def call(self, method: BoundMethod, args: list[Any], named: dict[str, Any]) -> Any:
        target, name = method.target, method.name
        if method.static:
            return self.static_call(target.name, name, args, named)
        if isinstance(target, str):
            if named:
                raise InterpreterError(f"named arguments to String.{name}")
            return string_method(target, name, args)
        if isinstance(target, JToken):
            return jtoken_method(target, name, args)
        if isinstance(target, DateTimeValue):
            if name == "Subtract" and len(args) == 1 and isinstance(args[0], TimeSpan):
                return DateTimeValue(target.ticks - args[0].Ticks)
            if name == "ToString" and args == ["o"]:
                return target.round_trip()
            raise InterpreterError(f"DateTime.{name}")
        if isinstance(target, GuidValue):
            if name == "ToString" and not args:
                return target.text
            raise InterpreterError(f"Guid.{name}")
        if isinstance(target, (bool, int, float)):
            if name == "ToString" and not args:
                return self.text_of(target) if not isinstance(target, float) else repr(target)
            raise InterpreterError(f"{type(target).__name__}.{name}")
        if isinstance(target, HostObject):
            function = getattr(target, name)
            return function(*args, type_args=method.type_args, **named)
        raise InterpreterError(f"call {name} on {type(target).__name__}")

    def static_call(self, type_name: str, name: str, args: list[Any], named: dict[str, Any]) -> Any:
        if named:
            raise InterpreterError(f"named arguments to {type_name}.{name}")
        if type_name == "String":
            return string_static(name, args)
        if type_name == "JObject" and name == "Parse" and len(args) == 1:
            return parse_jobject(args[0])
        if type_name in ("Int32", "Int64") and name == "Parse" and len(args) == 1:
            if not isinstance(args[0], str):
                raise CSharpException("ArgumentNullException" if args[0] is None else "FormatException")
            text = args[0].strip()
            if not re.fullmatch(r"[+-]?\d+", text):
                raise CSharpException("FormatException", text)
            value = int(text)
            limit = 2**31 if type_name == "Int32" else 2**63
            if not -limit <= value < limit:
                raise CSharpException("OverflowException", text)
            return value
        if type_name == "Regex" and name == "IsMatch" and len(args) in (2, 3):
            if not all(isinstance(a, str) for a in args[:2]):
                raise CSharpException("ArgumentNullException", "Regex.IsMatch")
            flags = re.IGNORECASE if len(args) == 3 and args[2] == EnumValue("RegexOptions", "IgnoreCase") else 0
            return re.search(_dotnet_pattern(args[1]), args[0], flags) is not None
        if type_name == "Regex" and name == "Replace" and len(args) == 3:
            if not all(isinstance(a, str) for a in args):
                raise CSharpException("ArgumentNullException", "Regex.Replace")
            return re.sub(_dotnet_pattern(args[1]), args[2].replace("\\", "\\\\"), args[0])
        if type_name == "Uri" and name == "EscapeDataString" and len(args) == 1:
            if not isinstance(args[0], str):
                raise CSharpException("ArgumentNullException", "Uri.EscapeDataString")
            return urllib.parse.quote(args[0], safe="-_.~")  # RFC 3986 unreserved characters stay
        if type_name == "WebUtility" and name == "UrlDecode" and len(args) == 1:
            return None if args[0] is None else urllib.parse.unquote_plus(args[0])
        if type_name == "Math" and name in ("Min", "Max") and len(args) == 2:
            return min(args) if name == "Min" else max(args)
        raise InterpreterError(f"{type_name}.{name}")


def _dotnet_pattern(pattern: str) -> str:
    """A .NET regular expression as Python's re reads it (the subset used: classes, anchors, counts)."""
    if "(?<" in pattern and "(?<=" not in pattern and "(?<!" not in pattern:
        pattern = pattern.replace("(?<", "(?P<")
    return pattern


# --- System.String -------------------------------------------------------------------------------


def _chars(args: list[Any]) -> str:
    chars = []
    for arg in args:
        if isinstance(arg, str) and len(arg) == 1:
            chars.append(arg)
        elif isinstance(arg, list):
            chars.extend(arg)
        else:
            raise InterpreterError("expected char arguments")
    return "".join(chars)


def _find(haystack: str, needle: Any, start: int, ignore_case: bool, last: bool) -> int:
    if not isinstance(needle, str):
        raise CSharpException("ArgumentNullException", "value")
    if not 0 <= start <= len(haystack):
        raise CSharpException("ArgumentOutOfRangeException", "startIndex")
    if ignore_case:
        haystack, needle = haystack.lower(), needle.lower()
    return haystack.rfind(needle, 0) if last else haystack.find(needle, start)


def string_method(s: str, name: str, args: list[Any]) -> Any:
    if name == "Substring":
        start = args[0]
        length = args[1] if len(args) > 1 else len(s) - start if isinstance(start, int) else 0
        if not isinstance(start, int) or not isinstance(length, int) or start < 0 or length < 0 or \
                start + length > len(s):
            raise CSharpException("ArgumentOutOfRangeException", f"Substring({start}, {length}) of {len(s)}")
        return s[start:start + length]
    if name in ("IndexOf", "LastIndexOf"):
        comparison = args[-1] if args and isinstance(args[-1], EnumValue) else None
        rest = args[:-1] if comparison is not None else args
        start = rest[1] if len(rest) > 1 else 0
        if len(rest) > 2:
            raise InterpreterError(f"String.{name} with a count")
        return _find(s, rest[0], start, _ignore_case(comparison), name == "LastIndexOf")
    if name in ("StartsWith", "EndsWith", "Contains", "Equals"):
        if not args or len(args) > 2:
            raise InterpreterError(f"String.{name} arguments")
        value = args[0]
        if value is None:
            if name == "Equals":
                return False
            raise CSharpException("ArgumentNullException", "value")
        if not isinstance(value, str):
            raise InterpreterError(f"String.{name} of a non-string")
        a, b = (s.lower(), value.lower()) if _ignore_case(args[1] if len(args) > 1 else None) else (s, value)
        return {"StartsWith": a.startswith, "EndsWith": a.endswith, "Contains": a.__contains__,
                "Equals": a.__eq__}[name](b)
    if name in ("Trim", "TrimStart", "TrimEnd"):
        chars = _chars(args) if args else None
        return {"Trim": s.strip, "TrimStart": s.lstrip, "TrimEnd": s.rstrip}[name](chars)
    if name in ("ToLower", "ToLowerInvariant") and not args:
        return s.lower()
    if name in ("ToUpper", "ToUpperInvariant") and not args:
        return s.upper()
    if name == "Replace" and len(args) == 2:
        old, new = args
        if old is None:
            raise CSharpException("ArgumentNullException", "oldValue")
        if old == "":
            raise CSharpException("ArgumentException", "oldValue is empty")
        return s.replace(old, new or "")
    if name == "Split":
        return _split(s, args)
    if name == "ToString" and not args:
        return s
    if name == "AsJwt" and not args:
        return parse_jwt(s)
    if name == "IsNullOrEmpty":
        raise InterpreterError("IsNullOrEmpty is static")
    raise InterpreterError(f"String.{name}")


def _split(s: str, args: list[Any]) -> list[str]:
    options = None
    if args and isinstance(args[-1], EnumValue):
        options = args[-1]
        args = args[:-1]
    separators: list[str] = []
    for arg in args:
        if isinstance(arg, str):
            separators.append(arg)
        elif isinstance(arg, list):
            separators.extend(arg)
        else:
            raise InterpreterError("String.Split separators")
    if not separators:
        raise InterpreterError("String.Split without separators")
    pattern = "|".join(re.escape(sep) for sep in sorted(separators, key=len, reverse=True) if sep)
    parts = re.split(pattern, s) if pattern else [s]
    if options is not None and options.name == "RemoveEmptyEntries":
        parts = [part for part in parts if part]
    return parts


def string_static(name: str, args: list[Any]) -> Any:
    if name == "IsNullOrEmpty" and len(args) == 1:
        return args[0] is None or args[0] == ""
    if name == "IsNullOrWhiteSpace" and len(args) == 1:
        return args[0] is None or args[0].strip() == ""
    if name == "Equals" and len(args) in (2, 3):
        a, b = args[0], args[1]
        if a is None or b is None:
            return a is None and b is None
        if _ignore_case(args[2] if len(args) == 3 else None):
            return bool(a.lower() == b.lower())
        return bool(a == b)
    if name == "CompareOrdinal" and len(args) == 2:
        a, b = args
        if a is None or b is None:
            return 0 if a is b else (-1 if a is None else 1)
        return (a > b) - (a < b)
    if name == "Join" and len(args) >= 2:
        values = args[1] if len(args) == 2 and isinstance(args[1], list) else args[1:]
        return args[0].join(Interpreter.text_of(value) for value in values)
    raise InterpreterError(f"String.{name}")


# --- JToken members ------------------------------------------------------------------------------


def jtoken_method(token: JToken, name: str, args: list[Any]) -> Any:
    if name == "ToString":
        if not args:
            return serialize(token, indented=True) if isinstance(token, (JObject, JArray)) else \
                jtoken_to_string(token) or ""
        if args == [EnumValue("Formatting", "None")]:
            return serialize(token, indented=False)
        if args == [EnumValue("Formatting", "Indented")]:
            return serialize(token, indented=True)
        raise InterpreterError("JToken.ToString arguments")
    if name == "SelectToken" and len(args) == 1 and isinstance(args[0], str):
        current: JToken | None = token
        for part in args[0].split("."):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
                raise InterpreterError(f"SelectToken path {args[0]!r}")
            current = current.properties.get(part) if isinstance(current, JObject) else None
            if current is None:
                return None
        return current
    if isinstance(token, JObject):
        if name == "Property" and len(args) == 1:
            value = token.properties.get(args[0])
            return None if value is None else JProperty(args[0], value)
        if name == "ContainsKey" and len(args) == 1:
            return args[0] in token.properties
    raise InterpreterError(f"{type(token).__name__}.{name}")


# --- Jwt -------------------------------------------------------------------------------------------


class ClaimsDictionary(HostObject):
    members: ClassVar[frozenset[str]] = frozenset({"GetValueOrDefault", "ContainsKey"})

    def __init__(self, claims: Mapping[str, list[str]]) -> None:
        self.claims = claims

    def GetValueOrDefault(self, name: str, default: Any, *, type_args: tuple[str, ...] = ()) -> Any:
        values = self.claims.get(name)
        return default if values is None else ",".join(values)

    def ContainsKey(self, name: str, *, type_args: tuple[str, ...] = ()) -> bool:
        return name in self.claims


class Jwt(HostObject):
    members: ClassVar[frozenset[str]] = frozenset({"Claims", "Issuer", "Subject", "Audiences", "Id"})

    def __init__(self, claims: Mapping[str, Any]) -> None:
        listed = {name: [str(v) for v in value] if isinstance(value, list) else [str(value)]
                  for name, value in claims.items()}
        self.Claims = ClaimsDictionary(listed)
        self.Issuer = claims.get("iss")
        self.Subject = claims.get("sub")
        self.Audiences = listed.get("aud", [])
        self.Id = claims.get("jti")


def parse_jwt(text: str) -> Jwt | None:
    """String.AsJwt(): the token's claims when it is a JWS compact token with a JSON payload, else null."""
    import base64

    parts = text.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except ValueError:
        return None
    return Jwt(claims) if isinstance(claims, dict) else None


def run_expression(code: str, globals_: Mapping[str, Any], now: DateTimeValue) -> Any:
    """Evaluate one policy expression (`@(...)` or `@{...}`) with `context` etc. in globals_."""
    return Interpreter(globals_, now).run(parse_expression_code(code))


def walk(node: Any) -> Iterator[Node]:
    """Every tuple node of a parsed tree."""
    if isinstance(node, tuple):
        yield node
        for child in node:
            yield from walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk(child)
