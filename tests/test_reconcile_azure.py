"""`chargeback reconcile-azure`: the ledger against Azure Monitor's metrics and the billed cost,
through the real CLI, on responses in the documented shapes (tests.azure_metrics_files).

The month, by hand (prices per 1M tokens: m-alpha 1.00 in / 4.00 out, m-beta 0.10 / 0.40):
2026-10-05 dep-alpha: 3 answered requests, 3,000 prompt, 600 completion tokens (and one 429,
           which the ledger does not meter and Azure counts apart) - Azure counts the same: ok.
           dep-beta: 2 requests, 1,000 / 200 - the same: ok.
2026-10-06 dep-alpha: 1 request, 2,000 / 400; Azure counts 2 requests, 3,000 / 600: a gap of
           1 request, 1,000 prompt and 200 completion tokens = 0.001 + 0.0008 = 0.0018 USD,
           50% of Azure's requests: over the 1% tolerance.
           dep-gamma: Azure saw 5 requests the ledger never did (traffic around APIM): azure-only.
Billed (cost export): 2026-10-05 0.0054 + 0.00018 = 0.00558 (the metered cost: ok);
2026-10-06 0.0054 against 0.0036 metered: a gap of 0.0018 USD (33.33%).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import urllib3
from click.testing import CliRunner, Result

from pipeline.entrypoints.cli import main
from tests.azure_metrics_files import (
    ACCOUNT,
    OTHER_ACCOUNT,
    cost_export,
    dumps,
    metrics_response,
    spread,
)
from tests.conftest import COST_CENTERS_CSV, PRICES_CSV, WriteFile
from tests.factories import event, jsonl, usage

DEPLOYMENTS = ("deployment,model,deployment_type,region,spillover_deployment,account\n"
               f"dep-alpha,m-alpha,global,,,{ACCOUNT}\n"
               f"dep-beta,m-beta,datazone,westeurope,,{ACCOUNT}\n")
EVENTS = [
    *(event(eventId=f"a5-{n}", deployment="dep-alpha", model=None, timestamp="2026-10-05T08:00:00Z",
            usage=usage(1000, 200)) for n in range(3)),
    event(eventId="a5-429", deployment="dep-alpha", model=None, timestamp="2026-10-05T08:30:00Z", usage=None,
          usageSource="none", statusCode=429),
    *(event(eventId=f"b5-{n}", deployment="dep-beta", model=None, timestamp="2026-10-05T09:00:00Z",
            usage=usage(500, 100)) for n in range(2)),
    event(eventId="a6-0", deployment="dep-alpha", model=None, timestamp="2026-10-06T10:00:00Z",
          usage=usage(2000, 400)),
]
ALPHA, BETA, GAMMA = ({"ModelDeploymentName": name} for name in ("dep-alpha", "dep-beta", "dep-gamma"))
SPAN = "2026-10-05T00:00:00Z/2026-10-07T00:00:00Z"
POINTS = [
    *spread("AzureOpenAIRequests", {**ALPHA, "StatusCode": "200"}, "2026-10-05", 3),
    *spread("AzureOpenAIRequests", {**ALPHA, "StatusCode": "429"}, "2026-10-05", 1, parts=1),
    *spread("ProcessedPromptTokens", ALPHA, "2026-10-05", 3000),
    *spread("GeneratedTokens", ALPHA, "2026-10-05", 600),
    *spread("AzureOpenAIRequests", {**BETA, "StatusCode": "200"}, "2026-10-05", 2, parts=2),
    *spread("ProcessedPromptTokens", BETA, "2026-10-05", 1000),
    *spread("GeneratedTokens", BETA, "2026-10-05", 200),
    *spread("AzureOpenAIRequests", {**ALPHA, "StatusCode": "200"}, "2026-10-06", 2, parts=2),
    *spread("ProcessedPromptTokens", ALPHA, "2026-10-06", 3000),
    *spread("GeneratedTokens", ALPHA, "2026-10-06", 600),
    *spread("AzureOpenAIRequests", {**GAMMA, "StatusCode": "200"}, "2026-10-06", 5),
    *spread("ProcessedPromptTokens", GAMMA, "2026-10-06", 500),
    *spread("GeneratedTokens", GAMMA, "2026-10-06", 50),
]
HEADER = ("date,deployment,metered_requests,azure_requests,metered_prompt_tokens,azure_prompt_tokens,"
          "metered_completion_tokens,azure_completion_tokens,account,requests_gap,prompt_tokens_gap,"
          "completion_tokens_gap,gap_pct,gap_cost,currency,azure_failed_requests,azure_spillover_requests,"
          "metered_spillover_requests,azure_requests_by_tier,metered_requests_by_tier,status")
EXPECTED = [
    f"2026-10-05,dep-alpha,3,3,3000,3000,600,600,{ACCOUNT},0,0,0,0.00,0,USD,1,0,0,,standard:3,ok",
    f"2026-10-05,dep-beta,2,2,1000,1000,200,200,{ACCOUNT},0,0,0,0.00,0,USD,0,0,0,,standard:2,ok",
    f"2026-10-06,dep-alpha,1,2,2000,3000,400,600,{ACCOUNT},1,1000,200,50.00,0.0018,USD,0,0,0,,standard:1,gap",
    f"2026-10-06,dep-gamma,0,5,0,500,0,50,{ACCOUNT},5,500,50,100.00,,,0,0,0,,,azure-only",
]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def world(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, file, text in (("CHARGEBACK_PRICES", "prices.csv", PRICES_CSV),
                             ("CHARGEBACK_DEPLOYMENTS", "deployments.csv", DEPLOYMENTS),
                             ("CHARGEBACK_COST_CENTERS", "cost-centers.csv", COST_CENTERS_CSV)):
        monkeypatch.setenv(name, str(write_file(file, text)))
    result = run("ingest", str(write_file("events.jsonl", jsonl(EVENTS))))
    assert result.exit_code == 0, result.output
    return write_file("metrics.json", dumps(metrics_response(POINTS, timespan=SPAN)))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_each_deployment_day_against_azure_monitor(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("reconcile-azure", "--month", "2026-10", "--metrics", str(world), "--out", str(out))
    assert result.exit_code == 3, result.output  # a gap over the tolerance
    assert lines(out / "reconciliation-2026-10.csv") == [HEADER, *EXPECTED]
    assert "2 deployment-day(s) over the tolerance of 1%:" in result.output
    assert "2026-10-06 dep-alpha: gap, requests +1, prompt tokens +1,000, completion tokens +200 (50.00%)" \
        in result.output


def test_within_the_tolerance_only_the_traffic_around_apim_is_left(world: Path, tmp_path: Path) -> None:
    result = run("reconcile-azure", "--month", "2026-10", "--metrics", str(world), "--out", str(tmp_path),
                 "--tolerance", "50")
    assert result.exit_code == 3, result.output
    statuses = [row["status"] for row in csv.DictReader((tmp_path / "reconciliation-2026-10.csv").open())]
    assert statuses == ["ok", "ok", "ok", "azure-only"]


def test_no_gap_exits_0(world: Path, write_file: WriteFile, tmp_path: Path) -> None:
    day5 = [point for point in POINTS if point[2].startswith("2026-10-05")]
    file = write_file("day5.json", dumps(metrics_response(day5, timespan="2026-10-05T00:00:00Z/2026-10-06T00:00:00Z")))
    result = run("reconcile-azure", "--month", "2026-10", "--metrics", str(file), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert lines(tmp_path / "reconciliation-2026-10.csv") == [HEADER, *EXPECTED[:2]]
    assert "every deployment-day within 1% of Azure's counts (2 compared)" in result.output


def test_a_day_cut_by_the_timespan_is_partial_never_a_gap(world: Path, write_file: WriteFile,
                                                          tmp_path: Path) -> None:
    day5 = [point for point in POINTS if point[2].startswith("2026-10-05") and "T00:" in point[2]]
    file = write_file("cut.json", dumps(metrics_response(day5, timespan="2026-10-05T00:00:00Z/2026-10-05T01:00:00Z")))
    result = run("reconcile-azure", "--month", "2026-10", "--metrics", str(file), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert [row["status"] for row in csv.DictReader((tmp_path / "reconciliation-2026-10.csv").open())] == [
        "partial-day", "partial-day"]


def test_billed_cost_against_metered_cost(world: Path, write_file: WriteFile, tmp_path: Path) -> None:
    storage = ACCOUNT.replace("Microsoft.CognitiveServices/accounts/aoai-weu", "Microsoft.Storage/storageAccounts/st")
    export = write_file("focus-2026-10.csv", cost_export([
        ("2026-10-05", ACCOUNT, "0.0054", "gpt 4.1 Inp glbl"),
        ("2026-10-05", f"{ACCOUNT}/deployments/dep-beta", "0.00018", "gpt 4.1 mini Inp DZone"),
        ("2026-10-06", ACCOUNT, "0.0054", "gpt 4.1 Inp glbl"),
        ("2026-10-06", storage, "9.99", "LRS Data Stored"),  # another service: not compared
    ]) + f"1.00,USD,Tax,2026-10-06T00:00:00Z,2026-10-07T00:00:00Z,{ACCOUNT},Foundry Models,tax\n")
    result = run("reconcile-azure", "--month", "2026-10", "--metrics", str(world), "--cost-export", str(export),
                 "--out", str(tmp_path))
    assert result.exit_code == 3, result.output
    assert lines(tmp_path / "cost-reconciliation-2026-10.csv") == [
        "date,account,currency,billed_cost,metered_cost,gap,gap_pct,metered_payg_cost,metered_ptu_cost,status",
        f"2026-10-05,{ACCOUNT},USD,0.00558,0.00558,0,0.00,0.00558,0,ok",
        f"2026-10-06,{ACCOUNT},USD,0.0054,0.0036,0.0018,33.33,0.0036,0,gap",
    ]


@pytest.mark.parametrize(("content", "message"), [
    ("not json {", "not JSON (Expecting value at line 1): expected the Metrics REST response"),
    ('{"cost": 0}', "no `value` list of metrics: expected the Metrics REST response"),
    (dumps(metrics_response(spread("AzureOpenAIRequests", ALPHA, "2026-09-05", 3),
                            timespan="2026-09-05T00:00:00Z/2026-09-06T00:00:00Z")),
     "no data of 2026-10 (a file for another month"),
    (dumps(metrics_response(spread("AzureOpenAIRequests", {}, "2026-10-05", 3), timespan=SPAN)),
     "AzureOpenAIRequests of " + ACCOUNT + " is not split by ModelDeploymentName: fetch with --filter "
     "\"ModelDeploymentName eq '*'\""),
    (dumps(metrics_response(spread("AzureOpenAIRequests", ALPHA, "2026-10-05", 3), timespan=SPAN,
                            aggregation="average")),
     "AzureOpenAIRequests of " + ACCOUNT + " has no `total`: fetch with --aggregation Total"),
    (dumps(metrics_response(spread("AzureOpenAIRequests", ALPHA, "2026-10-05", 3), timespan=SPAN, interval="P7D")),
     "interval P7D is longer than a day: fetch with --interval PT1H (or P1D)"),
    (dumps(metrics_response(spread("AzureOpenAIRequests", ALPHA, "2026-10-05", 3), account=OTHER_ACCOUNT,
                            timespan=SPAN)),
     f"metrics of account {OTHER_ACCOUNT}, which no deployment of the deployment map names (column account)"),
])
def test_a_metrics_file_that_cannot_be_used_is_one_line(world: Path, write_file: WriteFile, tmp_path: Path,
                                                        content: str, message: str) -> None:
    bad = write_file("bad-metrics.json", content)
    result = run("reconcile-azure", "--month", "2026-10", "--metrics", str(bad), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line, line
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize(("content", "message"), [
    ("BilledCost,ChargePeriodStart\n1,2026-10-05T00:00:00Z\n", "missing column(s) BillingCurrency, ResourceId"),
    (cost_export([("2026-10-05", ACCOUNT, "one dollar", "m")]), ":2: BilledCost 'one dollar' is not a number"),
])
def test_a_cost_export_that_cannot_be_used_is_one_line(world: Path, write_file: WriteFile, tmp_path: Path,
                                                       content: str, message: str) -> None:
    bad = write_file("bad-export.csv", content)
    result = run("reconcile-azure", "--month", "2026-10", "--metrics", str(world), "--cost-export", str(bad),
                 "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line, line
    assert not (tmp_path / "out").exists()


class RecordedMetrics(requests.adapters.BaseAdapter):
    """Answers the ARM metrics API from recorded responses, by the metric names asked for."""

    def __init__(self, responses: Mapping[str, dict[str, Any]]) -> None:
        super().__init__()
        self.responses = responses
        self.asked: list[dict[str, list[str]]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        query = parse_qs(urlparse(request.url or "").query)
        self.asked.append(query)
        body = json.dumps(self.responses[query["metricnames"][0]]).encode()
        raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers={"Content-Type": "application/json"}, status=200,
                                   preload_content=False, decode_content=False)
        return requests.adapters.HTTPAdapter().build_response(request, raw)

    def close(self) -> None:
        pass


class StaticToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("recorded", 4_102_444_800)


def test_the_live_fetch_reads_the_same_format(world: Path) -> None:
    from datetime import UTC, date, datetime

    from azure.core.pipeline.transport import RequestsTransport

    from pipeline.adapters.azure.monitor_metrics import fetch_metrics
    from pipeline.inputs.azure_metrics import AzureMetrics, add_response

    requests_points = [p for p in POINTS if p[0] == "AzureOpenAIRequests"]
    token_points = [p for p in POINTS if p[0] != "AzureOpenAIRequests"]
    adapter = RecordedMetrics({"AzureOpenAIRequests": metrics_response(requests_points, timespan=SPAN),
                               "ProcessedPromptTokens,GeneratedTokens": metrics_response(token_points, timespan=SPAN)})
    session = requests.Session()
    session.mount("https://", adapter)
    metrics = AzureMetrics()
    for account, response in fetch_metrics([ACCOUNT], datetime(2026, 10, 1, tzinfo=UTC),
                                           datetime(2026, 11, 1, tzinfo=UTC), credential=StaticToken(),
                                           transport=RequestsTransport(session=session)):
        add_response(metrics, response, account, date(2026, 10, 1), date(2026, 11, 1))
    assert [(q["metricnames"], q["interval"], q["aggregation"], q["top"], q["$filter"]) for q in adapter.asked] == [
        (["AzureOpenAIRequests"], ["PT1H"], ["Total"], ["1000"], ["ModelDeploymentName eq '*' and StatusCode eq '*'"]),
        (["ProcessedPromptTokens,GeneratedTokens"], ["PT1H"], ["Total"], ["1000"], ["ModelDeploymentName eq '*'"]),
    ]
    counted = {(day.isoformat(), name): (d.requests, d.failed_requests, d.prompt_tokens, d.completion_tokens)
               for (_, day, name), d in metrics.days.items()}
    assert counted == {
        ("2026-10-05", "dep-alpha"): (3, 1, 3000, 600), ("2026-10-05", "dep-beta"): (2, 0, 1000, 200),
        ("2026-10-06", "dep-alpha"): (2, 0, 3000, 600), ("2026-10-06", "dep-gamma"): (5, 0, 500, 50),
    }


def test_a_true_up_allocates_the_unexplained_billed_cost(world: Path, write_file: WriteFile, tmp_path: Path) -> None:
    # sub-b (CC-B1 until 2026-10-20) also used dep-alpha on 2026-10-05: 1,000 + 200 tokens = 0.0018 USD
    extra = event(eventId="b5-alpha", subscriptionId="sub-b", deployment="dep-alpha", model=None,
                  timestamp="2026-10-05T11:00:00Z", usage=usage(1000, 200))
    assert run("ingest", str(write_file("extra.jsonl", jsonl([extra])))).exit_code == 0
    gaps = write_file("cost-reconciliation-2026-10.csv", "\n".join([
        "date,account,currency,billed_cost,metered_cost,gap,gap_pct,metered_payg_cost,metered_ptu_cost,status",
        f"2026-09-30,{ACCOUNT},USD,1,0,1,100.00,0,0,gap",  # another month: not this report's
        f"2026-10-05,{ACCOUNT},USD,0.01738,0.00738,0.01,135.50,0.00738,0,gap",
        f"2026-10-06,{ACCOUNT},USD,0.0027,0.0036,-0.0009,33.33,0.0036,0,gap",  # billed less: money back
        f"2026-10-07,{ACCOUNT},USD,0.5,0,0.5,100.00,0,0,gap",  # nothing metered that day: unassigned
    ]) + "\n")
    out = tmp_path / "out"
    result = run("report", "--month", "2026-10", "--out", str(out), "--true-up", str(gaps))
    assert result.exit_code == 0, result.output
    assert "of which true-up 0.51 USD" in result.output, result.output
    rows = list(csv.DictReader((out / "chargeback-2026-10.csv").open(encoding="utf-8")))
    true_ups = {(r["cost_center"], r["subscription_id"]): r["true_up_cost"] for r in rows
                if r["charge_class"] == "True-up"}
    # 0.01 split 0.00558 : 0.0018 (largest remainder in 10^-12 units), then -0.0009 to CC-A alone
    assert true_ups == {("CC-A", "sub-a"): "0.00666097561", ("CC-B1", "sub-b"): "0.00243902439",
                        ("unassigned", ""): "0.5"}
    assert all(r["cost"] == "" and r["ptu_cost"] == "" for r in rows if r["charge_class"] == "True-up")
    assert sum(Decimal(r["total_cost"]) for r in rows if r["total_cost"]) == Decimal("0.52008")
    daily = list(csv.DictReader((out / "chargeback-2026-10-daily.csv").open(encoding="utf-8")))
    trued = [(r["date"], r["cost_center"], r["true_up_cost"]) for r in daily if r["charge_class"] == "True-up"]
    assert sorted(trued) == [
        ("2026-10-05", "CC-A", "0.00756097561"), ("2026-10-05", "CC-B1", "0.00243902439"),
        ("2026-10-06", "CC-A", "-0.0009"), ("2026-10-07", "unassigned", "0.5")]
    owner = run("report", "--month", "2026-10", "--out", str(tmp_path / "owner"), "--true-up", str(gaps),
                "--true-up-owner", "CC-PLATFORM")
    assert owner.exit_code == 0, owner.output
    rows = list(csv.DictReader((tmp_path / "owner" / "chargeback-2026-10.csv").open(encoding="utf-8")))
    assert [(r["cost_center"], r["true_up_cost"]) for r in rows if r["charge_class"] == "True-up"] == [
        ("CC-PLATFORM", "0.5091")]


def test_the_daily_timer_reconciles_the_month_so_far_and_records_the_gap(world: Path, home: Path) -> None:
    from datetime import date

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from pipeline.domain.periods import Period
    from pipeline.entrypoints.functions.timers import reconcile_month
    from pipeline.settings import Settings
    from tests.test_functions import collected

    assert run("snapshot").exit_code == 0  # the 15-minute timer's job
    asked: list[tuple[list[str], Period]] = []

    def recorded(accounts: list[str], period: Period) -> list[tuple[str, dict[str, Any]]]:
        asked.append((accounts, period))
        return [(ACCOUNT, metrics_response(POINTS, timespan="2026-10-01T00:00:00Z/2026-10-07T03:00:00Z"))]

    reader = InMemoryMetricReader()
    reconciliation = reconcile_month(Settings.from_env(), date(2026, 10, 7), recorded,
                                     MeterProvider(metric_readers=[reader]))
    assert reconciliation is not None
    assert asked == [([ACCOUNT], Period.month("2026-10"))]
    published = home / "reports" / "reconciliation-2026-10.csv"
    assert lines(published) == [HEADER, *EXPECTED]
    metrics = collected(reader)
    assert [p.value for p in metrics["chargeback.reconciliation.gap_days"].data_points] == [2]
    assert [p.value for p in metrics["chargeback.reconciliation.unmetered_requests"].data_points] == [6]


def test_the_html_report_shows_the_reconciliation_published_with_it(world: Path, tmp_path: Path) -> None:
    import re

    assert run("reconcile-azure", "--month", "2026-10", "--metrics", str(world), "--out", str(tmp_path)).exit_code == 3
    result = run("report", "--month", "2026-10", "--out", str(tmp_path), "--format", "html")
    assert result.exit_code == 0, result.output
    assert f"with the reconciliation {tmp_path / 'reconciliation-2026-10.csv'}" in result.output
    page = (tmp_path / "chargeback-2026-10.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="reconciliation">'):]
    section = section[:section.index("</section>")]
    assert '<p class="warn" id="reconciliation-gaps">2 deployment-day(s) differ from Azure Monitor' in section
    cells = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", section)]
    assert cells == [
        "dep-alpha &#9888;", "4", "5", "+1", "+1,000", "+200", "50.00%", "1", "0.00 USD",
        "dep-beta", "2", "2", "+0", "+0", "+0", "0.00%", "0", "0.00 USD",
        "dep-gamma &#9888;", "0", "5", "+5", "+500", "+50", "100.00%", "1", "-",
    ]


def test_true_up_lines_are_allocated_adjustments_in_focus(world: Path, write_file: WriteFile, tmp_path: Path) -> None:
    from tests.focus_conformance import COLUMNS_1_3, check_csv

    gaps = write_file("gaps.csv", "date,account,currency,gap\n"
                                  f"2026-10-05,{ACCOUNT},USD,0.01\n2026-10-07,{ACCOUNT},USD,0.5\n")
    result = run("report", "--month", "2026-10", "--out", str(tmp_path), "--true-up", str(gaps), "--format",
                 "csv,focus")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "chargeback-2026-10-focus.csv").open(encoding="utf-8")))
    assert check_csv(list(rows[0]), rows, COLUMNS_1_3) == []
    report = list(csv.DictReader((tmp_path / "chargeback-2026-10.csv").open(encoding="utf-8")))
    assert sum(Decimal(r["BilledCost"]) for r in rows) == sum(Decimal(r["total_cost"]) for r in report
                                                              if r["total_cost"])
    trued = [(r["ChargeCategory"], r["x_ChargeKind"], r["AllocatedMethodId"], r["ResourceName"], r["x_CostCenter"],
              r["BilledCost"], json.loads(r["AllocatedMethodDetails"])["Elements"][0]["AllocatedRatio"])
             for r in rows if r["x_ChargeKind"] == "TrueUp"]
    assert sorted(trued) == [
        ("Adjustment", "TrueUp", "chargeback-true-up-metered-cost", "aoai-weu", "CC-A", "0.01", 1),
        ("Adjustment", "TrueUp", "chargeback-true-up-owner", "aoai-weu", "unassigned", "0.5", 1),
    ]
