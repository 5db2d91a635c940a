"""Budgets enforced at the gateway, end to end through the real CLI: ingest that crosses a block
budget publishes the state at once, `budgets --publish` writes exactly the files APIM reads,
a raised budget and a new month lift a block, two ingest processes crossing at once publish one
state, and a bad budgets file is one line with nothing published.

Prices: m-alpha 1.00 USD per 1M input tokens. Budgets this month (UTC): sub-a 0.01 USD, block;
cost center CC-B 0.02 USD, alert, warn from 50%; product product-x 0.03 USD, block.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.entrypoints.cli import main
from tests.conftest import WriteFile
from tests.factories import event, jsonl, usage

PRICES = ("model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,cached_input_per_1m,"
          "output_per_1m\nm-alpha,global,*,2026-01-01,,USD,1.00,0.50,4.00\n")
DEPLOYMENTS = "deployment,model,deployment_type,region\ndep-alpha,m-alpha,global,\n"
COST_CENTERS = "subscription_id,cost_center,effective_from,effective_to\nsub-a,CC-A,,\nsub-b,CC-B,,\nsub-c,CC-C,,\n"
BUDGETS = ("scope,key,monthly_budget,currency,action,warn_at\n"
           "subscription,sub-a,0.01,USD,block,\n"
           "cost-center,CC-B,0.02,USD,alert,50\n"
           "product,product-x,0.03,USD,block,\n")
NOW = datetime.now(UTC)
MONTH = f"{NOW:%Y-%m}"
STAMP = (NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ev(event_id: str, subscription: str, prompt: int, product: str = "product-a") -> dict[str, object]:
    return event(eventId=event_id, subscriptionId=subscription, productId=product, deployment="dep-alpha",
                 model=None, timestamp=STAMP, usage=usage(prompt, 0))


@pytest.fixture
def gateway(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, file, text in (("CHARGEBACK_PRICES", "prices.csv", PRICES),
                             ("CHARGEBACK_DEPLOYMENTS", "deployments.csv", DEPLOYMENTS),
                             ("CHARGEBACK_COST_CENTERS", "cost-centers.csv", COST_CENTERS),
                             ("CHARGEBACK_BUDGETS", "budgets.csv", BUDGETS)):
        monkeypatch.setenv(name, str(write_file(file, text)))
    from pipeline.app import open_store
    from pipeline.lake.areas import GATEWAY
    from pipeline.settings import Settings

    root = open_store(Settings.from_env(), GATEWAY).local_root
    assert root is not None
    return root


def state(gateway: Path, subscription: str) -> dict[str, str]:
    document = json.loads((gateway / "budgets" / f"{subscription}.json").read_text(encoding="utf-8"))
    began = datetime.fromisoformat(document.pop("updatedAt").replace("Z", "+00:00"))  # when the state began
    assert began.tzinfo is not None and began <= datetime.now(UTC)
    return document  # type: ignore[no-any-return]


def files(gateway: Path) -> list[str]:
    folder = gateway / "budgets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_ingest_that_crosses_a_block_budget_publishes_the_state_at_once(gateway: Path, write_file: WriteFile) -> None:
    result = run("ingest", str(write_file("first.jsonl", jsonl([ev("a-1", "sub-a", 5_000)]))))
    assert result.exit_code == 0, result.output
    assert files(gateway) == []  # 50%: ok, nothing published
    result = run("ingest", str(write_file("second.jsonl", jsonl([ev("a-2", "sub-a", 5_000)]))))
    assert result.exit_code == 0, result.output
    assert "gateway state: wrote budgets/sub-a.json" in result.output
    assert state(gateway, "sub-a") == {
        "subscriptionId": "sub-a", "state": "block", "scope": "subscription", "key": "sub-a", "spend": "0.01",
        "budget": "0.01", "currency": "USD", "month": MONTH,
        "message": f"The monthly budget of this subscription (0.01 USD) is used up for {MONTH}: 0.01 USD spent. "
                   "Requests are refused until the budget is raised or the month ends."}


def test_publish_writes_exactly_the_states_and_lifts_a_raised_budget(gateway: Path, write_file: WriteFile,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    events = [ev("a-1", "sub-a", 10_000), ev("b-1", "sub-b", 12_000), ev("c-1", "sub-c", 30_000, "product-x"),
              ev("d-1", "sub-d", 1_000, "product-x")]
    ingested = run("ingest", str(write_file("month.jsonl", jsonl(events))))
    # sub-a's block budget reached 100% in this ingest: published at once (with sub-b's warning)
    assert "gateway state: wrote budgets/sub-a.json" in ingested.output, ingested.output
    assert run("snapshot").exit_code == 0  # product membership comes from the month's snapshots
    result = run("budgets", "--publish")
    assert result.exit_code == 0, result.output
    assert files(gateway) == ["sub-a.json", "sub-b.json", "sub-c.json", "sub-d.json"]
    assert state(gateway, "sub-b")["state"] == "warn"  # CC-B at 60%, an alert budget warning from 50%
    assert state(gateway, "sub-b")["message"] == f"60.00% of the monthly budget of cost center CC-B (0.02 USD) is " \
                                                 f"used in {MONTH}."
    # product-x: 0.03 + 0.001 = 0.031 USD, over its block budget: both of its subscriptions are refused
    assert {k: state(gateway, "sub-c")[k] for k in ("state", "scope", "key", "spend")} == {
        "state": "block", "scope": "product", "key": "product-x", "spend": "0.031"}
    assert state(gateway, "sub-d")["state"] == "block"
    assert "block sub-a: subscription sub-a at 100.00%" in result.output
    assert "gateway state in" in result.output and "2 written, 2 unchanged, 0 removed" in result.output
    again = run("budgets", "--publish")
    assert "0 written, 4 unchanged, 0 removed" in again.output, again.output  # one state, not rewritten
    monkeypatch.setenv("CHARGEBACK_BUDGETS", str(write_file("raised.csv", BUDGETS.replace("sub-a,0.01", "sub-a,1.00"))))
    raised = run("budgets", "--publish")
    assert "0 written, 3 unchanged, 1 removed" in raised.output, raised.output
    assert files(gateway) == ["sub-b.json", "sub-c.json", "sub-d.json"]


def test_a_budget_whose_key_nothing_knows_is_named(gateway: Path, write_file: WriteFile,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A key neither the cost-center map nor the month's usage knows (`sub-A` for `sub-a`): the
    budget can never warn or block, so `budgets` says so; known keys, used or not, are not named."""
    typo = write_file("typo.csv", BUDGETS + "subscription,sub-A,1,USD,block,\ncost-center,cc-b,1,USD,alert,\n"
                                            "subscription,sub-c,1,USD,alert,\n")
    monkeypatch.setenv("CHARGEBACK_BUDGETS", str(typo))
    assert run("ingest", str(write_file("month.jsonl", jsonl([ev("a-1", "sub-a", 1_000)])))).exit_code == 0
    result = run("budgets")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert notes == ["note: product budgets: no snapshot of this month names a product yet (events' productId)",
                     f"note: {typo}:5: subscription 'sub-A' is in neither the cost-center map nor this month's usage "
                     "(keys are case-sensitive): a typo never warns or blocks",
                     f"note: {typo}:6: cost-center 'cc-b' is in neither the cost-center map nor this month's usage "
                     "(keys are case-sensitive): a typo never warns or blocks"], result.output


def test_a_new_month_lifts_every_block(gateway: Path, write_file: WriteFile) -> None:
    from pipeline.app import publish_budgets
    from pipeline.settings import Settings

    assert run("ingest", str(write_file("month.jsonl", jsonl([ev("a-1", "sub-a", 10_000)])))).exit_code == 0
    assert files(gateway) == ["sub-a.json"]
    first_of_next = (NOW.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=1)
    published = publish_budgets(Settings.from_env(), first_of_next)
    assert (published.written, published.removed) == ([], ["budgets/sub-a.json"])
    assert files(gateway) == []


def test_two_ingest_processes_crossing_at_once_publish_one_state(gateway: Path, write_file: WriteFile,
                                                                tmp_path: Path) -> None:
    halves = [write_file(f"half-{n}.jsonl", jsonl([ev(f"a-{n}", "sub-a", 5_000)])) for n in (1, 2)]
    command = [str(Path(sys.executable).parent / "chargeback"), "ingest"]
    environment = {**os.environ, "COLUMNS": "200"}
    processes = [subprocess.Popen([*command, str(half)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=environment, cwd=tmp_path) for half in halves]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    joined = "\n".join(outputs)
    assert joined.count("100% of 0.01 USD reached") == 1, joined  # raised exactly once, by one of them
    assert joined.count("gateway state: wrote budgets/sub-a.json") == 1, joined
    assert files(gateway) == ["sub-a.json"]
    assert state(gateway, "sub-a")["state"] == "block"


@pytest.mark.parametrize(("row", "message"), [
    ("team,sub-a,1,USD,block,", "budgets.csv:2: scope 'team' must be one of subscription, cost-center, product"),
    ("subscription,sub-a,1,USD,stop,", "budgets.csv:2: action 'stop' must be one of alert, block (blank = alert)"),
    ("subscription,sub-a,-5,USD,block,", "budgets.csv:2: monthly_budget '-5' is negative"),
    ("subscription,sub-a,1,EUR,block,", "budgets.csv:2: currency EUR: the live spend is in USD"),
    ("subscription,sub-a,1,USD,block,120", "budgets.csv:2: warn_at '120' must be a whole percent from 1 to 100"),
])
def test_a_bad_budget_is_one_line_and_nothing_is_published(gateway: Path, write_file: WriteFile,
                                                         monkeypatch: pytest.MonkeyPatch, row: str,
                                                         message: str) -> None:
    header = BUDGETS.splitlines()[0]
    monkeypatch.setenv("CHARGEBACK_BUDGETS", str(write_file("budgets.csv", f"{header}\n{row}\n")))
    result = run("budgets", "--publish")
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line, line
    assert files(gateway) == []
