"""The APIM budget gate (apim_policies/README.md, "Budget gate"): where it runs, what it reads, and
what the caller gets for each budget state, statically and run through the simulated gateway
(tests/apim_gateway.py) with a fake Blob Storage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.apim_gateway import NAMED_VALUES, Call, Gateway, Outcome, Reply, Sent, Storage, no_blob
from tests.apim_static import API_POLICY, FRAGMENT_DIR, parse_policy, policy_problems, section_statements

READ = FRAGMENT_DIR / "chargeback-budget-read.xml"
GATE = FRAGMENT_DIR / "chargeback-budget-gate.xml"
HEADER = FRAGMENT_DIR / "chargeback-budget-header.xml"
STATE_URL = NAMED_VALUES["chargeback-budget-state-url"]
CHAT = "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"


def call(subscription: str | None = "team-search-prod") -> Call:
    return Call("POST", CHAT, '{"messages":[]}', {"Content-Type": "application/json"}, subscription=subscription)


def blob(state: str, message: str = "Cost center CC-A is over its October budget.") -> Storage:
    body = json.dumps({"subscriptionId": "team-search-prod", "state": state, "scope": "cost-center", "key": "CC-A",
                       "spend": "85.00" if state == "warn" else "123.45", "budget": "100", "currency": "USD",
                       "month": "2026-10", "message": message, "updatedAt": "2026-10-15T10:31:00Z"})

    def answer(sent: Sent) -> Reply:
        return Reply(200, {"Content-Type": "application/json"}, body)

    return answer


def status(code: int, error_code: str = "") -> Storage:
    def answer(sent: Sent) -> Reply:
        return Reply(code, {"x-ms-error-code": error_code} if error_code else {}, "")

    return answer


def timeout(sent: Sent) -> Reply:
    return Reply(timeout=True)


def fail_closed() -> dict[str, str]:
    return {**NAMED_VALUES, "chargeback-budget-fail-closed": "true"}


def forwarded(outcome: Outcome) -> bool:
    return outcome.forwarded is not None and outcome.returned is None


# --- where it runs ---------------------------------------------------------------------------

def test_the_gate_runs_after_the_caller_is_resolved_and_before_the_call_is_forwarded() -> None:
    root = parse_policy(API_POLICY).root
    inbound = section_statements(root, "inbound")
    gate = inbound.index("choose")
    assert inbound.index("include-fragment:chargeback-resolve-caller") < gate
    assert inbound.index("include-fragment:chargeback-validate-entra-token") < gate
    assert gate < inbound.index("include-fragment:chargeback-stream-include-usage")
    assert gate < inbound.index("authentication-managed-identity")
    when = root.find("inbound/choose/when")
    assert when is not None
    steps = [f"include-fragment:{e.get('fragment-id')}" if e.tag == "include-fragment" else e.tag for e in when]
    assert steps == ["cache-lookup-value", "include-fragment:chargeback-budget-read", "choose",
                     "include-fragment:chargeback-budget-gate"]
    store = when.find("choose/when/cache-store-value")
    assert store is not None and store.get("caching-type") == "internal"
    lookup = when.find("cache-lookup-value")
    assert lookup is not None and lookup.get("caching-type") == "internal"
    assert lookup.get("variable-name") == "chargeback-budget"
    outbound = section_statements(root, "outbound")
    assert outbound.index("include-fragment:chargeback-budget-header") < outbound.index("base")


def test_a_cache_policy_inside_a_fragment_is_refused() -> None:
    # cache-lookup-value is not supported in policy fragments (its reference's usage notes).
    text = GATE.read_text(encoding="utf-8").replace(
        "<fragment>", '<fragment>\n    <cache-lookup-value key="k" variable-name="v" />', 1)
    documents = [parse_policy(API_POLICY), *(parse_policy(p) for p in sorted(FRAGMENT_DIR.glob("*.xml"))
                                             if p != GATE), parse_policy(Path(GATE.name), text)]
    assert any("cannot contain <cache-lookup-value>" in problem for problem in policy_problems(documents))


def test_a_second_cache_lookup_in_the_section_is_refused() -> None:
    text = API_POLICY.read_text(encoding="utf-8").replace(
        '<include-fragment fragment-id="chargeback-budget-gate" />',
        '<include-fragment fragment-id="chargeback-budget-gate" />\n<cache-lookup-value key="k" variable-name="v" />')
    documents = [parse_policy(Path(API_POLICY.name), text), *(parse_policy(p) for p in
                                                            sorted(FRAGMENT_DIR.glob("*.xml")))]
    assert any("<cache-lookup-value> may be used once in inbound" in p for p in policy_problems(documents))


def test_the_blob_is_read_with_the_gateways_identity_and_a_short_timeout() -> None:
    request = parse_policy(READ).root.find("choose/when/send-request")
    assert request is not None
    assert request.get("ignore-error") == "true" and request.get("timeout") == "5"
    identity = request.find("authentication-managed-identity")
    assert identity is not None and identity.get("resource") == "https://storage.azure.com/"
    outcome = Gateway().send(call())
    assert len(outcome.sent) == 1
    sent = outcome.sent[0]
    assert sent.method == "GET" and sent.url == STATE_URL + "team-search-prod.json"
    assert sent.headers["x-ms-version"] == "2025-01-05"
    assert sent.managed_identity_resource == "https://storage.azure.com/" and sent.ignore_error


def refusal_problems(text: str) -> list[str]:
    """A 429 anywhere outside comments (the SDKs retry it), or refusals other than 403 and 503."""
    problems = ["429 outside a comment"] if "429" in re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL) else []
    codes = {e.get("code") for e in parse_policy(Path("fragment.xml"), text).root.iter("set-status")}
    if not codes <= {"403", "503"}:
        problems.append(f"refusal codes {sorted(c or '' for c in codes)}")
    return problems


def test_no_429_anywhere_in_the_gate() -> None:
    for path in (READ, GATE, HEADER):
        assert refusal_problems(path.read_text(encoding="utf-8")) == []
    assert {e.get("code") for e in parse_policy(GATE).root.iter("set-status")} == {"403", "503"}


# --- the states ------------------------------------------------------------------------------

def test_block_returns_403_with_the_openai_style_error_and_forwards_nothing() -> None:
    outcome = Gateway(storage=blob("block")).send(call())
    assert outcome.returned is not None and outcome.forwarded is None
    assert outcome.returned.status == 403
    assert outcome.returned.headers["Content-Type"] == "application/json"
    assert json.loads(outcome.returned.body) == {"error": {
        "code": "BudgetExceeded", "message": "Cost center CC-A is over its October budget.",
        "type": "budget_exceeded"}}
    assert outcome.returned.headers["x-chargeback-budget"] == \
        "block; scope=cost-center; key=CC-A; spend=123.45; budget=100; currency=USD"
    assert outcome.events == []  # Azure OpenAI was not called: nothing to charge


def test_block_without_a_message_names_the_budget() -> None:
    outcome = Gateway(storage=blob("block", message="")).send(call())
    assert outcome.returned is not None
    assert json.loads(outcome.returned.body)["error"]["message"] == \
        "The cost-center budget CC-A for 2026-10 is used up: 123.45 of 100 USD spent."


def test_warn_forwards_and_adds_the_header_to_the_response() -> None:
    outcome = Gateway(storage=blob("warn")).send(call())
    assert forwarded(outcome)
    assert outcome.response_headers["x-chargeback-budget"] == \
        "warn; scope=cost-center; key=CC-A; spend=85.00; budget=100; currency=USD"
    assert len(outcome.events) == 1


@pytest.mark.parametrize("storage", [no_blob, blob("ok")], ids=["404", "state-ok"])
def test_ok_forwards_without_a_header(storage: Storage) -> None:
    outcome = Gateway(storage=storage).send(call())
    assert forwarded(outcome)
    assert "x-chargeback-budget" not in outcome.response_headers


@pytest.mark.parametrize("storage", [status(500), status(403, "AuthorizationPermissionMismatch"),
                                     status(404, "ContainerNotFound"), timeout, blob("maybe"),
                                     lambda sent: Reply(200, {}, "not json")],
                         ids=["500", "403", "container-not-found", "timeout", "unknown-state", "bad-body"])
def test_an_unreadable_state_fails_open_by_default_and_closed_when_asked(storage: Storage) -> None:
    outcome = Gateway(storage=storage).send(call())
    assert forwarded(outcome)
    assert outcome.response_headers["x-chargeback-budget"] == "unknown"
    closed = Gateway(storage=storage, named_values=fail_closed()).send(call())
    assert closed.returned is not None and closed.forwarded is None
    assert closed.returned.status == 503 and closed.returned.headers["Retry-After"] == "10"
    assert json.loads(closed.returned.body)["error"]["code"] == "BudgetStateUnavailable"


def test_fail_closed_does_not_refuse_known_states() -> None:
    assert forwarded(Gateway(storage=no_blob, named_values=fail_closed()).send(call()))
    assert forwarded(Gateway(storage=blob("warn"), named_values=fail_closed()).send(call()))


# --- the cache -------------------------------------------------------------------------------

@pytest.mark.parametrize(("storage", "duration"), [(no_blob, 60), (blob("block"), 60), (blob("warn"), 60),
                                                   (status(500), 10)], ids=["ok", "block", "warn", "unknown"])
def test_each_state_is_cached_per_subscription(storage: Storage, duration: int) -> None:
    gateway = Gateway(storage=storage)
    first = gateway.send(call())
    assert list(gateway.cache) == ["chargeback-budget-team-search-prod"]
    assert gateway.cache["chargeback-budget-team-search-prod"][1] == duration
    second = gateway.send(call())
    assert len(first.sent) == 1 and second.sent == []  # the second call met the cache
    assert (first.returned is None) == (second.returned is None)
    other = gateway.send(call("team-support-prod"))
    assert [s.url for s in other.sent] == [STATE_URL + "team-support-prod.json"]


def test_a_cached_block_is_lifted_when_the_entry_expires_and_the_blob_is_gone() -> None:
    state: dict[str, Storage] = {"now": blob("block")}
    gateway = Gateway(storage=lambda sent: state["now"](sent))
    assert gateway.send(call()).returned is not None
    state["now"] = no_blob  # the pipeline deleted the blob; the cache still holds block
    assert gateway.send(call()).returned is not None
    gateway.cache.clear()  # 60 s later
    assert forwarded(gateway.send(call()))


def test_a_request_without_a_subscription_reads_no_state() -> None:
    outcome = Gateway(storage=blob("block")).send(call(subscription=None))
    assert outcome.sent == [] and outcome.returned is None


# --- seeded mistakes: the checks above catch them --------------------------------------------

def test_a_gate_that_answers_429_is_caught() -> None:
    text = GATE.read_text(encoding="utf-8").replace('code="403"', 'code="429"')
    assert refusal_problems(text) == ["429 outside a comment", "refusal codes ['429', '503']"]
    outcome = Gateway({GATE.name: text}, storage=blob("block")).send(call())
    assert outcome.returned is not None and outcome.returned.status == 429  # the block test would fail


def test_a_read_that_takes_any_404_as_ok_is_caught() -> None:
    text = READ.read_text(encoding="utf-8").replace('if (code != "BlobNotFound")', 'if (false)')
    outcome = Gateway({READ.name: text}, storage=status(404, "ContainerNotFound")).send(call())
    assert "x-chargeback-budget" not in outcome.response_headers  # the fail-open check expects unknown


def test_a_fail_closed_switch_that_ignores_the_named_value_is_caught() -> None:
    text = GATE.read_text(encoding="utf-8").replace('"{{chargeback-budget-fail-closed}}"', '"true"')
    outcome = Gateway({GATE.name: text}, storage=status(500)).send(call())
    assert outcome.returned is not None  # fail-open by default is broken: the default test would fail
