"""Static checks of terraform/ without a Terraform CLI or Azure: python-hcl2 parses every file and
each check returns the problems it finds (an empty list when the configuration is sound).

The checks know Terraform's expression syntax only as far as this configuration uses it:
references (`var.x`, `local.x`, `module.x.y`, `TYPE.NAME`), string templates made of `${...}`
interpolations, and calls of the file functions. Whatever they cannot resolve is reported, never
assumed good. tests/test_terraform.py runs them on the repository and on seeded mistakes.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

META_ARGUMENTS = frozenset({"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner",
                            "connection", "dynamic"})
MODULE_META_ARGUMENTS = frozenset({"source", "version", "count", "for_each", "depends_on", "providers"})
_MARKERS = ("__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__")
_REFERENCE = re.compile(r"(?<![\w.\-\"])(var|local|module|data|path)\.([A-Za-z_][\w-]*)")
_RESOURCE_REFERENCE = re.compile(r"(?<![\w.\-/\"@])((?:azurerm|azapi)_[a-z0-9_]+|terraform_data)\.([A-Za-z_][\w-]*)")
_FILE_FUNCTIONS = ("filesha256", "filebase64sha256", "filebase64", "filemd5", "templatefile", "fileset", "file")


class ParseError(Exception):
    """A file python-hcl2 cannot parse."""


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels: `"x"` -> `x`."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def literal(value: Any) -> str | None:
    """The string a literal stands for, or None for an expression (anything with `${`)."""
    if isinstance(value, str) and value.startswith('"') and value.endswith('"') and "${" not in value:
        return value[1:-1]
    return None


def parse_file(path: Path) -> dict[str, Any]:
    try:
        return copy.deepcopy(_parse_text(path.read_text(encoding="utf-8")))
    except Exception as error:  # python-hcl2 raises lark errors of several kinds
        raise ParseError(f"{path}: {type(error).__name__}: {error}") from error


@functools.lru_cache(maxsize=512)
def _parse_text(text: str) -> dict[str, Any]:
    """Parsing is slow (python-hcl2 is a pure-Python Lark grammar): the same text parses once."""
    parsed: dict[str, Any] = hcl2.loads(text)
    return parsed


@dataclass
class Module:
    """The blocks of one Terraform module (one folder of .tf files)."""

    path: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # (kind, parsed body) for text scans


@dataclass
class Config:
    terraform: Path
    root: Module
    modules: dict[str, Module]  # by call name in the root module
    tfvars: dict[str, dict[str, Any]]  # by environment
    problems: list[str]  # parse problems


def load_module(folder: Path) -> tuple[Module, list[str]]:
    module, problems = Module(folder), []
    for path in sorted(folder.glob("*.tf")):
        try:
            parsed = parse_file(path)
        except ParseError as error:
            problems.append(str(error))
            continue
        for kind, entries in parsed.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                module.blocks.append((kind, entry))
                _register(module, kind, entry)
    return module, problems


def _register(module: Module, kind: str, entry: dict[str, Any]) -> None:
    if kind == "variable":
        module.variables.update({unquote(name): body for name, body in entry.items()})
    elif kind == "output":
        module.outputs.update({unquote(name): body for name, body in entry.items()})
    elif kind == "locals":
        module.locals.update({name: value for name, value in entry.items() if name not in _MARKERS})
    elif kind in ("resource", "data"):
        target = module.resources if kind == "resource" else module.data
        for kind_name, named in entry.items():
            for name, body in named.items():
                target[(unquote(kind_name), unquote(name))] = body
    elif kind == "module":
        module.calls.update({unquote(name): body for name, body in entry.items()})


def load_config(terraform: Path) -> Config:
    root, problems = load_module(terraform)
    modules: dict[str, Module] = {}
    for name, call in root.calls.items():
        source = literal(call.get("source"))
        if source is None or not source.startswith("./"):
            problems.append(f"module {name}: source must be a local path literal, got {call.get('source')!r}")
            continue
        folder = (terraform / source).resolve()
        if not folder.is_dir():
            problems.append(f"module {name}: source {source} does not exist")
            continue
        modules[name], module_problems = load_module(folder)
        problems += module_problems
    tfvars: dict[str, dict[str, Any]] = {}
    for path in sorted((terraform / "environments").glob("*.tfvars")):
        try:
            tfvars[path.stem] = parse_file(path)
        except ParseError as error:
            problems.append(str(error))
    return Config(terraform, root, modules, tfvars, problems)


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed value (expressions, templates, literals), comments left out."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in _MARKERS:
                yield key
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def references(value: Any, kind: str) -> set[str]:
    """Names referenced as `kind.NAME` (kind: var, local, module, data, path)."""
    found = set()
    for text in strings(value):
        found |= {name for ref_kind, name in _REFERENCE.findall(text) if ref_kind == kind}
    return found


def module_label(config: Config, module: Module) -> str:
    return "root module" if module is config.root else f"module {module.path.name}"


def all_modules(config: Config) -> list[Module]:
    return [config.root, *config.modules.values()]


# --- variables, tfvars and module wiring --------------------------------------------------------

def check_variables(config: Config) -> list[str]:
    """Every variable is declared, typed, described and used."""
    problems = []
    for module in all_modules(config):
        label = module_label(config, module)
        used: set[str] = set()
        for kind, entry in module.blocks:
            if kind == "variable":
                for name, body in entry.items():
                    # A variable's own validation does not count as a use.
                    used |= references({k: v for k, v in body.items() if k != "validation"}, "var")
                    used |= {ref for ref in references(body.get("validation", []), "var") if ref != unquote(name)}
            else:
                used |= references(entry, "var")
        for name in sorted(used - module.variables.keys()):
            problems.append(f"{label}: var.{name} is used but not declared")
        for name, body in sorted(module.variables.items()):
            if "type" not in body:
                problems.append(f"{label}: variable {name} has no type")
            description = literal(body.get("description"))
            if not description or not description.strip():
                problems.append(f"{label}: variable {name} has no description")
            if name not in used:
                problems.append(f"{label}: variable {name} is declared but never used")
    return problems


def check_tfvars(config: Config) -> list[str]:
    """Each environment file sets only declared root variables, and every required one."""
    problems = []
    required = {name for name, body in config.root.variables.items() if "default" not in body}
    if set(config.tfvars) != {"dev", "staging", "prod"}:
        problems.append(f"environments/: expected dev, staging and prod tfvars, found {sorted(config.tfvars)}")
    for environment, values in sorted(config.tfvars.items()):
        keys = {key for key in values if key not in _MARKERS}
        for key in sorted(keys - config.root.variables.keys()):
            problems.append(f"environments/{environment}.tfvars: {key} is not a declared variable")
        for key in sorted(required - keys):
            problems.append(f"environments/{environment}.tfvars: required variable {key} is not set")
        if unquote(values.get("environment")) != environment:
            problems.append(f"environments/{environment}.tfvars: environment must be {environment!r}")
    return problems


# The one object every module is given (root: local.context; modules: variable "context"), and the
# inputs it replaced: no module declares these one by one any more.
CONTEXT = "context"
REPLACED_BY_CONTEXT = ("location", "resource_group_name", "tags", "name_prefix")
_CONTEXT_FIELD = re.compile(r"(?<![\w.])var\.context\.([A-Za-z_][\w-]*)")


def object_fields(type_expression: Any) -> set[str] | None:
    """The attribute names of an `object({...})` type expression (nested types left out), or None
    when the expression is not an object type."""
    if not isinstance(type_expression, str):
        return None
    match = re.fullmatch(r"\$\{\s*object\(\{(.*)\}\)\s*\}", type_expression.strip(), re.S)
    if match is None:
        return None
    inner, previous = match.group(1), None
    while inner != previous:  # drop nested (...) and {...}, innermost first
        previous, inner = inner, re.sub(r"\([^()]*\)|\{[^{}]*\}", "", inner)
    return set(re.findall(r"([A-Za-z_][\w-]*)\s*=", inner))


def context_fields(config: Config) -> set[str] | None:
    """The fields of the root module's local.context, or None when it is not an object literal."""
    context = config.root.locals.get(CONTEXT)
    return {key for key in context if key not in _MARKERS} if isinstance(context, Mapping) else None


def check_module_wiring(config: Config) -> list[str]:
    """Every module input is wired (required ones given, no unknown ones), every module output
    that is referenced exists, and every module is given the root's context object and reads
    only fields that object has."""
    problems = _check_context(config)
    for name, call in sorted(config.root.calls.items()):
        module = config.modules.get(name)
        if module is None:
            continue  # reported by load_config
        given = {key for key in call if key not in MODULE_META_ARGUMENTS and key not in _MARKERS}
        for key in sorted(given - module.variables.keys()):
            problems.append(f"module {name}: input {key} is not a variable of {module.path.name}")
        required = {var for var, body in module.variables.items() if "default" not in body}
        for key in sorted(required - given):
            problems.append(f"module {name}: required input {key} is not wired")
    pattern = re.compile(r"module\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?\.([A-Za-z_][\w-]*)")
    for module in all_modules(config):
        for _, entry in module.blocks:
            for text in strings(entry):
                for called, output in pattern.findall(text):
                    target = config.modules.get(called)
                    if called not in config.root.calls:
                        problems.append(f"{module_label(config, module)}: module.{called} is not declared")
                    elif target is not None and output not in target.outputs:
                        problems.append(f"{module_label(config, module)}: module.{called}.{output} is not an "
                                        f"output of {target.path.name}")
    return problems


def _check_context(config: Config) -> list[str]:
    """local.context is an object; each module call passes it as it is (`context = local.context`);
    each module declares `variable "context"` with the same fields, reads only those fields
    (var.context.X), and declares none of the inputs the context replaced."""
    fields = context_fields(config)
    if fields is None:
        return ["root module: local.context (what every module is told about the environment) is missing or "
                "not an object"]
    problems = []
    listed = ", ".join(sorted(fields))
    for name, call in sorted(config.root.calls.items()):
        if call.get(CONTEXT) != "${local.context}":
            problems.append(f"module {name}: must be given context = local.context, got {call.get(CONTEXT)!r}")
        module = config.modules.get(name)
        if module is None:
            continue  # reported by load_config
        declared = object_fields(module.variables.get(CONTEXT, {}).get("type"))
        if declared is None:
            problems.append(f"module {name}: declares no variable context of an object type")
        elif declared != fields:
            problems.append(f"module {name}: variable context has the fields {', '.join(sorted(declared))}; "
                            f"local.context has {listed}")
        for variable in sorted(set(REPLACED_BY_CONTEXT) & module.variables.keys()):
            problems.append(f"module {name}: variable {variable} is given by the context: read "
                            f"var.context.{variable} instead")
        used = {read for _, entry in module.blocks for text in strings(entry) for read in _CONTEXT_FIELD.findall(text)}
        for read in sorted(used - fields):
            problems.append(f"module {name}: var.context.{read} is not a field of local.context ({listed})")
    return problems


def check_references(config: Config) -> list[str]:
    """References to locals, data sources, resources and modules name declared ones."""
    problems = []
    for module in all_modules(config):
        label = module_label(config, module)
        resources = {f"{kind}.{name}" for kind, name in module.resources}
        for _, entry in module.blocks:
            for name in sorted(references(entry, "local") - module.locals.keys()):
                problems.append(f"{label}: local.{name} is not declared")
            for text in strings(entry):
                for kind, name in _RESOURCE_REFERENCE.findall(text):
                    if f"{kind}.{name}" not in resources:
                        problems.append(f"{label}: {kind}.{name} is not declared in this module")
                for kind, name in re.findall(r"\bdata\.([a-z0-9_]+)\.([A-Za-z_][\w-]*)", text):
                    if (kind, name) not in module.data:
                        problems.append(f"{label}: data.{kind}.{name} is not declared")
    return sorted(set(problems))


# --- file paths --------------------------------------------------------------------------------

def _call_arguments(text: str, function: str) -> Iterator[list[str]]:
    """The arguments of every call of `function` in an expression (balanced parentheses/quotes)."""
    for match in re.finditer(rf"(?<![\w.]){function}\(", text):
        depth, start, quote, arguments = 1, match.end(), False, []
        position = start
        while position < len(text) and depth:
            char = text[position]
            if char == "\\":
                position += 2
                continue
            if char == '"':
                quote = not quote
            elif not quote and char in "([{":
                depth += 1
            elif not quote and char in ")]}":
                depth -= 1
            elif not quote and char == "," and depth == 1:
                arguments.append(text[start:position].strip())
                start = position + 1
            position += 1
        arguments.append(text[start:position - 1].strip())
        yield arguments


def _loop_variables(text: str) -> set[str]:
    return {match.group(1) for match in re.finditer(r"\bfor\s+([A-Za-z_]\w*)(?:\s*,\s*[A-Za-z_]\w*)?\s+in\b", text)}


def resolve(expression: str, module: Module, config: Config, depth: int = 0) -> str | None:
    """The string an expression evaluates to, when it is built only from literals, path.module,
    path.root, string locals and variables (root: default or nothing; module: the root's input, and
    for var.context.X the root's local.context.X)."""
    if depth > 10:
        return None
    expression = expression.strip()
    whole = re.fullmatch(r"\$\{(.*)\}", expression, re.S)
    if whole and "${" not in whole.group(1):
        expression = whole.group(1).strip()
    if re.fullmatch(r"(var|local)\.[\w-]+|var\.context\.[\w-]+|path\.(module|root)", expression):
        expression = "${" + expression + "}"
    elif not (expression.startswith('"') and expression.endswith('"')):
        return None
    else:
        expression = expression[1:-1]

    def substitute(match: re.Match[str]) -> str:
        inner = match.group(1).strip()
        value = _resolve_reference(inner, module, config, depth)
        return value if value is not None else match.group(0)

    text = re.sub(r"\$\{([^{}]*)\}", substitute, expression)
    return None if "${" in text else text


def _resolve_reference(inner: str, module: Module, config: Config, depth: int) -> str | None:
    if inner == "path.module":
        return str(module.path)
    if inner == "path.root":
        return str(config.terraform)
    context_field = re.fullmatch(r"var\.context\.([\w-]+)", inner)
    if context_field and module is not config.root:  # every module is given the root's local.context
        context = config.root.locals.get(CONTEXT)
        value = context.get(context_field.group(1)) if isinstance(context, Mapping) else None
        return resolve(value, config.root, config, depth + 1) if isinstance(value, str) else None
    match = re.fullmatch(r"(var|local)\.([\w-]+)", inner)
    if not match:
        return None
    kind, name = match.groups()
    if kind == "local":
        value = module.locals.get(name)
        return resolve(value, module, config, depth + 1) if isinstance(value, str) else None
    if module is config.root:
        body = module.variables.get(name, {})
        return resolve(body["default"], module, config, depth + 1) if isinstance(body.get("default"), str) else None
    for call_name, call in config.root.calls.items():
        if config.modules.get(call_name) is module and isinstance(call.get(name), str):
            return resolve(call[name], config.root, config, depth + 1)
    return None


def made_by(repo: Path, path: Path) -> str | None:
    """The Makefile target whose recipe writes `path` (a build output absent from a clean clone)."""
    makefile = repo / "Makefile"
    if not makefile.is_file():
        return None
    wanted = path.resolve().relative_to(repo.resolve()).as_posix()
    target = None
    for line in makefile.read_text(encoding="utf-8").splitlines():
        header = re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line)
        if header:
            target = header.group(1)
        elif line.startswith("\t") and target and wanted in line:
            return target
    return None


def check_paths(config: Config, repo: Path) -> list[str]:
    """Every file a file function reads exists, or is the output of a Makefile target."""
    problems = []
    for module in all_modules(config):
        label = module_label(config, module)
        for _, entry in module.blocks:
            for text in strings(entry):
                loops = _loop_variables(text)
                for function in _FILE_FUNCTIONS:
                    for arguments in _call_arguments(text, function):
                        problems += _check_path_call(function, arguments, loops, module, config, repo, label)
    return sorted(set(problems))


def _check_path_call(function: str, arguments: list[str], loops: set[str], module: Module, config: Config,
                     repo: Path, label: str) -> list[str]:
    first = arguments[0]
    if any(f"${{{loop}}}" in first or first == loop for loop in loops):
        return []  # a loop variable over a fileset(): that fileset is checked itself
    resolved = resolve(first, module, config)
    if resolved is None:
        return [f"{label}: cannot resolve the path of {function}({first})"]
    path = Path(resolved) if Path(resolved).is_absolute() else config.terraform / resolved
    if function == "fileset":
        pattern = literal(arguments[1]) if len(arguments) > 1 else None
        if not path.is_dir():
            return [f"{label}: fileset folder {resolved} does not exist"]
        if pattern is None or not list(path.glob(pattern)):
            return [f"{label}: fileset({resolved}, {arguments[1] if len(arguments) > 1 else ''}) matches no file"]
        return []
    if path.is_file() or made_by(repo, path):
        return []
    return [f"{label}: {function}() reads {resolved}, which does not exist (and no Makefile target builds it)"]


# --- secrets -------------------------------------------------------------------------------------

SECRET_TEXT = [
    (re.compile(r"AccountKey=|SharedAccessKey=|SharedAccessSignature=|InstrumentationKey=|Password=",
                re.I), "a connection string with a key"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"[?&]sig=[A-Za-z0-9%+/=]{16,}"), "a SAS token"),
    (re.compile(r"(?<![A-Za-z0-9+])(?=[A-Za-z0-9+]*[0-9])(?=[A-Za-z0-9+]*[A-Z])(?=[A-Za-z0-9+]*[a-z])"
                r"[A-Za-z0-9+]{32,}={0,2}"), "a long base64 token (a key?)"),
]
SECRET_NAME = re.compile(r"(?i)(password|secret|access_?key|account_?key|primary_?key|secondary_?key|"
                         r"connection_?string|sas_?token|api_?key|client_?secret|instrumentation_?key)")
KEY_ATTRIBUTE = re.compile(r"\.(primary|secondary)_(access_key|key|connection_string|blob_connection_string|"
                           r"connection_string_alias)\b|\.default_(primary|secondary)_(key|connection_string)\b|"
                           r"\.instrumentation_key\b|\.primary_access_key\b|\.secondary_access_key\b")
# Names whose value is allowed to be a reference (never a literal): the only connection string the
# configuration passes, Application Insights' (an ingestion endpoint plus a non-secret key).
ALLOWED_SECRET_NAMES = frozenset({"application_insights_connection_string", "APPLICATIONINSIGHTS_CONNECTION_STRING"})


def check_no_secrets(terraform: Path) -> list[str]:
    """No key, password, token or connection string appears in the Terraform files, and no
    configuration reads one from a resource attribute."""
    problems = []
    files = sorted([*terraform.rglob("*.tf"), *terraform.rglob("*.tfvars"), *terraform.rglob("*.hcl")])
    for path in files:
        if ".terraform" in path.parts:
            continue
        relative = path.relative_to(terraform)
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            for pattern, what in SECRET_TEXT:
                if pattern.search(line):
                    problems.append(f"{relative}:{number}: looks like {what}")
            if KEY_ATTRIBUTE.search(line):
                problems.append(f"{relative}:{number}: reads a key attribute of a resource")
            if re.search(r"\.connection_string\b", line) and "azurerm_application_insights." not in line:
                problems.append(f"{relative}:{number}: reads a connection string of a resource")
        try:
            parsed = parse_file(path)
        except ParseError:
            continue  # reported by the parse check
        problems += [f"{relative}: {problem}" for problem in _secret_assignments(parsed)]
    return problems


def _secret_assignments(value: Any, where: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in _MARKERS:
                continue
            name = str(unquote(key))
            secret_like = (SECRET_NAME.search(name) and name not in ALLOWED_SECRET_NAMES
                           and not name.endswith(("_enabled", "_type")))
            if secret_like and isinstance(item, str):
                if literal(item) is not None:
                    yield f"{where}{name} is set to a literal value (keys and secrets never belong here)"
                else:
                    yield f"{where}{name} is given a value (use identities, not keys)"
            yield from _secret_assignments(item, f"{where}{name}.")
    elif isinstance(value, list):
        for item in value:
            yield from _secret_assignments(item, where)


# --- names ---------------------------------------------------------------------------------------

# Azure naming rules (Microsoft Learn: "Naming rules and restrictions for Azure resources").
NAMING_RULES: dict[str, tuple[str, str]] = {
    "resource_group": (r"^[\w\-.()]{1,89}[\w\-()]$", "1-90 letters, digits, _-.() not ending in ."),
    "identity": (r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$", "3-128 letters, digits, _ and -"),
    "log_analytics": (r"^[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]$", "4-63 letters, digits and -"),
    "application_insights": (r"^[^%&\\?/]{1,260}$", "1-260 characters, no %&\\?/"),
    "storage": (r"^[a-z0-9]{3,24}$", "3-24 lowercase letters and digits"),
    "eventhub_namespace": (r"^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$(?<!-sb)(?<!-mgmt)",
                           "6-50 letters, digits and -, starting with a letter"),
    "cosmos": (r"^[a-z0-9][a-z0-9-]{1,42}[a-z0-9]$", "3-44 lowercase letters, digits and -"),
    "redis": (r"^(?!.*--)[A-Za-z0-9][A-Za-z0-9-]{0,58}[A-Za-z0-9]$", "1-60 letters, digits, single -"),
    "key_vault": (r"^(?!.*--)[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$", "3-24 letters, digits, single -"),
    "service_plan": (r"^[A-Za-z0-9-]{1,60}$", "1-60 letters, digits and -"),
    # 60 is Azure's limit; 32 keeps the Functions host id (the first 32 characters) unique.
    "function_app": (r"^(?!.*--)[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]$", "2-32 letters, digits, single -"),
    "apim": (r"^[A-Za-z](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?$", "1-50 letters, digits and -, letter first"),
    "virtual_network": (r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_]$", "2-64 letters, digits, _.-"),
    "action_group": (r"^[^%&\\?/]{1,260}$", "1-260 characters"),
    "container": (r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", "3-63 lowercase letters, digits, single -"),
    "eventhub": (r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}[A-Za-z0-9]$", "1-256 letters, digits, _.-"),
    "cosmos_child": (r"^[^/\\#?]{1,255}$", "1-255 characters without /\\#?"),
}
# Which rule each entry of local.names follows (by its name's first word).
NAME_KINDS = {"resource_group": "resource_group", "identity": "identity", "log_analytics": "log_analytics",
              "application_insights": "application_insights", "storage": "storage",
              "eventhub_namespace": "eventhub_namespace", "cosmos_account": "cosmos", "redis": "redis",
              "key_vault": "key_vault", "service_plan": "service_plan", "function_app": "function_app",
              "apim": "apim", "virtual_network": "virtual_network", "action_group": "action_group"}
# Other fixed names of the root module's locals and their rules.
FIXED_NAMES = {"usage_hub_name": "eventhub", "gateway_logs_hub_name": "eventhub", "usage_consumer_group": "eventhub",
               "store_container": "container", "capture_container": "container",
               "deployment_container": "container", "cosmos_database": "cosmos_child",
               "cosmos_container": "cosmos_child"}
# The extremes the validations of workload and unique_suffix allow (checked by check_names).
WORKLOAD_PATTERN = "^[a-z][a-z0-9]{1,7}$"
SUFFIX_PATTERN = "^[a-z0-9]{3,4}$"
EXTREMES = [{"workload": "abcdefgh", "environment": "staging", "unique_suffix": "abcd"},
            {"workload": "ab", "environment": "dev", "unique_suffix": "abc"}]


def name_kind(key: str) -> str | None:
    for prefix, kind in NAME_KINDS.items():
        if key == prefix or key.startswith(prefix + "_"):
            return kind
    return None


def evaluate_template(template: str, values: Mapping[str, str]) -> str | None:
    text = literal(template) if "${" not in template else unquote(template)
    if text is None:
        return None
    text = re.sub(r"\$\{var\.(\w+)\}", lambda match: values.get(match.group(1), match.group(0)), text)
    return None if "${" in text else text


def check_names(config: Config) -> list[str]:
    """Every resource name, evaluated for each environment and for the extremes the variables
    allow, follows Azure's naming rules."""
    problems = []
    root = config.root
    for variable, pattern in (("workload", WORKLOAD_PATTERN), ("unique_suffix", SUFFIX_PATTERN)):
        validations = "".join(strings(root.variables.get(variable, {}).get("validation", [])))
        if pattern.replace("\\", "\\\\") not in validations and pattern not in validations:
            problems.append(f"variable {variable}: its validation must be regex({pattern!r}), which the naming "
                            "check assumes")
    names = root.locals.get("names")
    if not isinstance(names, Mapping):
        return [*problems, "root module: local.names (every resource name) is missing"]
    workload_default = unquote(root.variables.get("workload", {}).get("default", ""))
    cases = [(f"environments/{environment}.tfvars", {
        "workload": unquote(values.get("workload", workload_default)),
        "environment": unquote(values.get("environment", environment)),
        "unique_suffix": unquote(values.get("unique_suffix", ""))}) for environment, values in config.tfvars.items()]
    cases += [(f"extreme {case}", case) for case in EXTREMES]
    for key, template in names.items():
        if key in _MARKERS:
            continue
        kind = name_kind(key)
        if kind is None:
            problems.append(f"local.names.{key}: no naming rule known for it")
            continue
        pattern, rule = NAMING_RULES[kind]
        for where, values in cases:
            value = evaluate_template(template, values) if isinstance(template, str) else None
            if value is None:
                problems.append(f"local.names.{key}: {template!r} uses more than var.workload, var.environment "
                                "and var.unique_suffix")
                break
            if not re.match(pattern, value):
                problems.append(f"local.names.{key} = {value!r} ({where}) breaks the rule: {rule}")
    for key, kind in FIXED_NAMES.items():
        value = literal(root.locals.get(key))
        pattern, rule = NAMING_RULES[kind]
        if value is None or not re.match(pattern, value):
            problems.append(f"local.{key} = {value!r} breaks the rule: {rule}")
    return problems


# --- provider arguments ----------------------------------------------------------------------------

def check_provider_arguments(config: Config, arguments_file: Path) -> list[str]:
    """Every argument and block of every resource exists in the pinned provider's documentation
    (tests/terraform_fixtures/provider-arguments.json, extracted from it)."""
    known: dict[str, list[str]] = json.loads(arguments_file.read_text(encoding="utf-8"))["resources"]
    problems = []
    for module in all_modules(config):
        label = module_label(config, module)
        for blocks, what in ((module.resources, "resource"), (module.data, "data")):
            for (kind, name), body in sorted(blocks.items()):
                lookup = kind if what == "resource" else f"data.{kind}"
                if lookup not in known:
                    problems.append(f"{label}: {what} {kind}: no recorded arguments (refresh {arguments_file.name})")
                    continue
                for argument in sorted(_arguments(body) - set(known[lookup]) - META_ARGUMENTS):
                    problems.append(f"{label}: {kind}.{name}: {argument} is not an argument of {kind}")
    return problems


def _arguments(body: Mapping[str, Any]) -> set[str]:
    """Argument and block names of a resource body, nested blocks (and dynamic blocks) included."""
    names: set[str] = set()
    for key, value in body.items():
        if key in _MARKERS or key in {"lifecycle", "provisioner", "connection"}:
            continue
        if key == "dynamic":
            for dynamic in value if isinstance(value, list) else [value]:
                for label, block in dynamic.items():
                    names.add(unquote(label))
                    for content in block.get("content", []):
                        names |= _arguments(content)
            continue
        names.add(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping) and item.get("__is_block__"):
                names |= _arguments(item)
    return names


# --- provider requirements -------------------------------------------------------------------------

# Resource types of Terraform itself (terraform.io/builtin/terraform), required by no module.
BUILTIN_RESOURCES = frozenset({"terraform_data"})


def provider_requirements(module: Module) -> dict[str, tuple[str | None, str | None]]:
    """Local provider name -> (source, version) of the module's required_providers (None: not given)."""
    found: dict[str, tuple[str | None, str | None]] = {}
    for kind, entry in module.blocks:
        if kind != "terraform":
            continue
        for block in entry.get("required_providers", []):
            for name, requirement in block.items():
                if name in _MARKERS:
                    continue
                if isinstance(requirement, Mapping):
                    found[name] = (literal(requirement.get("source")), literal(requirement.get("version")))
                else:  # the Terraform 0.12 form, `name = "VERSION"`, has no source
                    found[name] = (None, literal(requirement))
    return found


def used_providers(module: Module) -> set[str]:
    """Local names of the providers a module's resources and data sources belong to (the first word
    of the type, as Terraform reads it when a resource sets no `provider`)."""
    kinds = [kind for kind, _ in module.resources] + [kind for kind, _ in module.data]
    return {kind.split("_", 1)[0] for kind in kinds if kind not in BUILTIN_RESOURCES}


def check_providers(config: Config) -> list[str]:
    """Each module declares the source of every provider it uses, the same as the root module's
    (Terraform: "Each module must declare its own provider requirements"; without it Terraform
    falls back to hashicorp/NAME, wrong for Azure/azapi); the versions are pinned exactly, once,
    in the root module; provider configurations are in the root module only."""
    problems = []
    root = provider_requirements(config.root)
    used_anywhere = set().union(*(used_providers(module) for module in all_modules(config)))
    for name in sorted(used_anywhere - root.keys()):
        problems.append(f"root module: provider {name} is used but not pinned in the root's required_providers")
    for name, (_, version) in sorted(root.items()):
        if version is None or not re.fullmatch(r"=\s*\d+\.\d+\.\d+", version):
            problems.append(f"root module: provider {name} must be pinned to one release (version = \"= X.Y.Z\"), "
                            f"got {version!r}")
    for module in all_modules(config):
        label = module_label(config, module)
        declared, used = provider_requirements(module), used_providers(module)
        for name in sorted(used):
            source = declared.get(name, (None, None))[0]
            if source is None:
                problems.append(f"{label}: uses provider {name} but declares no source for it in required_providers")
            elif name in root and source != root[name][0]:
                problems.append(f"{label}: provider {name} has the source {source}, the root module {root[name][0]}")
        if module is config.root:
            continue
        for name, (_, version) in sorted(declared.items()):
            if name not in used:
                problems.append(f"{label}: requires provider {name}, which none of its resources uses")
            if version is not None:
                problems.append(f"{label}: provider {name} has a version ({version}); the pins belong in the root "
                                "module's versions.tf only")
        if any(kind == "provider" for kind, _ in module.blocks):
            problems.append(f"{label}: configures a provider; provider blocks belong in the root module only")
    return problems


# --- APIM policies ---------------------------------------------------------------------------------

def check_policies(config: Config, repo: Path) -> list[str]:
    """The policies are loaded from apim_policies/ (never copied into HCL), every fragment they
    include is a file there, every {{named value}} they read is defined, and every logger they send
    to is the one Terraform creates."""
    problems = []
    policies = repo / "apim_policies"
    api_policy = policies / "openai-api.policy.xml"
    fragment_files = sorted((policies / "fragments").glob("*.xml"))
    texts = {path: path.read_text(encoding="utf-8") for path in [api_policy, *fragment_files] if path.is_file()}
    if api_policy not in texts:
        problems.append(f"{api_policy.relative_to(repo)} does not exist")
    fragment_ids = {path.stem for path in fragment_files}
    named_values = config.root.locals.get("apim_named_values")
    defined = {key for key in named_values if key not in _MARKERS} if isinstance(named_values, Mapping) else set()
    loggers = {literal(call.get("usage_logger_name")) for call in config.root.calls.values()}
    for path, text in texts.items():
        where = path.relative_to(repo)
        for fragment in re.findall(r'include-fragment\s+fragment-id="([^"]+)"', text):
            if fragment not in fragment_ids:
                problems.append(f"{where}: includes fragment {fragment}, which is not a file of "
                                "apim_policies/fragments")
        for name in re.findall(r"\{\{([^{}]+)\}\}", text):
            if name not in defined:
                problems.append(f"{where}: reads named value {{{{{name}}}}}, which local.apim_named_values "
                                "does not define")
        for logger in re.findall(r'log-to-eventhub\s+logger-id="([^"]+)"', text):
            if logger not in loggers:
                problems.append(f"{where}: logs to logger {logger}, which Terraform does not create")
    for module in all_modules(config):
        for _, entry in module.blocks:
            for text in strings(entry):
                if re.search(r"<(policies|fragment|inbound|outbound)\b", text):
                    problems.append(f"{module_label(config, module)}: policy XML is written in HCL; load the "
                                    "apim_policies/ file instead")
    return problems


# --- APIM routes and LLM logging -------------------------------------------------------------------

# The Azure OpenAI API (the module that declares it is the APIM module).
OPENAI_API = ("azurerm_api_management_api", "openai")
OPENAI_API_NAME = "${azurerm_api_management_api.openai.name}"
# Catch-all operations by operation id: every route the imported spec lacks (Responses API, /v1/...)
# reaches the API policy through them. The ids are the contract with apim_policies/: the policy names
# the operation from the URL when the id starts with "wildcard-".
WILDCARD_OPERATIONS = {"wildcard-get": "GET", "wildcard-post": "POST", "wildcard-delete": "DELETE"}
WILDCARD_TEMPLATE = "/*"
# A spec URL at a fixed commit of a GitHub repository (a branch moves under a reviewed plan).
PINNED_SPEC_URL = re.compile(r"^https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+\.(json|ya?ml)$")
# The APIM diagnostics that make the gateway emit GatewayLlmLogs (ARM largeLanguageModel, first in API
# version 2024-06-01-preview), by resource type: where each one hangs.
LLM_DIAGNOSTICS = {
    "Microsoft.ApiManagement/service/apis/diagnostics": "${azurerm_api_management.this.id}/apis/" + OPENAI_API_NAME,
    "Microsoft.ApiManagement/service/diagnostics": "${azurerm_api_management.this.id}",
}
FIRST_LLM_API_VERSION = "2024-06-01"
# The name of the Azure Monitor logger and of the diagnostics that write to it.
AZURE_MONITOR = "azuremonitor"


def openai_api_module(config: Config) -> Module | None:
    return next((module for module in all_modules(config) if OPENAI_API in module.resources), None)


def local_value(module: Module, value: Any) -> Any:
    """A module local's parsed value when `value` is exactly `${local.NAME}`, else `value`."""
    match = re.fullmatch(r"\$\{local\.([\w-]+)\}", value) if isinstance(value, str) else None
    return module.locals.get(match.group(1), value) if match else value


def api_operations(module: Module) -> set[tuple[str, str, str]]:
    """(operation id, method, URL template) of each azurerm_api_management_api_operation on the Azure
    OpenAI API, a for_each over a local map expanded (each.key, each.value). An expression the check
    cannot evaluate stays in the tuple as written."""
    operations = set()
    for (kind, _), body in module.resources.items():
        if kind != "azurerm_api_management_api_operation" or body.get("api_name") != OPENAI_API_NAME:
            continue
        instances = local_value(module, body.get("for_each"))
        pairs = ([(unquote(key), unquote(value)) for key, value in instances.items() if key not in _MARKERS]
                 if isinstance(instances, Mapping) else [(None, None)])
        for key, value in pairs:
            def evaluate(expression: Any, key: Any = key, value: Any = value) -> str:
                text = {"${each.key}": key, "${each.value}": value}.get(expression) or literal(expression)
                return str(text if text is not None else expression)
            operations.add((evaluate(body.get("operation_id")), evaluate(body.get("method")),
                            evaluate(body.get("url_template"))))
    return operations


def check_apim_routes(config: Config) -> list[str]:
    """Every Azure OpenAI route reaches the API policy: the wildcard GET, POST and DELETE operations
    exist with exactly their contract ids on the Azure OpenAI API, and the spec the API is imported
    from is pinned to a commit (default and every environment)."""
    module = openai_api_module(config)
    if module is None:
        return [f"no module declares {'.'.join(OPENAI_API)}"]
    label, problems = module_label(config, module), []
    operations = api_operations(module)
    expected = {(operation_id, method, WILDCARD_TEMPLATE) for operation_id, method in WILDCARD_OPERATIONS.items()}
    for operation in sorted(expected - operations):
        problems.append(f"{label}: wildcard operation {operation[0]} ({operation[1]} {operation[2]}) is missing: "
                        "routes the spec lacks would end in 404 OperationNotFound, unmetered")
    for operation in sorted(operation for operation in operations - expected
                            if operation[0].startswith("wildcard-") or operation[2] == WILDCARD_TEMPLATE):
        problems.append(f"{label}: operation {operation[0]} ({operation[1]} {operation[2]}) is not one of the "
                        f"wildcard operations the policy expects ({', '.join(WILDCARD_OPERATIONS)})")
    imports = module.resources[OPENAI_API].get("import", [])
    expression = imports[0].get("content_value") if imports else None
    spec = resolve(expression, module, config) if isinstance(expression, str) else None
    if spec is None:
        problems.append(f"{label}: cannot resolve the spec URL the Azure OpenAI API is imported from")
    elif not PINNED_SPEC_URL.match(spec):
        problems.append(f"{label}: the spec URL {spec} is not pinned to a commit (raw.githubusercontent.com/OWNER/"
                        "REPO/<40-hex commit>/...)")
    for environment, values in sorted(config.tfvars.items()):
        override = unquote(values.get("openai_api_spec_url"))
        if isinstance(override, str) and not PINNED_SPEC_URL.match(override):
            problems.append(f"environments/{environment}.tfvars: openai_api_spec_url {override} is not pinned to a "
                            "commit")
    return problems


def check_llm_logging(config: Config) -> list[str]:
    """GatewayLlmLogs are emitted, with token counts only: the service's and the Azure OpenAI API's
    azuremonitor diagnostics exist (azapi, an API version that has largeLanguageModel), write to the
    azuremonitor logger, have largeLanguageModel.logs "enabled" and both requests.messages and
    responses.messages "none" (no prompt or completion text, ever)."""
    module = openai_api_module(config)
    if module is None:
        return [f"no module declares {'.'.join(OPENAI_API)}"]
    label, problems = module_label(config, module), []
    found: dict[str, list[tuple[str, str, dict[str, Any]]]] = {kind: [] for kind in LLM_DIAGNOSTICS}
    for (kind, name), body in module.resources.items():
        if kind != "azapi_resource":
            continue
        arm_type, _, version = (literal(body.get("type")) or "").partition("@")
        if arm_type in found:
            found[arm_type].append((f"azapi_resource.{name}", version, body))
    for arm_type, parent in LLM_DIAGNOSTICS.items():
        if len(found[arm_type]) != 1:
            problems.append(f"{label}: expected one azapi_resource of type {arm_type} (LLM logging), found "
                            f"{len(found[arm_type])}")
            continue
        where, version, body = found[arm_type][0]
        if version[:10] < FIRST_LLM_API_VERSION or not re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", version):
            problems.append(f"{label}: {where}: API version {version!r} has no largeLanguageModel (first in "
                            f"{FIRST_LLM_API_VERSION}-preview)")
        if literal(body.get("name")) != AZURE_MONITOR:
            problems.append(f"{label}: {where}: name must be {AZURE_MONITOR!r} (the Azure Monitor diagnostic), "
                            f"got {body.get('name')!r}")
        if unquote(body.get("parent_id")) != parent:
            problems.append(f"{label}: {where}: parent_id must be {parent}, got {body.get('parent_id')!r}")
        if body.get("schema_validation_enabled") is False:
            problems.append(f"{label}: {where}: schema_validation_enabled = false hides a misspelt property")
        body_value = body.get("body")
        properties = body_value.get("properties", {}) if isinstance(body_value, Mapping) else {}
        problems += [f"{label}: {where}: {problem}" for problem in _logger_problems(module, properties.get("loggerId"))]
        llm = local_value(module, properties.get("largeLanguageModel"))
        llm = llm if isinstance(llm, Mapping) else {}
        if unquote(llm.get("logs")) != "enabled":
            problems.append(f"{label}: {where}: largeLanguageModel.logs must be \"enabled\" (else no GatewayLlmLogs), "
                            f"got {llm.get('logs')!r}")
        for part in ("requests", "responses"):
            settings = llm.get(part)
            messages = unquote(settings.get("messages")) if isinstance(settings, Mapping) else None
            if messages != "none":
                problems.append(f"{label}: {where}: largeLanguageModel.{part}.messages must be \"none\" (no prompt or "
                                f"completion text is ever logged), got {messages!r}")
    return problems


def _logger_problems(module: Module, logger_id: Any) -> list[str]:
    """loggerId is the resource id of the azuremonitor logger the module PUTs (loggerType azureMonitor)."""
    match = re.fullmatch(r"\$\{azapi_resource_action\.([\w-]+)\.resource_id\}", logger_id or "")
    action = module.resources.get(("azapi_resource_action", match.group(1))) if match else None
    if action is None:
        return [f"loggerId must be the azuremonitor logger's resource_id (an azapi_resource_action of this module), "
                f"got {logger_id!r}"]
    problems = []
    if not (literal(action.get("type")) or "").startswith("Microsoft.ApiManagement/service/loggers@"):
        problems.append(f"the logger action's type is {action.get('type')!r}, not "
                        "Microsoft.ApiManagement/service/loggers")
    if not unquote(action.get("resource_id") or "").endswith(f"/loggers/{AZURE_MONITOR}"):
        problems.append(f"the logger's resource_id must end in /loggers/{AZURE_MONITOR}, got "
                        f"{action.get('resource_id')!r}")
    body_value = action.get("body")
    properties = body_value.get("properties", {}) if isinstance(body_value, Mapping) else {}
    if unquote(properties.get("loggerType")) != "azureMonitor" or literal(action.get("method")) != "PUT":
        problems.append("the logger must be PUT with loggerType \"azureMonitor\"")
    return problems


CHECKS = ("parse", "variables", "tfvars", "module wiring", "references", "paths", "secrets", "names",
          "provider arguments", "providers", "policies",
          "apim routes", "llm logging")


def run_checks(repo: Path) -> dict[str, list[str]]:
    """Every check on the repository at `repo`, by name."""
    terraform = repo / "terraform"
    config = load_config(terraform)
    fixture = Path(__file__).parent / "terraform_fixtures" / "provider-arguments.json"
    return {
        "parse": config.problems,
        "variables": check_variables(config),
        "tfvars": check_tfvars(config),
        "module wiring": check_module_wiring(config),
        "references": check_references(config),
        "paths": check_paths(config, repo),
        "secrets": check_no_secrets(terraform),
        "names": check_names(config),
        "provider arguments": check_provider_arguments(config, fixture),
        "providers": check_providers(config),
        "policies": check_policies(config, repo),
        "apim routes": check_apim_routes(config),
        "llm logging": check_llm_logging(config),
    }
