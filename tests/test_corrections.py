"""Corrections end to end through the CLI: void (by ids, by filter), reassign, reprice, how they
compose, restatements, bad files rejected whole, a file applied twice, who recorded it.

Prices (tests.conftest.PRICES_CSV), per 1M tokens: m-alpha 1.00 in before 2026-10-16, 2.00 from
then; m-beta 0.10 in, 0.40 out. sub-a -> CC-A, sub-b -> CC-B1 then CC-B2 from 2026-10-20, sub-test
unmapped (`unassigned`). Every event below has 1M prompt tokens, so each costs its input price.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from pipeline.app import open_store
from pipeline.entrypoints.cli import main
from pipeline.lake.areas import CORRECTIONS, SNAPSHOTS
from pipeline.lake.warehouse import open_warehouse
from pipeline.ports import ObjectStore
from pipeline.settings import Settings
from pipeline.stages.correct import load_corrections, read_log
from pipeline.stages.report.build import build_report
from pipeline.stages.report.daily import summed_daily_csv
from pipeline.stages.report.render import render_report
from tests.conftest import PRICES_CSV, ReferenceFiles, WriteFile
from tests.factories import event, jsonl, usage


def ev(event_id: str, subscription: str, deployment: str, timestamp: str, completion: int = 0) -> dict[str, object]:
    return event(eventId=event_id, subscriptionId=subscription, deployment=deployment, timestamp=timestamp,
                 model=None, usage=usage(1_000_000, completion))


EVENTS = [
    ev("e-a1", "sub-a", "dep-alpha", "2026-10-05T10:00:00Z"),  # 1.00
    ev("e-a2", "sub-a", "dep-alpha", "2026-10-06T10:00:00Z"),  # 1.00
    ev("e-a3", "sub-a", "dep-alpha", "2026-10-20T10:00:00Z"),  # 2.00 (new price)
    ev("e-b1", "sub-b", "dep-beta", "2026-10-10T00:00:00Z", completion=1_000_000),  # 0.10 + 0.40, CC-B1
    ev("e-b2", "sub-b", "dep-beta", "2026-10-25T00:00:00Z"),  # 0.10, CC-B2
    ev("e-t1", "sub-test", "dep-alpha", "2026-10-07T12:00:00Z"),  # 1.00
    ev("e-t2", "sub-test", "dep-beta", "2026-10-07T13:00:00Z"),  # 0.10
    ev("e-t3", "sub-test", "dep-alpha", "2026-10-09T00:00:00Z"),  # 1.00
    ev("e-n1", "sub-a", "dep-alpha", "2026-11-02T00:00:00Z"),  # November: 2.00
]
BEFORE = {"CC-A": "4", "CC-B1": "0.5", "CC-B2": "0.1", "unassigned": "2.1"}
RESTATEMENT_HEADER = "month,cost_center,currency,old_total,new_total,delta,corrections\n"
# m-alpha at 3.00 per 1M input tokens before 2026-10-16 (and the same m-beta price).
PRICES_V2 = PRICES_CSV.replace("m-alpha,global,*,2026-01-01,2026-10-16,USD,1.00", "m-alpha,global,*,2026-01-01,"
                                                                                  "2026-10-16,USD,3.00")
V2 = hashlib.sha256(PRICES_V2.encode()).hexdigest()[:12]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def flat(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class World:
    home: Path
    out: Path
    files: WriteFile
    reference: ReferenceFiles

    def report(self, month: str = "2026-10", *options: str) -> str:
        result = run("report", "--month", month, "--out", str(self.out), *self.reference.options(), *options)
        assert result.exit_code == 0, result.output
        return flat(result.output)

    def correct(self, name: str, content: str, *options: str) -> Result:
        return run("correct", str(self.files(name, content)), *options)

    def rows(self, month: str = "2026-10") -> list[dict[str, str]]:
        with (self.out / f"chargeback-{month}.csv").open(newline="") as file:
            return list(csv.DictReader(file))

    def totals(self, month: str = "2026-10") -> dict[str, str]:
        sums: dict[str, Decimal] = {}
        for row in self.rows(month):
            sums[row["cost_center"]] = sums.get(row["cost_center"], Decimal(0)) + Decimal(row["cost"] or 0)
        return {center: f"{total.normalize():f}" for center, total in sorted(sums.items())}

    def marked(self) -> list[tuple[str, str, str, str, str]]:
        return [(r["cost_center"], r["subscription_id"], r["model"], r["cost"], r["catalog_version"])
                for r in self.rows() if r["charge_class"] == "Correction"]

    def restatement(self) -> str:
        return (self.out / "chargeback-2026-10-restatement.csv").read_text()

    def ids(self) -> list[str]:
        return [c.id for entry in read_log(self.store()) for c in entry.corrections]

    def store(self) -> ObjectStore:
        return open_store(Settings.from_env(), CORRECTIONS)


@pytest.fixture
def world(home: Path, write_file: WriteFile, reference_files: ReferenceFiles, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("CHARGEBACK_USER", "tester")
    assert run("ingest", str(write_file("events.jsonl", jsonl(EVENTS)))).exit_code == 0
    made = World(home, tmp_path / "out", write_file, reference_files)
    made.report()
    assert made.totals() == BEFORE
    assert not (made.out / "chargeback-2026-10-restatement.csv").exists()  # a first write restates nothing
    return made


def test_void_by_event_ids(world: World) -> None:
    recorded = world.correct("void.yaml", "- kind: void\n  event_ids: [e-a1, e-a2]\n  reason: replayed twice\n")
    assert recorded.exit_code == 0, recorded.output
    [void] = world.ids()
    assert "1 correction(s) recorded as corrections log entry 1, by tester" in flat(recorded.output)
    assert f"{void} void 2 event id(s): replayed twice" in flat(recorded.output)
    assert "months affected: 2026-10;" in flat(recorded.output)
    v1 = (world.out / "chargeback-2026-10.csv").read_bytes()

    output = world.report()
    assert world.totals() == {**BEFORE, "CC-A": "2"}
    assert world.marked() == []  # voided events are gone; no line's cost center or price came from it
    assert f"{void} void 2 event id(s), 2 requests voided: replayed twice (by tester)" in output
    assert "restated 2026-10: version 2 replaces version 1" in output
    assert world.restatement() == RESTATEMENT_HEADER + f"2026-10,CC-A,USD,4,2,-2,{void}\n"
    assert (world.out / "history" / "chargeback-2026-10.v1.csv").read_bytes() == v1
    assert sorted(p.name for p in (world.out / "history").iterdir()) == [
        "chargeback-2026-10-daily.v1.csv", "chargeback-2026-10-unpriced.v1.csv", "chargeback-2026-10.v1.csv",
        "chargeback-2026-10.v1.parquet"]
    world.report("2026-11")
    assert world.totals("2026-11") == {"CC-A": "2"}
    assert not (world.out / "chargeback-2026-11-restatement.csv").exists()


def test_void_by_filter_from_a_csv_file(world: World) -> None:
    # [12:00, 00:00 two days later) on dep-alpha: e-t1 (at the start) only; e-t3 is at the exclusive end
    # and e-t2 is on dep-beta.
    recorded = world.correct("void.csv", "kind,subscription_id,deployment,from,to,reason\n"
                             "void,sub-test,dep-alpha,2026-10-07T12:00:00Z,2026-10-09T00:00:00+00:00,load test\n")
    assert recorded.exit_code == 0, recorded.output
    [void] = world.ids()
    assert f"{void} void sub-test / dep-alpha from 2026-10-07T12:00:00Z to 2026-10-09: load test" in flat(
        recorded.output)
    output = world.report("2026-10", "--format", "csv")
    assert world.totals() == {**BEFORE, "unassigned": "1.1"}
    assert "1 requests voided" in output
    assert world.restatement() == RESTATEMENT_HEADER + f"2026-10,unassigned,USD,2.1,1.1,-1,{void}\n"
    # The Parquet written before is kept in history and rewritten too: no stale format stays behind.
    for name, unassigned in (("history/chargeback-2026-10.v1.parquet", "2.1"), ("chargeback-2026-10.parquet", "1.1")):
        rows = pq.read_table(world.out / name).to_pylist()
        assert f"{sum(r['cost'] for r in rows if r['cost_center'] == 'unassigned'):f}".rstrip("0") == unassigned


def test_reassign_wins_over_the_map_for_its_days(world: World) -> None:
    yaml = ("- kind: reassign\n  subscription_id: sub-b\n  cost_center: CC-X\n  from: 2026-10-15\n"
            "  to: 2026-11-01\n  reason: team moved to CC-X\n")
    dry = world.correct("reassign.yaml", yaml, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "1 correction(s) would be recorded (dry run, nothing written)" in flat(dry.output)
    assert world.ids() == []
    assert world.correct("reassign.yaml", yaml).exit_code == 0
    [reassign] = world.ids()
    world.report()
    assert world.totals() == {"CC-A": "4", "CC-B1": "0.5", "CC-X": "0.1", "unassigned": "2.1"}
    assert world.marked() == [("CC-X", "sub-b", "m-beta", "0.1", world.rows()[0]["catalog_version"])]
    assert world.restatement() == (RESTATEMENT_HEADER + f"2026-10,CC-B2,USD,0.1,0,-0.1,{reassign}\n"
                                   f"2026-10,CC-X,USD,0,0.1,0.1,{reassign}\n")


def test_reprice_with_a_stored_catalog(world: World) -> None:
    catalog = world.files("prices-v2.csv", PRICES_V2)
    yaml = ("- kind: reprice\n  catalog: prices-v2.csv\n  model: m-alpha\n  from: 2026-10-01\n  to: 2026-10-16\n"
            "  reason: contract price\n")
    recorded = world.correct("reprice.yaml", yaml)
    assert recorded.exit_code == 0, recorded.output
    [reprice] = world.ids()
    assert world.store().get(f"catalogs/{V2}.csv") == PRICES_V2.encode()
    catalog.write_text(PRICES_CSV)  # the report re-loads the stored bytes, not the file
    output = world.report()
    # e-a1, e-a2, e-t1, e-t3 (m-alpha before 2026-10-16) at 3.00; m-beta and e-a3 unchanged
    assert world.totals() == {"CC-A": "8", "CC-B1": "0.5", "CC-B2": "0.1", "unassigned": "6.1"}
    assert world.marked() == [("CC-A", "sub-a", "m-alpha", "6", V2), ("unassigned", "sub-test", "m-alpha", "6", V2)]
    assert {r["catalog_version"] for r in world.rows() if not r["charge_class"]} == {
        world.reference.load().catalog.version}
    assert f"repriced by corrections with catalog {V2}" in output
    assert world.restatement() == (RESTATEMENT_HEADER + f"2026-10,CC-A,USD,4,8,4,{reprice}\n"
                                   f"2026-10,unassigned,USD,2.1,6.1,4,{reprice}\n")


def test_corrections_compose_void_first_then_the_latest_reassign(world: World) -> None:
    world.files("prices-v2.csv", PRICES_V2)
    first = world.correct("first.yaml", "- {kind: void, event_ids: e-a1, reason: duplicate}\n"
                          "- {kind: reprice, catalog: prices-v2.csv, from: 2026-10-01, to: 2026-10-16, reason: p}\n"
                          "- {kind: reassign, subscription_id: sub-a, cost_center: CC-Z, from: 2026-10-01, "
                          "to: 2026-10-10, reason: pilot}\n")
    assert first.exit_code == 0, first.output
    void, reprice, pilot = world.ids()
    world.report()
    # e-a1 is voided (neither repriced nor reassigned); e-a2 is repriced (3.00) and in CC-Z.
    assert world.totals() == {"CC-A": "2", "CC-B1": "0.5", "CC-B2": "0.1", "CC-Z": "3", "unassigned": "6.1"}
    later = world.correct("later.yaml", "- {kind: reassign, subscription_id: sub-a, cost_center: CC-Y, "
                          "from: 2026-10-06, to: 2026-10-07, reason: one day for CC-Y}\n")
    assert later.exit_code == 0, later.output
    day = world.ids()[-1]
    assert f"note: {day} overrides {pilot}" in flat(later.output)
    output = world.report()
    assert world.totals() == {"CC-A": "2", "CC-B1": "0.5", "CC-B2": "0.1", "CC-Y": "3", "unassigned": "6.1"}
    assert "version 3 replaces version 2" in output
    # CC-Z keeps the void (e-a1 would be CC-Z's) and lost e-a2 to the later reassign.
    assert world.restatement() == (RESTATEMENT_HEADER + f"2026-10,CC-Y,USD,0,3,3,{';'.join(sorted((reprice, day)))}\n"
                                   f"2026-10,CC-Z,USD,3,0,-3,{';'.join(sorted((void, reprice, day)))}\n")
    assert (world.out / "history" / "chargeback-2026-10-restatement.v2.csv").is_file()


def test_the_same_file_twice_is_recorded_once(world: World) -> None:
    yaml = "- kind: void\n  event_ids: e-b1 e-b2\n  reason: test traffic\n"
    assert world.correct("void.yaml", yaml).exit_code == 0
    world.report()
    reported = {p.name: p.read_bytes() for p in world.out.rglob("*") if p.is_file()}
    again = world.correct("void.yaml", yaml, "--by", "someone-else")
    assert again.exit_code == 0, again.output
    assert "already recorded: 1 correction(s), not recorded again" in flat(again.output)
    assert "months affected: none (nothing new)" in flat(again.output)
    assert len(read_log(world.store())) == 1
    output = world.report()
    assert "restated" not in output
    assert {p.name: p.read_bytes() for p in world.out.rglob("*") if p.is_file()} == reported


def test_who_recorded_it(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def entry(n: int) -> str:
        return f"- {{kind: void, event_ids: [e-t{n}], reason: case {n}}}\n"

    assert world.correct("one.yaml", entry(1), "--by", "carol").exit_code == 0
    monkeypatch.delenv("CHARGEBACK_USER")
    monkeypatch.setenv("USER", "dave")
    assert world.correct("two.yaml", entry(2)).exit_code == 0
    for name in ("USER", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    nobody = world.correct("three.yaml", entry(3))
    assert nobody.exit_code == 1 and "Give --by NAME or set CHARGEBACK_USER" in nobody.output
    blank = world.correct("three.yaml", entry(3), "--by", "  ")
    assert blank.exit_code == 1 and "--by is empty" in blank.output
    entries = read_log(world.store())
    assert [(e.by, e.source, [c.by for c in e.corrections]) for e in entries] == [
        ("carol", "one.yaml", ["carol"]), ("dave", "two.yaml", ["dave"])]
    assert all(e.recorded_at.tzinfo is not None for e in entries)


def test_the_costs_view_agrees_with_the_report(world: World, settings: Settings) -> None:
    world.files("prices-v2.csv", PRICES_V2)
    assert world.correct("all.yaml", "- {kind: void, event_ids: [e-a1], reason: r}\n"
                         "- {kind: void, subscription_id: sub-test, from: 2026-10-09, to: 2026-10-10, reason: r}\n"
                         "- {kind: reassign, subscription_id: sub-b, cost_center: CC-X, from: 2026-10-01, "
                         "to: 2026-10-15, reason: r}\n"
                         "- {kind: reprice, catalog: prices-v2.csv, from: 2026-10-06, to: 2026-10-08, reason: r}\n"
                         ).exit_code == 0
    world.report()
    corrections = load_corrections(world.store())
    reference = world.reference.load()
    connection = open_warehouse(open_store(settings, SNAPSHOTS), reference, corrections=corrections).connection
    by_center = connection.execute("SELECT cost_center, sum(cost) FROM costs WHERE month = '2026-10' "
                                   "GROUP BY ALL ORDER BY ALL").fetchall()
    assert {center: f"{cost.normalize():f}" for center, cost in by_center} == world.totals() == {
        "CC-A": "5", "CC-B2": "0.1", "CC-X": "0.5", "unassigned": "3.1"}
    assert connection.execute("SELECT count(*) FROM costs WHERE event_id IN ('e-a1', 'e-t3')").fetchone() == (0,)
    marked = connection.execute("SELECT event_id FROM costs WHERE charge_class = 'Correction' ORDER BY ALL")
    assert [row[0] for row in marked.fetchall()] == ["e-a2", "e-b1", "e-t1", "e-t2"]
    report = build_report(open_warehouse(open_store(settings, SNAPSHOTS)), reference, "2026-10", corrections)
    assert report.totals == {"USD": Decimal("8.7")} == {
        "USD": connection.execute("SELECT sum(cost) FROM costs WHERE month = '2026-10'").fetchone()[0]}  # type: ignore[index]


def test_the_daily_rows_from_periods_equal_those_from_the_day_lines(world: World, settings: Settings) -> None:
    """`-daily.csv` is summed from each key's period resolution (Report.day_usage), not from a
    cost line per day: across a price change, reprice and reassign boundaries and keys without a
    price (whose detail names the day), it is the file the day-level lines give."""
    noprice = [ev(f"e-g{day}", "sub-a", "dep-noprice", f"2026-10-{day:02d}T08:00:00Z") for day in (3, 12, 21)]
    assert run("ingest", str(world.files("more.jsonl", jsonl(noprice)))).exit_code == 0
    world.files("prices-v2.csv", PRICES_V2)
    assert world.correct("all.yaml", "- {kind: reassign, subscription_id: sub-a, cost_center: CC-X, from: 2026-10-04, "
                         "to: 2026-10-13, reason: r}\n"
                         "- {kind: reprice, catalog: prices-v2.csv, from: 2026-10-06, to: 2026-10-08, reason: r}\n"
                         ).exit_code == 0
    world.report()
    report = build_report(open_warehouse(open_store(settings, SNAPSHOTS)), world.reference.load(), "2026-10",
                          load_corrections(world.store()))
    from_lines = dataclasses.replace(report, day_groups=None)
    assert len(report.day_usage()) == len(report.lines) == len(from_lines.day_usage()) == 11
    assert sum(item.prompt_tokens for item in report.day_usage()) == 11_000_000
    daily = "chargeback-2026-10-daily.csv"
    fast, slow = render_report(report, ["csv"])[daily], render_report(from_lines, ["csv"])[daily]
    assert fast == slow == (world.out / daily).read_bytes()
    assert report.day_groups is not None and not report.deployment_days
    assert summed_daily_csv(report.day_groups) == slow  # DuckDB's file, charge class Correction included
    assert b",Correction," in slow
    assert fast.count(b",CC-X,") == 3 and fast.count(b"no_price") == 0  # e-a1, e-a2, e-g12; reasons are elsewhere
