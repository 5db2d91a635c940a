"""Reports for any range of days (`chargeback report --from --to`), and the `-daily.csv` rows.

Hand-checked on two small datasets:
- tests.finance_world (PTU and pay-as-you-go, through the CLI): 2026-10-02 to 2026-10-05 is the idle
  PTU day 2026-10-02 (72.00 USD to CC-OWNER) and sub-a's 1M prompt tokens of m-alpha on 2026-10-05
  (1.00 USD to CC-A), with dep-ptu's 2026-10-05 usage unpriced (`no-capacity`): 73.00 USD.
- tests.test_report.EVENTS (priced by build_report): 2026-10-25 to 2026-11-01 crosses a month:
  October 0.3 + 0.1 (sub-b, m-beta, CC-B2), November 0.00007 (sub-a, m-alpha at the new price,
  7 + 7 tokens) and 0.0000035 (sub-b, m-beta, 7 + 7 tokens).
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import Pipeline
from pipeline.domain.periods import Period, PeriodError, month_of
from pipeline.entrypoints.cli import main
from pipeline.entrypoints.cli.options import choose_period
from pipeline.lake.warehouse import open_warehouse
from pipeline.stages.report.build import build_report
from pipeline.stages.report.publish import is_closed, publish_report
from pipeline.stages.report.render import render_report
from pipeline.stages.snapshot import snapshot
from tests.conftest import Feed, ReferenceFiles, WriteFile, local
from tests.factories import jsonl, usage
from tests.finance_world import MONTH, TOTAL, World, build_world, ev
from tests.focus_conformance import COLUMNS_1_3
from tests.focus_conformance import check_csv as check_csv_of
from tests.focus_conformance import check_table as check_table_of
from tests.test_report import EVENTS, NOW

RANGE = "2026-10-02_2026-10-05"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.fixture
def world(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return build_world(home, write_file, monkeypatch, tmp_path)


def report_range(world: World, first: str, last: str, *formats: str) -> Result:
    result = run("report", "--from", first, "--to", last, "--out", str(world.out),
                 "--format", ",".join(formats or ("csv",)))
    assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------ periods


def test_periods_and_their_labels() -> None:
    october = Period.month("2026-10")
    assert (october.start, october.end, october.last, october.label) == (
        date(2026, 10, 1), date(2026, 11, 1), date(2026, 10, 31), "2026-10")
    assert Period.days(date(2026, 10, 1), date(2026, 10, 31)) == october  # a whole month is the month
    assert Period.month("2026-12").end == date(2027, 1, 1)
    days = Period.days(date(2026, 10, 2), date(2026, 10, 5))
    assert (days.label, days.title, days.end, days.is_month) == (RANGE, "2026-10-02 to 2026-10-05",
                                                                  date(2026, 10, 6), False)
    assert Period.parse(RANGE) == days and Period.parse("2026-10") == october
    assert Period.days(date(2026, 9, 30), date(2026, 12, 1)).months() == ["2026-09", "2026-10", "2026-11", "2026-12"]
    assert Period.days(date(2026, 10, 9), date(2026, 10, 9)).label == "2026-10-09_2026-10-09"
    assert days.is_closed(date(2026, 10, 6)) and not days.is_closed(date(2026, 10, 5))
    assert is_closed(RANGE, date(2026, 10, 6)) and is_closed("2026-10", date(2026, 11, 1))
    assert not is_closed("2026-10", date(2026, 10, 31))


@pytest.mark.parametrize(("label", "words"), [
    ("2026-13", "neither YYYY-MM nor"),
    ("2026-10-05_2026-10-01", "ends (2026-10-01) before it starts (2026-10-05)"),
    ("2026-02-30_2026-03-01", "is not a date"),
    ("2000-01-01_2026-01-01", "longer than 3,660 days"),
    ("October", "neither YYYY-MM nor"),
])
def test_bad_period_labels_are_clear_errors(label: str, words: str) -> None:
    with pytest.raises(PeriodError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Period.parse(label)


@pytest.mark.parametrize(("month", "first", "last", "words"), [
    ("2026-10", "2026-10-01", None, "either --month or --from/--to, not both"),
    (None, "2026-10-01", None, "give --month YYYY-MM, or a range of days"),
    (None, None, "2026-10-01", "give --month YYYY-MM, or a range of days"),
    (None, "2026-10-01", "2026-09-30", "ends (2026-09-30) before it starts (2026-10-01)"),
    (None, "1 Oct 2026", "2026-10-30", "--from '1 Oct 2026' is not of the form YYYY-MM-DD"),
    (None, "2026-10-01", "2026-10-32", "--to '2026-10-32' is not a date"),
    ("10/2026", None, None, "month '10/2026' is not of the form YYYY-MM"),
])
def test_choosing_a_period_explains_mistakes(month: str | None, first: str | None, last: str | None,
                                            words: str) -> None:
    with pytest.raises(click.ClickException) as raised:
        choose_period(month, first, last)
    assert words in raised.value.message


def test_the_cli_rejects_a_bad_range_in_one_line(world: World) -> None:
    result = run("report", "--from", "2026-10-05", "--to", "2026-10-01")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: the period ends (2026-10-01) before it starts (2026-10-05)"
    neither = run("report")
    assert neither.exit_code == 1 and "give --month YYYY-MM, or a range of days" in neither.output


# ------------------------------------------------------------------ a range within a month, with PTU


def test_a_range_of_days_is_priced_by_hand(world: World) -> None:
    result = report_range(world, "2026-10-02", "2026-10-05", "csv", "parquet")
    text = " ".join(result.output.split())
    assert "Chargeback 2026-10-02 to 2026-10-05 by cost center" in text
    assert "Total 73.00 USD over 2 requests" in text
    assert sorted(p.name for p in world.out.iterdir()) == [
        f"chargeback-{RANGE}-daily.csv", f"chargeback-{RANGE}-unpriced.csv", f"chargeback-{RANGE}.csv",
        f"chargeback-{RANGE}.parquet"]
    rows = {(r["month"], r["cost_center"], r["subscription_id"], r["model"], r["deployment_type"], r["currency"]):
            (r["requests"], r["cost"], r["ptu_cost"], r["total_cost"]) for r in world.rows(f"chargeback-{RANGE}.csv")}
    assert rows == {
        ("2026-10", "CC-A", "sub-a", "m-alpha", "global", "USD"): ("1", "1", "", "1"),
        ("2026-10", "CC-A", "sub-a", "m-ptu", "provisioned", ""): ("1", "", "", ""),  # no capacity on 10-05
        ("2026-10", "CC-OWNER", "", "m-ptu", "provisioned", "USD"): ("0", "", "72", "72"),  # 10-02 idle
    }
    unpriced = world.rows(f"chargeback-{RANGE}-unpriced.csv")
    assert [(r["month"], r["reason"], r["deployment"], r["requests"]) for r in unpriced] == [
        ("2026-10", "no-capacity", "dep-ptu", "1")]
    daily = [(r["date"], r["cost_center"], r["total_cost"]) for r in world.rows(f"chargeback-{RANGE}-daily.csv")]
    assert daily == [("2026-10-02", "CC-OWNER", "72"), ("2026-10-05", "CC-A", "1"), ("2026-10-05", "CC-A", "")]
    parquet = pq.read_table(world.out / f"chargeback-{RANGE}.parquet").to_pylist()
    assert sum(r["total_cost"] for r in parquet if r["total_cost"] is not None) == Decimal("73.00")


def test_the_html_report_of_a_range_names_the_range(world: World) -> None:
    report_range(world, "2026-10-02", "2026-10-05", "html")
    page = (world.out / f"chargeback-{RANGE}.html").read_text(encoding="utf-8")
    assert "<title>Chargeback 2026-10-02 to 2026-10-05: 73.00 USD</title>" in page
    assert "<h1>Azure OpenAI chargeback 2026-10-02 to 2026-10-05</h1>" in page
    assert "http://" not in page and "https://" not in page  # still self-contained


def test_the_month_as_a_range_is_the_month_report(world: World, tmp_path: Path) -> None:
    world.report("csv", "parquet", "focus", "html")
    month_files = {p.relative_to(world.out): p.read_bytes() for p in world.out.rglob("*") if p.is_file()}
    result = run("report", "--from", "2026-10-01", "--to", "2026-10-31", "--out", str(tmp_path / "as-range"),
                 "--format", "csv,parquet,focus,html")
    assert result.exit_code == 0, result.output
    range_files = {p.relative_to(tmp_path / "as-range"): p.read_bytes()
                   for p in (tmp_path / "as-range").rglob("*") if p.is_file()}
    assert range_files == month_files
    assert Path(f"chargeback-{MONTH}.csv") in range_files


def test_the_daily_rows_add_up_to_the_report_rows(world: World) -> None:
    world.report("csv")
    by_row: dict[tuple[str, ...], Decimal] = {}
    for row in world.rows(f"chargeback-{MONTH}-daily.csv"):
        assert row["date"].startswith(f"{MONTH}-")
        key = (row["cost_center"], row["subscription_id"], row["model"], row["deployment_type"], row["currency"])
        by_row[key] = by_row.get(key, Decimal(0)) + Decimal(row["total_cost"] or 0)
    monthly = {(r["cost_center"], r["subscription_id"], r["model"], r["deployment_type"], r["currency"]):
               Decimal(r["total_cost"] or 0) for r in world.rows()}
    assert by_row == monthly
    assert sum(monthly.values()) == TOTAL


def test_focus_export_of_a_range_conforms_and_stays_out_of_the_hubs_folder(world: World) -> None:
    report_range(world, "2026-10-02", "2026-10-05", "focus", "csv")
    assert not (world.out / "ingestion").exists()  # a hub would replace October's data with a part of it
    table = pq.read_table(world.out / f"chargeback-{RANGE}-focus.parquet")
    assert check_table_of(table, COLUMNS_1_3) == []
    text = (world.out / f"chargeback-{RANGE}-focus.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert check_csv_of(list(rows[0]), rows, COLUMNS_1_3) == []
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal("73.00")
    assert {(r["BillingPeriodStart"], r["BillingPeriodEnd"]) for r in rows} == {
        ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")}
    assert sorted({r["ChargePeriodStart"] for r in rows}) == ["2026-10-02T00:00:00Z", "2026-10-05T00:00:00Z"]


def test_a_closed_range_written_again_with_other_content_is_restated(world: World, write_file: WriteFile) -> None:
    report_range(world, "2026-10-02", "2026-10-05")
    before = (world.out / f"chargeback-{RANGE}.csv").read_bytes()
    late = ev("e-late", "sub-a", "dep-alpha", "2026-10-03T10:00:00Z", usage(2_000_000, 0))  # 2.00 to CC-A
    ingested = run("ingest", str(write_file("late.jsonl", jsonl([late]))))
    assert "ingested 1," in ingested.output
    result = report_range(world, "2026-10-02", "2026-10-05")
    text = " ".join(result.output.split())
    assert f"restated {RANGE}: version 2 replaces version 1" in text
    assert (world.out / "history" / f"chargeback-{RANGE}.v1.csv").read_bytes() == before
    assert read_csv(world.out / f"chargeback-{RANGE}-restatement.csv") == [
        {"month": RANGE, "cost_center": "CC-A", "currency": "USD", "old_total": "1", "new_total": "3",
         "delta": "2", "corrections": ""}]


def test_a_closed_range_is_restated_when_a_changed_file_comes_after_a_new_one(world: World,
                                                                            write_file: WriteFile) -> None:
    # Files are written as they are made: the CSV, new here, is written before the FOCUS CSV, which
    # was there and changed; the range must still be restated, its old FOCUS file kept in history.
    report_range(world, "2026-10-02", "2026-10-05", "focus")
    focus = world.out / f"chargeback-{RANGE}-focus.csv"
    before = focus.read_bytes()
    late = ev("e-late", "sub-a", "dep-alpha", "2026-10-03T10:00:00Z", usage(2_000_000, 0))
    assert "ingested 1," in run("ingest", str(write_file("late.jsonl", jsonl([late])))).output
    result = report_range(world, "2026-10-02", "2026-10-05", "csv")
    assert f"restated {RANGE}: version 2 replaces version 1" in " ".join(result.output.split())
    assert (world.out / "history" / f"chargeback-{RANGE}-focus.v1.csv").read_bytes() == before
    assert focus.read_bytes() != before and (world.out / f"chargeback-{RANGE}.csv").exists()
    again = report_range(world, "2026-10-02", "2026-10-05", "csv")  # nothing changed since: no restatement
    assert "restated" not in again.output and not (world.out / "history" / f"chargeback-{RANGE}-focus.v2.csv").exists()


def test_the_files_written_are_named_whole_whatever_the_folder_is_called(world: World) -> None:
    # The terminal takes no markup from a path: `[finance]` is a folder's name, not a style tag,
    # and a long path stays on one line for the user to copy.
    out = world.out.parent / "reports [finance]" / ("deep-" * 12)
    result = run("report", "--month", MONTH, "--out", str(out), "--format", "csv,focus")
    assert result.exit_code == 0, result.output
    written = [line.removeprefix("wrote ") for line in result.output.splitlines() if line.startswith("wrote ")]
    assert written and all(Path(path).is_file() for path in written), result.output
    assert f"{out}/chargeback-{MONTH}.csv" in written


# ------------------------------------------------------------------ a range across months


def test_a_range_across_months_has_a_row_per_month(pipeline: Pipeline, feed: Feed,
                                                   reference_files: ReferenceFiles) -> None:
    feed(jsonl(EVENTS))
    snapshot(pipeline.ledger, pipeline.snapshots)
    reference = reference_files.load()
    warehouse = open_warehouse(local(pipeline.snapshots), None, now=NOW)
    report = build_report(warehouse, reference, Period.days(date(2026, 10, 25), date(2026, 11, 1)))
    assert report.label == "2026-10-25_2026-11-01"
    rows = {(r.month, r.cost_center, r.subscription_id, r.model): (r.requests, r.prompt_tokens, r.cost)
            for r in report.rows}
    assert rows == {
        ("2026-10", "CC-B2", "sub-b", "m-beta"): (2, 4_000_000, Decimal("0.4")),
        ("2026-11", "CC-A", "sub-a", "m-alpha"): (1, 7, Decimal("0.00007")),
        ("2026-11", "CC-B2", "sub-b", "m-beta"): (1, 7, Decimal("0.0000035")),
    }
    assert report.totals == {"USD": Decimal("0.4000735")}
    focus = render_report(report, ["focus"])
    stem = "chargeback-2026-10-25_2026-11-01"
    assert set(focus) == {f"{stem}-focus.csv", f"{stem}-focus.parquet"}
    lines = list(csv.DictReader(io.StringIO(focus[f"{stem}-focus.csv"].decode())))
    periods = {(r["ChargePeriodStart"][:10], r["BillingPeriodStart"][:10]) for r in lines}
    assert periods == {("2026-10-25", "2026-10-01"), ("2026-10-31", "2026-10-01"), ("2026-11-01", "2026-11-01")}
    assert sum(Decimal(r["BilledCost"]) for r in lines) == Decimal("0.4000735")

    # Each month's rows of a range that covers whole months are that month's report.
    both = build_report(warehouse, reference, Period.days(date(2026, 9, 1), date(2026, 11, 30)))
    for month in ("2026-09", "2026-10", "2026-11"):
        alone = build_report(warehouse, reference, month)
        assert [r for r in both.rows if r.month == month] == alone.rows, month
        assert [u for u in both.unpriced if u.month == month] == alone.unpriced, month


def test_store_report_of_a_range_keeps_month_files_alone(pipeline: Pipeline, feed: Feed,
                                                         reference_files: ReferenceFiles, tmp_path: Path) -> None:
    feed(jsonl(EVENTS))
    snapshot(pipeline.ledger, pipeline.snapshots)
    reference = reference_files.load()
    warehouse = open_warehouse(local(pipeline.snapshots), None, now=NOW)
    store = LocalObjectStore(tmp_path / "reports")
    month_keys = publish_report(build_report(warehouse, reference, "2026-10"), store, ["csv"]).keys
    month_bytes = {key: store.get(key) for key in month_keys}
    range_keys = publish_report(build_report(warehouse, reference, "2026-10-05_2026-10-06"), store, ["csv"]).keys
    assert range_keys == ["chargeback-2026-10-05_2026-10-06.csv", "chargeback-2026-10-05_2026-10-06-unpriced.csv",
                          "chargeback-2026-10-05_2026-10-06-daily.csv"]
    assert {key: store.get(key) for key in month_keys} == month_bytes
    rows = read_csv(tmp_path / "reports" / "chargeback-2026-10-05_2026-10-06.csv")
    # 2026-10-05: 0.0016 (1000/200, 400 cached) + 0.00005 (stream); 2026-10-06: 3 (1M/500k)
    assert [(r["month"], r["cost_center"], r["requests"], r["prompt_tokens"], r["cached_tokens"],
             r["completion_tokens"], r["cost"]) for r in rows] == [
        ("2026-10", "CC-A", "3", "1001010", "400", "500210", "3.00165")]


def test_a_days_month_is_its_year_and_month() -> None:
    day = date(2015, 1, 1)
    while day.year < 2031:  # every day from the earliest event's to 2030
        assert month_of(day) == day.strftime("%Y-%m")
        day += timedelta(days=1)


def test_the_current_files_are_read_from_the_store_when_looked_up_never_held(tmp_path: Path) -> None:
    """Publishing compares and keeps the period's files as they are in the store: a big tenant's
    FOCUS CSV is hundreds of MB, so none is held while the new files are made."""
    from pipeline.stages.report.restate import current_files

    store = LocalObjectStore(tmp_path / "reports")
    store.put("chargeback-2026-10.csv", b"first", overwrite=True)
    store.put("chargeback-2026-10-focus.csv", b"focus", overwrite=True)
    store.put("chargeback-2026-09.csv", b"another month", overwrite=True)
    current = current_files(store, "2026-10")
    assert sorted(current) == ["chargeback-2026-10-focus.csv", "chargeback-2026-10.csv"]
    assert "chargeback-2026-10-daily.csv" not in current and current.get("chargeback-2026-10-daily.csv") is None
    store.put("chargeback-2026-10.csv", b"second", overwrite=True)
    assert current["chargeback-2026-10.csv"] == b"second"  # read now, not when listed
    store.delete("chargeback-2026-10-focus.csv")
    assert current.get("chargeback-2026-10-focus.csv") is None
