"""Report stage over real snapshots: a small dataset priced by hand (prices in conftest.PRICES_CSV),
reconciled with the ledger and with the live counters (spend priced at ingest with the same catalog).

m-alpha/global: 1.00 in, 0.50 cached, 4.00 out per 1M before 2026-10-16; 2.00 / 1.00 / 8.00 from then.
m-beta/datazone: 0.10 in, no cached price (cached at 0.10), 0.40 out per 1M.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.app import Pipeline
from pipeline.domain.live import MICROS
from pipeline.lake.warehouse import open_warehouse
from pipeline.settings import Settings
from pipeline.stages.report.build import build_report
from pipeline.stages.report.model import Report, ReportError
from pipeline.stages.snapshot import snapshot
from tests.conftest import Feed, ReferenceFiles, local
from tests.factories import event, jsonl, usage, write_report

HEADER = ("month,cost_center,subscription_id,model,deployment_type,requests,prompt_tokens,cached_tokens,"
          "completion_tokens,cost,currency")


def ev(subscription: str, deployment: str, timestamp: str, tokens: dict[str, int] | None,
       **changes: Any) -> dict[str, Any]:
    return event(**{"subscriptionId": subscription, "deployment": deployment, "timestamp": timestamp,
                    "usage": tokens, "model": None, **changes})


EVENTS = [
    # CC-A / sub-a / m-alpha, priced: 0.0016 + 0.0032 + 3 + 0.00005 = 3.00485
    ev("sub-a", "dep-alpha", "2026-10-05T10:00:00Z", usage(1000, 200, cached=400)),  # (600*1 + 400*0.5 + 200*4)/1M
    ev("sub-a", "dep-alpha", "2026-10-20T10:00:00Z", usage(1000, 200, cached=400)),  # (600*2 + 400*1 + 200*8)/1M
    ev("sub-a", "dep-alpha", "2026-10-06T10:00:00Z", usage(1_000_000, 500_000),  # 1 + 2; the map wins
       costCenter="CC-EVIL"),
    ev("sub-a", "dep-alpha", "2026-10-05T11:00:00Z", usage(10, 10), stream=True,  # (10*1 + 10*4)/1M
       usageSource="stream"),
    # sub-b: CC-B1 until 2026-10-20, CC-B2 from then
    ev("sub-b", "dep-beta", "2026-10-10T00:00:00Z", usage(2_000_000, 1_000_000, cached=1_000_000)),  # .1+.1+.4
    ev("sub-b", "dep-beta", "2026-10-25T00:00:00Z", usage(3_000_000, 0)),  # 0.3
    ev("sub-b", "dep-beta", "2026-11-01T01:00:00+02:00", usage(1_000_000, 0)),  # 2026-10-31 UTC: 0.1
    # sub-c is unmapped: a caller-sent cost center applies, else "unassigned"
    ev("sub-c", "dep-alpha", "2026-10-07T00:00:00Z", usage(500_000, 250_000), costCenter="CC-CALLER"),  # .5+1
    ev("sub-c", "dep-alpha", "2026-10-07T01:00:00Z", usage(1, 1)),  # (1*1 + 1*4)/1M = 0.000005
    # unpriced
    ev("sub-a", "dep-alpha", "2026-10-08T00:00:00Z", None, statusCode=429, usageSource="none"),
    ev("sub-a", "dep-alpha", "2026-10-08T00:00:00Z", None, stream=True, usageSource="stream"),
    ev("sub-a", "dep-unknown", "2026-10-08T00:00:00Z", usage(100, 50), model="m-alpha"),
    ev("sub-a", "dep-nomodel", "2026-10-08T00:00:00Z", usage(100, 50)),
    ev("sub-a", "dep-noprice", "2026-10-08T00:00:00Z", usage(100, 50)),
    # other months
    ev("sub-a", "dep-alpha", "2026-09-30T23:59:59Z", usage(7, 7)),
    ev("sub-a", "dep-alpha", "2026-11-01T00:00:00Z", usage(7, 7)),
    ev("sub-b", "dep-beta", "2026-10-31T23:30:00-02:00", usage(7, 7)),  # 2026-11-01 UTC
]
TOTAL = Decimal("5.504855")  # 3.00485 + 0.6 + 0.4 + 1.5 + 0.000005
# Read as of this moment, so that the streamed event of 2026-10-08 without usage is still within
# the LLM-log usage window (pending); tests/test_llm_logs.py covers what happens after it.
NOW = datetime(2026, 10, 8, 12, 0, tzinfo=UTC)

# (cost_center, subscription, model, deployment_type, currency) -> requests, prompt, cached, completion, cost
EXPECTED_ROWS = {
    ("CC-A", "sub-a", "m-alpha", "global", "USD"): ("4", "1002010", "800", "500410", "3.00485"),
    ("CC-A", "sub-a", "m-alpha", "global", ""): ("2", "0", "0", "0", ""),
    ("CC-A", "sub-a", "m-alpha", "", ""): ("1", "100", "0", "50", ""),
    ("CC-A", "sub-a", "", "global", ""): ("1", "100", "0", "50", ""),
    ("CC-A", "sub-a", "m-gamma", "global", ""): ("1", "100", "0", "50", ""),
    ("CC-B1", "sub-b", "m-beta", "datazone", "USD"): ("1", "2000000", "1000000", "1000000", "0.6"),
    ("CC-B2", "sub-b", "m-beta", "datazone", "USD"): ("2", "4000000", "0", "0", "0.4"),
    ("CC-CALLER", "sub-c", "m-alpha", "global", "USD"): ("1", "500000", "0", "250000", "1.5"),
    ("unassigned", "sub-c", "m-alpha", "global", "USD"): ("1", "1", "0", "1", "0.000005"),
}
EXPECTED_UNPRICED = {  # (reason, cost_center, subscription, deployment, model) -> requests, prompt, completion
    ("no-usage", "CC-A", "sub-a", "dep-alpha", "m-alpha"): ("1", "0", "0"),
    ("usage-pending", "CC-A", "sub-a", "dep-alpha", "m-alpha"): ("1", "0", "0"),
    ("unknown-deployment", "CC-A", "sub-a", "dep-unknown", "m-alpha"): ("1", "100", "50"),
    ("unknown-model", "CC-A", "sub-a", "dep-nomodel", ""): ("1", "100", "50"),
    ("no-price", "CC-A", "sub-a", "dep-noprice", "m-gamma"): ("1", "100", "50"),
}


@dataclass(frozen=True, slots=True)
class Written:
    report: Report
    out: Path

    def rows(self, name: str = "chargeback-2026-10.csv") -> list[dict[str, str]]:
        with (self.out / name).open(newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))


@pytest.fixture
def written(pipeline: Pipeline, feed: Feed, reference_files: ReferenceFiles, tmp_path: Path) -> Written:
    result = feed(jsonl(EVENTS))
    assert (result.ingested, result.dead_lettered) == (len(EVENTS), 0)
    snapshot(pipeline.ledger, pipeline.snapshots)
    reference = reference_files.load()
    report = build_report(open_warehouse(local(pipeline.snapshots), reference, now=NOW), reference, "2026-10")
    files = write_report(report, tmp_path / "out")
    assert sorted(path.name for path in files) == [
        "chargeback-2026-10-daily.csv", "chargeback-2026-10-unpriced.csv", "chargeback-2026-10.csv",
        "chargeback-2026-10.parquet"]
    return Written(report, tmp_path / "out")


def test_csv_rows_match_the_hand_computed_costs(written: Written) -> None:
    header = (written.out / "chargeback-2026-10.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith(HEADER + ",")
    # charge_class: FOCUS ChargeClass (see corrections); ptu_cost, total_cost: provisioned capacity (test_ptu_report)
    assert header == HEADER + ",catalog_version,charge_class,ptu_cost,total_cost,cached_unknown_requests," \
                              "cached_unknown_max_overcharge,service_tier,spillover,audio_prompt_tokens," \
                              "audio_completion_tokens,true_up_cost"
    rows = written.rows()
    got = {(r["cost_center"], r["subscription_id"], r["model"], r["deployment_type"], r["currency"]):
           (r["requests"], r["prompt_tokens"], r["cached_tokens"], r["completion_tokens"], r["cost"]) for r in rows}
    assert len(rows) == len(got)
    assert got == EXPECTED_ROWS
    assert {r["month"] for r in rows} == {"2026-10"}
    assert {r["catalog_version"] for r in rows if r["currency"]} == {written.report.catalog_version}
    assert {r["catalog_version"] for r in rows if not r["currency"]} == {""}
    assert written.report.totals == {"USD": TOTAL}
    assert sum(Decimal(r["cost"]) for r in rows if r["cost"]) == TOTAL


def test_unpriced_usage_is_listed_with_its_reason(written: Written) -> None:
    rows = written.rows("chargeback-2026-10-unpriced.csv")
    got = {(r["reason"], r["cost_center"], r["subscription_id"], r["deployment"], r["model"]):
           (r["requests"], r["prompt_tokens"], r["completion_tokens"]) for r in rows}
    assert got == EXPECTED_UNPRICED
    assert all(r["detail"] and r["month"] == "2026-10" for r in rows)
    assert written.report.unpriced_requests == 5


def test_token_totals_reconcile_with_ledger_and_counters(written: Written, settings: Settings,
                                                         pipeline: Pipeline) -> None:
    rows = written.rows()
    columns = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens")
    csv_totals = tuple(sum(int(r[c]) for r in rows) for c in columns)
    start, end = (datetime(2026, m, 1, tzinfo=UTC) for m in (10, 11))
    assert settings.embedded_ledger == settings.home / "ledger.sqlite3"
    events = [row for row in pipeline.ledger.changes(None, 1_000).table.to_pylist() if start <= row["timestamp"] < end]
    ledger = (len(events), *(sum(row[c] or 0 for row in events) for c in columns[1:]))
    assert csv_totals == ledger == (14, 7_502_311, 1_000_800, 1_750_561)
    counted = pipeline.counters.month_to_date("2026-10")
    assert tuple(sum(getattr(r, c) for r in counted) for c in columns) == csv_totals


def test_live_spend_reconciles_with_the_report(written: Written, pipeline: Pipeline) -> None:
    # Every cost here is a whole number of micro-dollars, so the live spend (rounded per event) is exact.
    by_subscription: dict[str, Decimal] = defaultdict(Decimal)
    by_center: dict[str, Decimal] = defaultdict(Decimal)
    for row in written.report.rows:
        if row.cost is not None:
            by_subscription[row.subscription_id] += row.cost
            by_center[row.cost_center] += row.cost
    live = pipeline.counters.month_to_date("2026-10")
    assert {r.subscription_id: r.spend_micros for r in live} == {
        key: int(cost * MICROS) for key, cost in by_subscription.items()} == {
        "sub-a": 3_004_850, "sub-b": 1_000_000, "sub-c": 1_500_005}
    assert sum(r.spend_micros for r in live) == TOTAL * MICROS == 5_504_855
    assert pipeline.counters.cost_center_spend("2026-10") == {
        key: int(cost * MICROS) for key, cost in by_center.items()} == {
        "CC-A": 3_004_850, "CC-B1": 600_000, "CC-B2": 400_000, "CC-CALLER": 1_500_000, "unassigned": 5}
    assert {r.subscription_id: r.unpriced_requests for r in live} == {"sub-a": 5, "sub-b": 0, "sub-c": 0}
    assert sum(r.unpriced_requests for r in live) == written.report.unpriced_requests


def test_parquet_report_equals_the_csv(written: Written) -> None:
    table = pq.read_table(written.out / "chargeback-2026-10.parquet")
    assert table.schema.field("cost").type == pa.decimal128(38, 12)
    assert table.column_names == [*HEADER.split(","), "catalog_version", "charge_class", "ptu_cost", "total_cost",
                                  "cached_unknown_requests", "cached_unknown_max_overcharge", "service_tier",
                                  "spillover", "audio_prompt_tokens", "audio_completion_tokens", "true_up_cost"]
    from_parquet = table.to_pylist()
    from_csv = written.rows()
    assert len(from_parquet) == len(from_csv)
    amounts = ("cost", "ptu_cost", "total_cost", "cached_unknown_max_overcharge", "true_up_cost")
    for parquet_row, csv_row in zip(from_parquet, from_csv, strict=True):
        for amount in amounts:
            assert parquet_row[amount] == (Decimal(csv_row[amount]) if csv_row[amount] else None)
        assert parquet_row["total_cost"] == parquet_row["cost"]  # no provisioned capacity here
        assert {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in parquet_row.items()
                if k not in amounts} == {
            k: v for k, v in csv_row.items() if k not in amounts}


def test_report_total_equals_the_costs_view(written: Written, pipeline: Pipeline,
                                           reference_files: ReferenceFiles) -> None:
    connection = open_warehouse(local(pipeline.snapshots), reference_files.load(), now=NOW).connection
    [(total,)] = connection.execute("SELECT sum(cost) FROM costs WHERE month = ?", ["2026-10"]).fetchall()
    assert total == TOTAL == written.report.totals["USD"]
    by_row = connection.execute(
        "SELECT cost_center, subscription_id, model, deployment_type, sum(cost) FROM costs "
        "WHERE month = '2026-10' AND cost IS NOT NULL GROUP BY ALL").fetchall()
    assert {tuple(row[:4]): row[4] for row in by_row} == {
        (r.cost_center, r.subscription_id, r.model, r.deployment_type): r.cost
        for r in written.report.rows if r.cost is not None}
    price_change = connection.execute("SELECT date, cost FROM costs WHERE subscription_id = 'sub-a' "
                                      "AND prompt_tokens = 1000 ORDER BY date").fetchall()
    assert [cost for _, cost in price_change] == [Decimal("0.0016"), Decimal("0.0032")]
    reasons = connection.execute("SELECT unpriced_reason, count(*) FROM costs WHERE month = '2026-10' "
                                 "AND cost IS NULL GROUP BY ALL ORDER BY ALL").fetchall()
    assert reasons == [("no-price", 1), ("no-usage", 1), ("unknown-deployment", 1), ("unknown-model", 1),
                       ("usage-pending", 1)]


def test_other_months_get_their_own_report(written: Written, pipeline: Pipeline,
                                           reference_files: ReferenceFiles) -> None:
    reference = reference_files.load()
    warehouse = open_warehouse(local(pipeline.snapshots), reference, now=NOW)
    november = build_report(warehouse, reference, "2026-11")
    assert [(r.cost_center, r.requests, r.prompt_tokens) for r in november.rows] == [("CC-A", 1, 7), ("CC-B2", 1, 7)]
    # 7 prompt + 7 completion at 2/8 for m-alpha (new price) and 0.10/0.40 for m-beta, per 1M tokens
    assert november.totals == {"USD": Decimal("0.00007") + Decimal("0.0000035")}
    empty = build_report(warehouse, reference, "2026-08")
    assert (empty.rows, empty.unpriced, empty.totals) == ([], [], {})


def test_write_report_formats(written: Written, tmp_path: Path) -> None:
    only_csv = write_report(written.report, tmp_path / "csv-only", ["csv"])
    assert sorted(p.name for p in only_csv) == [
        "chargeback-2026-10-daily.csv", "chargeback-2026-10-unpriced.csv", "chargeback-2026-10.csv"]
    assert (tmp_path / "csv-only" / "chargeback-2026-10.csv").read_bytes() == (
        written.out / "chargeback-2026-10.csv").read_bytes()
    with pytest.raises(ReportError, match="unknown format"):
        write_report(written.report, tmp_path / "bad", ["csv", "xlsx"])
    assert not (tmp_path / "bad").exists()
    assert not [p for p in written.out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_a_gateway_timeout_is_unpriced_with_its_own_reason(pipeline: Pipeline, feed: Feed,
                                                           reference_files: ReferenceFiles) -> None:
    # What the APIM policy's on-error emits when forward-request times out (apim_policies/README.md).
    timed_out = ev("sub-a", "dep-alpha", "2026-10-09T00:00:00Z", None, statusCode=504, usageSource="none",
                   tags={"apimErrorSource": "forward-request", "apimErrorReason": "Timeout",
                         "chargebackError": "gateway-timeout"})
    plain = ev("sub-a", "dep-alpha", "2026-10-09T00:00:00Z", None, statusCode=500, usageSource="none")
    assert feed(jsonl([timed_out, plain])).ingested == 2
    snapshot(pipeline.ledger, pipeline.snapshots)
    reference = reference_files.load()
    report = build_report(open_warehouse(local(pipeline.snapshots), reference, now=NOW), reference, "2026-10")
    assert {(row.reason, row.requests, row.detail) for row in report.unpriced} == {
        ("gateway-timeout", 1, "the gateway stopped waiting for Azure OpenAI (forward-request timeout): Azure may "
                               "have served and billed it; its usage is unknown"),
        ("no-usage", 1, "request carried no token usage (usageSource none)")}
    assert report.states == {"none": 1, "timed-out": 1}
