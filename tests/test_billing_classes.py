"""Service tiers, spillover and audio priced as Azure bills them: hand-computed goldens through
the real CLI (ingest, report, query) and files.

Prices per 1M tokens: m-chat global standard 2.00 in / 0.50 cached / 8.00 out, flex 1.00 / 0.25 /
4.00, no priority row; m-audio 2.50 / 1.25 / 10.00 with audio 40.00 in / 80.00 out; m-text 2.50 /
(none) / 10.00 and no audio price. dep-ptu (m-chat, provisioned) spills over to dep-chat;
dep-ptu-bare names no spillover deployment. dep-ptu: 1 PTU at 2.00 USD per PTU-hour on
2026-10-01 only (48.00), weights 1 / 0 / 4 and 100 input tokens per minute per PTU: capacity
1 x 24 x 60 x 100 = 144,000 weighted tokens a day.

sub-a (CC-A), all pay-as-you-go:
  standard (serviceTier null, default, auto): 0.8M x 2 + 0.2M x 0.5 + 0.1M x 8 = 2.50;
      1M x 2 = 2.00; 0.1M x 2 + 0.5M x 8 = 4.20                                  -> 8.70
  flex: 1M x 1 + 1M x 0.25 + 1M x 4 = 5.25                                       -> 5.25
  priority: unpriced no-price, naming the tier (never the standard rate)
  spilled from dep-ptu at dep-chat's prices: 1M x 2 + 0.1M x 8 = 2.80 (2026-10-01, capacity)
      and 1M x 2 = 2.00 (2026-10-05, no capacity row)                           -> 4.80
  spilled from dep-ptu at flex: 1M x 1 = 1.00                                     -> 1.00
  spilled from dep-ptu-bare: unpriced no-spillover-deployment
  dep-ptu on 2026-10-05, not spilled: unpriced no-capacity
  audio: text in (1M - 0.1M cached - 0.4M audio) x 2.5 = 1.25, cached 0.1M x 1.25 = 0.125,
      audio in 0.4M x 40 = 16, text out 0.15M x 10 = 1.50, audio out 0.05M x 80 = 4 -> 22.875
  m-text: 1M x 2.5 = 2.50; the request with audio tokens: unpriced no-price, naming audio
sub-b (CC-B): 10,000 prompt + 5,000 output on dep-ptu on 2026-10-01 = 30,000 weighted: the
  spilled requests of that day are not PTU usage, so CC-B's share is 48 x 30,000 / 144,000 =
  10.00 and the idle 38.00 goes to CC-OWNER.
Pay-as-you-go 8.70 + 5.25 + 4.80 + 1.00 + 22.875 + 2.50 = 45.125; PTU 48.00; total 93.125 USD.
"""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.entrypoints.cli import main
from tests.conftest import WriteFile
from tests.factories import event, jsonl

PRICES = """\
# source: test goldens
# date: 2026-12-03
model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,cached_input_per_1m,output_per_1m,service_tier,audio_input_per_1m,audio_output_per_1m
m-chat,global,*,2026-01-01,,USD,2.00,0.50,8.00,,,
m-chat,global,*,2026-01-01,,USD,1.00,0.25,4.00,flex,,
m-audio,global,*,2026-01-01,,USD,2.50,1.25,10.00,standard,40.00,80.00
m-text,global,*,2026-01-01,,USD,2.50,,10.00,,,
"""
DEPLOYMENTS = """\
deployment,model,deployment_type,region,spillover_deployment
dep-chat,m-chat,global,,
dep-ptu,m-chat,provisioned,,dep-chat
dep-ptu-bare,m-chat,provisioned,,
dep-audio,m-audio,global,,
dep-text,m-text,global,,
"""
COST_CENTERS = "subscription_id,cost_center,effective_from,effective_to\nsub-a,CC-A,,\nsub-b,CC-B,,\n"
CAPACITY = ("deployment,ptu,price_per_ptu_hour,currency,effective_from,effective_to\n"
            "dep-ptu,1,2.00,USD,2026-10-01,2026-10-02\n")
WEIGHTS = "model,input_weight,cached_input_weight,output_weight,input_tpm_per_ptu\nm-chat,1,0,4,100\n"

_count = iter(range(1, 1000))


def tokens(prompt: int, completion: int, cached: int = 0, audio_prompt: int = 0,
           audio_completion: int = 0) -> dict[str, int]:
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion,
            "cachedTokens": cached, "reasoningTokens": 0, "audioPromptTokens": audio_prompt,
            "audioCompletionTokens": audio_completion}


def ev(deployment: str, usage: dict[str, int], day: str = "2026-10-01", subscription: str = "sub-a",
       **changes: object) -> dict[str, object]:
    return event(eventId=f"bill-{next(_count):03d}", subscriptionId=subscription, deployment=deployment,
                 timestamp=f"{day}T10:00:00Z", model=None, usage=usage, **changes)


M = 1_000_000
EVENTS = [
    ev("dep-chat", tokens(M, 100_000, cached=200_000), serviceTier=None),
    ev("dep-chat", tokens(M, 0), serviceTier="default", serviceTierSource="response"),
    ev("dep-chat", tokens(100_000, 500_000), serviceTier="auto", serviceTierSource="response"),
    ev("dep-chat", tokens(2 * M, M, cached=M), serviceTier="flex", serviceTierSource="response"),
    ev("dep-chat", tokens(M, 0), serviceTier="priority", serviceTierSource="response"),
    ev("dep-ptu", tokens(10_000, 5_000), subscription="sub-b", spillover=False),
    ev("dep-ptu", tokens(M, 100_000), spillover=True),
    ev("dep-ptu", tokens(M, 0), day="2026-10-05", spillover=True),
    ev("dep-ptu", tokens(M, 0), spillover=True, serviceTier="flex", serviceTierSource="response"),
    ev("dep-ptu", tokens(100, 100), day="2026-10-05", spillover=False),
    ev("dep-ptu-bare", tokens(M, 0), spillover=True),
    ev("dep-audio", tokens(M, 200_000, cached=100_000, audio_prompt=400_000, audio_completion=50_000)),
    ev("dep-text", tokens(M, 0)),
    ev("dep-text", tokens(10_000, 0, audio_prompt=1_000)),
]
PAYG, PTU, TOTAL = Decimal("45.125"), Decimal("48.00"), Decimal("93.125")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ingest_world(write_file: WriteFile, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference files named by the environment, and EVENTS ingested, as an operator would."""
    for name, file, text in (("CHARGEBACK_PRICES", "prices.csv", PRICES),
                             ("CHARGEBACK_DEPLOYMENTS", "deployments.csv", DEPLOYMENTS),
                             ("CHARGEBACK_COST_CENTERS", "cost-centers.csv", COST_CENTERS),
                             ("CHARGEBACK_CAPACITY", "capacity.csv", CAPACITY),
                             ("CHARGEBACK_PTU_WEIGHTS", "ptu-weights.csv", WEIGHTS)):
        monkeypatch.setenv(name, str(write_file(file, text)))
    monkeypatch.setenv("CHARGEBACK_PTU_IDLE_OWNER", "CC-OWNER")
    result = run("ingest", str(write_file("events.jsonl", jsonl(EVENTS))))
    assert result.exit_code == 0, result.output
    assert "ingested 14" in result.output, result.output


@pytest.fixture
def out(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    ingest_world(write_file, monkeypatch)
    folder = tmp_path / "out"
    result = run("report", "--month", "2026-10", "--out", str(folder), "--format", "csv,parquet")
    assert result.exit_code == 0, result.output
    return folder


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_each_tier_spillover_and_audio_priced_by_hand(out: Path) -> None:
    rows = read(out / "chargeback-2026-10.csv")
    got = {(r["cost_center"], r["model"], r["deployment_type"], r["service_tier"], r["spillover"]):
           (r["requests"], r["cost"], r["ptu_cost"], r["total_cost"], r["audio_prompt_tokens"],
            r["audio_completion_tokens"]) for r in rows if r["currency"]}
    assert got == {
        ("CC-A", "m-chat", "global", "standard", "false"): ("3", "8.7", "", "8.7", "0", "0"),
        ("CC-A", "m-chat", "global", "flex", "false"): ("1", "5.25", "", "5.25", "0", "0"),
        ("CC-A", "m-chat", "global", "standard", "true"): ("2", "4.8", "", "4.8", "0", "0"),
        ("CC-A", "m-chat", "global", "flex", "true"): ("1", "1", "", "1", "0", "0"),
        ("CC-A", "m-audio", "global", "standard", "false"): ("1", "22.875", "", "22.875", "400000", "50000"),
        ("CC-A", "m-text", "global", "standard", "false"): ("1", "2.5", "", "2.5", "0", "0"),
        ("CC-B", "m-chat", "provisioned", "", "false"): ("1", "0", "10", "10", "0", "0"),
        ("CC-OWNER", "m-chat", "provisioned", "", "false"): ("0", "", "38", "38", "0", "0"),
    }
    assert sum(Decimal(r["total_cost"]) for r in rows if r["total_cost"]) == TOTAL
    assert sum(Decimal(r["cost"]) for r in rows if r["cost"]) == PAYG


def test_unpriced_tier_spillover_and_audio_name_what_is_missing(out: Path) -> None:
    unpriced = {(r["reason"], r["deployment"], r["service_tier"], r["spillover"]): (r["requests"], r["detail"])
                for r in read(out / "chargeback-2026-10-unpriced.csv")}
    assert unpriced == {
        ("no-price", "dep-chat", "priority", "false"): (
            "1", "no price for m-chat (global, region *, service tier priority) on 2026-10-01"),
        ("no-capacity", "dep-ptu", "", "false"): (
            "1", "provisioned deployment 'dep-ptu' has no capacity row in force on 2026-10-05 (provisioned-capacity "
            "file)"),
        ("no-spillover-deployment", "dep-ptu-bare", "standard", "true"): (
            "1", "spilled over from provisioned deployment 'dep-ptu-bare', whose deployment-map row names no "
            "spillover_deployment: name the standard deployment that serves its overflow"),
        ("no-price", "dep-text", "standard", "false"): (
            "1", "no audio price for m-text (global, region *) on 2026-10-01: the request has audio tokens and "
            f"{out.parent / 'inputs' / 'prices.csv'}:7 has no audio_input_per_1m"),
    }


def test_spilled_requests_are_not_ptu_usage(out: Path) -> None:
    result = run("query", "SELECT cost_center, kind, amount, prompt_tokens FROM allocations ORDER BY ALL",
                 "--format", "csv")
    assert result.exit_code == 0, result.output
    assert list(csv.DictReader(result.stdout.splitlines())) == [
        {"cost_center": "CC-B", "kind": "usage", "amount": "10.000000000000", "prompt_tokens": "10000"},
        {"cost_center": "CC-OWNER", "kind": "idle", "amount": "38.000000000000", "prompt_tokens": "0"},
    ]


def test_the_costs_view_prices_each_event_alike(out: Path) -> None:
    result = run("query", "SELECT billing_tier, spilled, sum(cost) AS cost, count(*) AS requests FROM costs "
                 "WHERE cost IS NOT NULL GROUP BY ALL ORDER BY ALL", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [(r["billing_tier"], r["spilled"], Decimal(r["cost"]), r["requests"]) for r in rows] == [
        ("flex", "False", Decimal("5.25"), "1"),
        ("flex", "True", Decimal("1"), "1"),
        # with the PTU request of sub-b (0 per token: its capacity is in `allocations`)
        ("standard", "False", Decimal("8.70") + Decimal("22.875") + Decimal("2.50"), "6"),
        ("standard", "True", Decimal("4.80"), "2"),
    ]
    result = run("query", "SELECT sum(cost) FROM costs", "--format", "csv")
    assert Decimal(result.stdout.splitlines()[1]) == PAYG


@pytest.mark.parametrize(("file", "text", "message"), [
    ("CHARGEBACK_PRICES", PRICES.replace("4.00,flex,,", "4.00,turbo,,"),
     "prices.csv:5: service_tier 'turbo' is not one of standard, flex, priority (blank = standard)"),
    ("CHARGEBACK_PRICES", PRICES + "m-chat,global,*,2026-06-01,,USD,1.00,0.25,4.00,flex,,\n",
     "prices.csv:8: overlapping prices for m-chat / global / region * / service tier flex: 2026-06-01..open "
     "overlaps 2026-01-01..open"),
    ("CHARGEBACK_DEPLOYMENTS", DEPLOYMENTS.replace("dep-ptu,m-chat,provisioned,,dep-chat",
                                                   "dep-ptu,m-chat,provisioned,,dep-nowhere"),
     "deployments.csv:3: spillover_deployment 'dep-nowhere' of 'dep-ptu' is not in the deployment map: add it"),
    ("CHARGEBACK_DEPLOYMENTS", DEPLOYMENTS.replace("dep-ptu,m-chat,provisioned,,dep-chat",
                                                   "dep-ptu,m-chat,provisioned,,dep-ptu-bare"),
     "deployments.csv:3: spillover_deployment 'dep-ptu-bare' of 'dep-ptu' is provisioned (provisioned): spilled "
     "requests are billed pay-as-you-go"),
    ("CHARGEBACK_DEPLOYMENTS", DEPLOYMENTS.replace("dep-audio,m-audio,global,,", "dep-audio,m-audio,global,,dep-chat"),
     "deployments.csv:5: deployment 'dep-audio' (global) names spillover_deployment 'dep-chat', but only a "
     "provisioned deployment spills over"),
])
def test_bad_tiers_and_spillover_maps_are_one_line(out: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch,
                                                   file: str, text: str, message: str) -> None:
    monkeypatch.setenv(file, str(write_file(Path(str(__import__("os").environ[file])).name, text)))
    again = out.parent / "again"
    result = run("report", "--month", "2026-10", "--out", str(again))
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line, line
    assert not again.exists()  # nothing written



def test_live_spend_prices_tiers_spillover_and_audio_as_the_report(out: Path) -> None:
    result = run("usage", "--month", "2026-10", "--subscription", "sub-a")
    assert result.exit_code == 0, result.output
    # 45.125 USD (the report's pay-as-you-go of sub-a), shown to the cent; 4 unpriced requests:
    # priority, no capacity, no spillover deployment, audio without an audio price
    assert "│ sub-a        │       13 │ 13,010,200 │        4 │ 45.12 │" in result.output, result.output


def test_cached_and_audio_prompt_tokens_may_not_overlap() -> None:
    from pipeline.domain.decode import RawMessage, decode_batch
    from tests.factories import line

    bad = ev("dep-audio", tokens(1_000, 0, cached=600, audio_prompt=500))
    [rejection] = decode_batch([RawMessage(line(bad), "overlap.jsonl", "1")]).rejections
    assert (rejection.code, rejection.reason) == (
        "inconsistent-usage", "cachedTokens 600 + audioPromptTokens 500 > promptTokens 1000: cached and audio prompt "
        "tokens are parts of the prompt that do not overlap")


def test_the_html_report_shows_tiers_and_spillover(out: Path) -> None:
    result = run("report", "--month", "2026-10", "--out", str(out), "--format", "html")
    assert result.exit_code == 0, result.output
    page = (out / "chargeback-2026-10.html").read_text(encoding="utf-8")
    table = page[page.index('<table id="tier-costs"'):]
    table = table[:table.index("</table>")]
    cells = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", table)]
    assert cells == [
        "flex", "no", "1", "0", "5.25 USD",
        "flex", "yes", "1", "0", "1.00 USD",
        "standard", "no", "5", "450,000", "34.08 USD",
        "standard", "yes", "2", "0", "4.80 USD",
    ]
    models = page[page.index('<table id="unpriced-models"'):]
    assert "<td>m-chat</td><td>global</td><td>priority</td><td>no-price</td>" in models


def test_prices_check_names_the_tiers_and_audio_rows(home: Path, write_file: WriteFile) -> None:
    result = run("prices", "check", str(write_file("prices.csv", PRICES)))
    assert result.exit_code == 0, result.output
    assert "deployment types global; service tiers flex, standard; currencies USD" in result.output, result.output
    assert "prices per 1M tokens; 1 with audio prices" in result.output


def test_an_unknown_event_tier_is_unpriced_naming_it(home: Path, write_file: WriteFile,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ingest_world(write_file, monkeypatch)
    extra = [ev("dep-chat", tokens(M, 0), serviceTier="Scale", serviceTierSource="response"),
             ev("dep-chat", tokens(M, 0), serviceTier="FLEX", serviceTierSource="response")]
    assert run("ingest", str(write_file("more.jsonl", jsonl(extra)))).exit_code == 0
    result = run("report", "--month", "2026-10", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    unpriced = read(tmp_path / "out" / "chargeback-2026-10-unpriced.csv")
    assert [(r["service_tier"], r["detail"]) for r in unpriced if r["service_tier"] == "scale"] == [
        ("scale", "no price for m-chat (global, region *, service tier scale) on 2026-10-01")]
    rows = read(tmp_path / "out" / "chargeback-2026-10.csv")
    [flex] = [r for r in rows if r["service_tier"] == "flex" and r["spillover"] == "false"]
    assert (flex["requests"], flex["cost"]) == ("2", "6.25")  # 5.25 + 1M x 1.00 (FLEX is flex)


def test_the_focus_export_prices_tiers_spillover_and_audio_exactly(out: Path) -> None:
    import pyarrow.parquet as pq

    from tests.focus_conformance import COLUMNS_1_3, check_csv, check_table

    result = run("report", "--month", "2026-10", "--out", str(out), "--format", "focus")
    assert result.exit_code == 0, result.output
    rows = read(out / "chargeback-2026-10-focus.csv")
    assert check_csv(list(rows[0]), rows, COLUMNS_1_3) == []
    [parquet] = (out / "ingestion").rglob("*__chargeback-2026-10-focus.parquet")
    assert check_table(pq.read_table(parquet), COLUMNS_1_3) == []
    assert sum(Decimal(r["BilledCost"]) for r in rows) == TOTAL  # = the report total, to the last digit
    audio = {r["SkuMeter"]: (r["ConsumedQuantity"], r["BilledCost"]) for r in rows if r["x_Model"] == "m-audio"}
    assert audio == {"Input Tokens": ("500000", "1.25"), "Cached Input Tokens": ("100000", "0.125"),
                     "Audio Input Tokens": ("400000", "16"), "Output Tokens": ("150000", "1.5"),
                     "Audio Output Tokens": ("50000", "4")}
    flex = [r for r in rows if r["x_ServiceTier"] == "flex"]
    assert {r["SkuPriceId"].split("@")[0] for r in flex} == {
        "m-chat/global/*/flex/input/2026-01-01", "m-chat/global/*/flex/cached-input/2026-01-01",
        "m-chat/global/*/flex/output/2026-01-01"}
    assert all(json.loads(r["SkuPriceDetails"])["x_ServiceTier"] == "flex" for r in flex)
    spilled = [r for r in rows if r["x_Spillover"] == "true"]
    assert sum(Decimal(r["BilledCost"]) for r in spilled) == Decimal("5.80")  # 2.80 + 2.00 + 1.00
    assert all(json.loads(r["SkuPriceDetails"])["x_Spillover"] is True for r in spilled)
