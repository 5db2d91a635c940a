"""`-daily.csv` summed in DuckDB (pipeline.stages.report.daily) holds the rows `report_rows`
gives over each day's usage, byte for byte, on worlds that cover what a row can carry: prices that
change mid-month and cost centers that move (tests.test_report), service tiers, spillover, audio
and provisioned usage without capacity (tests.test_billing_classes), and one row priced at two
prices on the same day.

Two prices in one row, hand-computed: sub-a calls dep-we (m-one, regional, westeurope, 1.00 per
1M in) and dep-us (the same model and type in eastus, 3.00 per 1M in) on 2026-10-03 with 1M prompt
tokens each: one daily row, 2 requests, 2,000,000 prompt tokens, 4.00 USD. sub-x (unmapped) sends
the cost center `Ops, "EU"`: 10 tokens at 1.00 = 0.00001. With dep-us at 1,000,000,000,000 per 1M
(beyond DECIMAL(18, 6)), 2026-10-03 costs 1,000,000,000,001.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.app import open_pipeline
from pipeline.domain.periods import Period
from pipeline.inputs.event_files import json_lines
from pipeline.inputs.reference import load_reference
from pipeline.lake.warehouse import open_warehouse
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest
from pipeline.stages.report.build import build_report
from pipeline.stages.report.daily import DailyAhead, daily_csv, summed_daily_csv
from pipeline.stages.report.model import DAILY_COLUMNS, Report
from pipeline.stages.report.rows import report_rows
from pipeline.stages.snapshot import snapshot
from tests import test_billing_classes as billing
from tests import test_report as priced
from tests.conftest import COST_CENTERS_CSV, DEPLOYMENTS_CSV, PRICES_CSV, local
from tests.factories import event, jsonl

TWO_PRICES = """\
model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,cached_input_per_1m,output_per_1m
m-one,regional,westeurope,2026-01-01,,USD,1.00,0.50,4.00
m-one,regional,eastus,2026-01-01,,USD,3.00,1.50,12.00
"""
TWO_REGIONS = ("deployment,model,deployment_type,region\n"
               "dep-we,m-one,regional,westeurope\ndep-us,m-one,regional,eastus\n")
TWO_PRICE_EVENTS = [
    event(subscriptionId="sub-a", deployment=deployment, model=None, timestamp="2026-10-03T09:00:00Z",
          usage={"promptTokens": 1_000_000, "completionTokens": 0, "totalTokens": 1_000_000, "cachedTokens": 0,
                 "reasoningTokens": 0})
    for deployment in ("dep-we", "dep-us")
] + [  # an unmapped subscription: the caller's cost center, which CSV must quote
    event(subscriptionId="sub-x", deployment="dep-we", model=None, timestamp="2026-10-04T09:00:00Z",
          costCenter='Ops, "EU"', usage={"promptTokens": 10, "completionTokens": 0, "totalTokens": 10,
                                          "cachedTokens": 0, "reasoningTokens": 0})]
# A price DECIMAL(18, 6) cannot hold: the file is made from report_rows.
HUGE_PRICE = TWO_PRICES.replace("3.00,1.50,12.00", "1000000000000,1.50,12.00")
WORLDS: dict[str, tuple[str, str, str, list[dict[str, Any]]]] = {
    "prices and cost centers change mid-month": (PRICES_CSV, DEPLOYMENTS_CSV, COST_CENTERS_CSV, priced.EVENTS),
    "tiers, spillover, audio, provisioned without capacity": (
        billing.PRICES, billing.DEPLOYMENTS, billing.COST_CENTERS, billing.EVENTS),
    "two prices in one row": (TWO_PRICES, TWO_REGIONS, "subscription_id,cost_center,effective_from,effective_to\n"
                              "sub-a,CC-A,,\n", TWO_PRICE_EVENTS),
}
WORLDS["a price too large for DECIMAL(18, 6)"] = (HUGE_PRICE, *WORLDS["two prices in one row"][1:])
# A model priced at 0 (and 1 token at 0.000001 per 1M): a cost of 0, and the smallest one.
WORLDS["free and tiny"] = (
    "model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,cached_input_per_1m,output_per_1m\n"
    "m-free,global,*,2026-01-01,,USD,0,0,0\nm-tiny,global,*,2026-01-01,,USD,0.000001,0,0\n",
    "deployment,model,deployment_type,region\ndep-free,m-free,global,\ndep-tiny,m-tiny,global,\n",
    "subscription_id,cost_center,effective_from,effective_to\nsub-a,CC-A,,\n",
    [event(subscriptionId="sub-a", deployment=deployment, model=None, timestamp="2026-10-05T09:00:00Z",
           usage={"promptTokens": 1, "completionTokens": 0, "totalTokens": 1, "cachedTokens": 0, "reasoningTokens": 0})
     for deployment in ("dep-free", "dep-tiny")])


def report_of(tmp_path: Path, world: str, period: Period) -> Report:
    prices, deployments, cost_centers, events = WORLDS[world]
    files = {}
    for name, text in (("prices.csv", prices), ("deployments.csv", deployments), ("cost-centers.csv", cost_centers),
                       ("events.jsonl", jsonl(events))):
        files[name] = tmp_path / name
        files[name].write_bytes(text if isinstance(text, bytes) else text.encode())
    reference = load_reference(files["prices.csv"], files["deployments.csv"], files["cost-centers.csv"])
    opened = open_pipeline(Settings(tmp_path / "home"), reference)
    try:
        result = ingest(json_lines(str(files["events.jsonl"])), opened.ledger, opened.counters, opened.dead_letters,
                        opened.pricer)
        assert (result.ingested, result.dead_lettered) == (len(events), 0)
        snapshot(opened.ledger, opened.snapshots)
        warehouse = open_warehouse(local(opened.snapshots), reference, now=priced.NOW)
        try:
            return build_report(warehouse, reference, period)
        finally:
            warehouse.connection.close()
    finally:
        opened.close()


@pytest.mark.parametrize("world", [world for world in WORLDS if "too large" not in world])
@pytest.mark.parametrize("period", [Period.month("2026-10"), Period.days(date(2026, 9, 30), date(2026, 11, 1))],
                         ids=["month", "range across a month's end"])
def test_daily_rows_summed_in_duckdb_are_the_rows_of_each_days_usage(tmp_path: Path, world: str,
                                                                     period: Period) -> None:
    report = report_of(tmp_path, world, period)
    assert report.day_groups is not None and not report.deployment_days and not report.cached_unknown
    summed = summed_daily_csv(report.day_groups)
    from_day_usage = daily_csv(dataclasses.replace(report, day_groups=None))  # report_rows over the day usage
    assert summed == from_day_usage
    assert daily_csv(report) == summed
    rows = report_rows(report.day_usage(), bucket=date.isoformat)
    assert rows and summed.count(b"\n") == len(rows) + 1  # the header, then a line per row


def test_one_days_row_priced_at_two_prices(tmp_path: Path) -> None:
    report = report_of(tmp_path, "two prices in one row", Period.month("2026-10"))
    rows = list(csv.DictReader(io.StringIO(daily_csv(report).decode())))
    assert [(r["date"], r["cost_center"], r["model"], r["deployment_type"], r["requests"], r["prompt_tokens"],
             r["cost"], r["total_cost"]) for r in rows] == [
        ("2026-10-03", "CC-A", "m-one", "regional", "2", "2000000", "4", "4"),
        ("2026-10-04", 'Ops, "EU"', "m-one", "regional", "1", "10", "0.00001", "0.00001")]


def test_a_free_model_costs_0_and_one_token_its_price(tmp_path: Path) -> None:
    report = report_of(tmp_path, "free and tiny", Period.month("2026-10"))
    rows = list(csv.DictReader(io.StringIO(daily_csv(report).decode())))
    assert [(r["model"], r["cost"], r["total_cost"]) for r in rows] == [
        ("m-free", "0", "0"), ("m-tiny", "0.000000000001", "0.000000000001")]


def test_a_price_too_large_for_duckdb_leaves_the_file_to_report_rows(tmp_path: Path) -> None:
    report = report_of(tmp_path, "a price too large for DECIMAL(18, 6)", Period.month("2026-10"))
    assert report.day_groups is not None and summed_daily_csv(report.day_groups) is None
    rows = list(csv.DictReader(io.StringIO(daily_csv(report).decode())))
    assert [(r["date"], r["cost"]) for r in rows] == [("2026-10-03", "1000000000001"), ("2026-10-04", "0.00001")]


def test_a_period_without_usage_has_the_header_alone(tmp_path: Path) -> None:
    report = report_of(tmp_path, "two prices in one row", Period.month("2026-12"))
    assert report.day_groups is not None
    header = daily_csv(dataclasses.replace(report, day_groups=None))
    assert summed_daily_csv(report.day_groups) == header == b",".join(c.encode() for c in DAILY_COLUMNS) + b"\n"


@pytest.mark.parametrize("world", list(WORLDS))
def test_daily_rows_made_in_a_thread_on_the_warehouses_database_are_the_same_bytes(tmp_path: Path,
                                                                                   world: str) -> None:
    report = report_of(tmp_path, world, Period.month("2026-10"))
    groups = report.day_groups
    assert groups is not None and groups.database is not None  # the warehouse's connection is closed already
    made = daily_csv(report)
    assert DailyAhead(report).result() == made
    if "too large" not in world:
        assert summed_daily_csv(groups) == summed_daily_csv(groups._replace(database=None)) == made


def test_what_making_the_daily_rows_raised_is_raised_by_result(tmp_path: Path) -> None:
    report = report_of(tmp_path, "two prices in one row", Period.month("2026-10"))
    assert report.day_groups is not None
    broken = dataclasses.replace(report, day_groups=report.day_groups._replace(
        days=report.day_groups.days.drop_columns(["period"])))  # the day rows without their period's number
    with pytest.raises(duckdb.BinderException, match="period"):
        daily_csv(broken)
    ahead = DailyAhead(broken)
    with pytest.raises(duckdb.BinderException, match="period"):
        ahead.result()
