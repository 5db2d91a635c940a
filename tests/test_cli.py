"""The `chargeback` command through click's CliRunner, plus one real run of the console script."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import click
import msgspec
import pytest
from click.testing import CliRunner, Result

from pipeline.entrypoints.cli import COMMANDS, main
from pipeline.inputs.catalog import load_price_catalog, shipped_catalog_path
from pipeline.settings import Settings
from tests.conftest import SETTINGS_VARIABLES, ReferenceFiles, WriteFile
from tests.factories import event, jsonl, usage

EVENTS = [
    # m-alpha before 2026-10-16: (1M * 1.00 + 0.5M * 4.00) / 1M = 3.00
    event(eventId="evt-1", subscriptionId="sub-a", deployment="dep-alpha", model=None,
          timestamp="2026-10-05T10:00:00Z", usage=usage(1_000_000, 500_000)),
    # m-beta: 2M * 0.10 / 1M = 0.20
    event(eventId="evt-2", subscriptionId="sub-b", deployment="dep-beta", model=None,
          timestamp="2026-10-10T10:00:00Z", usage=usage(2_000_000, 0)),
    event(eventId="evt-3", subscriptionId="sub-a", deployment="dep-alpha", model=None,
          timestamp="2026-10-11T10:00:00Z", usage=None, usageSource="none", statusCode=500),
]


def run(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def loaded(home: Path, write_file: WriteFile) -> Path:
    """A home with EVENTS ingested and snapshotted through the CLI."""
    path = write_file("events.jsonl", jsonl(EVENTS))
    assert run("ingest", str(path)).exit_code == 0
    assert run("snapshot").exit_code == 0
    return home


def test_ingest_a_file_and_stdin(home: Path, write_file: WriteFile) -> None:
    path = write_file("events.jsonl", jsonl(EVENTS[:2]) + b"not json\n")
    result = run("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert "received 3: ingested 2, duplicates 0, dead-lettered 1" in flat(result.output)
    assert "dead letter: not-json x1" in flat(result.output)
    piped = run("ingest", "-", input=jsonl(EVENTS))
    assert piped.exit_code == 0, piped.output
    assert "received 3: ingested 1, duplicates 2, dead-lettered 0" in flat(piped.output)
    packed = run("ingest", "-", input=gzip.compress(jsonl(EVENTS)))  # `zcat` not needed
    assert "received 3: ingested 0, duplicates 3, dead-lettered 0" in flat(packed.output)
    both = run("ingest", str(path), "-", input=jsonl(EVENTS[2:]))
    assert "received 4: ingested 0, duplicates 3, dead-lettered 1" in flat(both.output)
    assert (home / "ledger.sqlite3").is_file()


def test_ingest_a_named_pipe(home: Path, tmp_path: Path) -> None:
    """What `chargeback ingest <(zcat month.jsonl.gz)` names: a pipe, read as it is written."""
    pipe = tmp_path / "month.pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=pipe.write_bytes, args=(jsonl(EVENTS) + b"not json\n",))
    writer.start()
    try:
        result = run("ingest", str(pipe))
    finally:
        writer.join()
    assert result.exit_code == 0, result.output
    assert "received 4: ingested 3, duplicates 0, dead-lettered 1" in flat(result.output)


def test_snapshot_prints_what_it_wrote(home: Path, write_file: WriteFile) -> None:
    run("ingest", str(write_file("events.jsonl", jsonl(EVENTS))))
    first = run("snapshot")
    assert first.exit_code == 0, first.output
    assert "snapshot: 3 events -> 3 new Parquet file(s), committed as manifest 1" in flat(first.output)
    assert len(list((home / "snapshots" / "usage").glob("date=*/part-00000001-*.parquet"))) == 3
    assert sorted(p.name for p in (home / "snapshots" / "_manifests").iterdir()) == ["00000001.json"]
    again = run("snapshot")
    assert again.exit_code == 0, again.output
    assert flat(again.output) == "snapshot: nothing new"
    assert len(list((home / "snapshots" / "rollups").glob("v1/date=*/part-00000001-*.parquet"))) == 3  # one a file
    assert (home / "snapshots" / "_backfill" / "rollups-v1.json").is_file()  # a store begun with rollups
    assert len(list((home / "snapshots").rglob("*.*"))) == 8


def test_snapshots_made_from_another_ledger_are_refused_in_one_line(home: Path, write_file: WriteFile) -> None:
    run("ingest", str(write_file("events.jsonl", jsonl(EVENTS))))
    manifests = home / "snapshots" / "_manifests"
    manifests.mkdir(parents=True)
    cosmos_cursor = '["2026-10-15T12:00:00.000000Z","evt-1"]'  # what the Cosmos DB ledger's feed writes
    (manifests / "00000001.json").write_text(
        f'{{"number":1,"cursor":{json.dumps(cosmos_cursor)},"files":[],"created":"2026-10-15T12:00:00Z"}}')
    result = run("snapshot")
    assert result.exit_code == 1 and not isinstance(result.exception, ValueError)
    assert flat(result.output) == (f"Error: cursor {cosmos_cursor!r} was not written by the embedded ledger "
                                   f"{home / 'ledger.sqlite3'}: the snapshots were made from another ledger; point "
                                   "CHARGEBACK_STORE at this ledger's snapshots")


def test_report_writes_files_and_prints_the_total(loaded: Path, reference_files: ReferenceFiles,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = run("report", "--month", "2026-10", "--out", str(out), *reference_files.options())
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "Total 3.20 USD over 3 requests" in text
    assert "1 requests are unpriced" in text
    assert "unassigned" not in text
    assert sorted(p.name for p in out.iterdir()) == [
        "chargeback-2026-10-daily.csv", "chargeback-2026-10-unpriced.csv", "chargeback-2026-10.csv",
        "chargeback-2026-10.parquet"]
    lines = (out / "chargeback-2026-10.csv").read_text().splitlines()
    assert [line.split(",")[9] for line in lines] == ["cost", "", "3", "0.2"]
    only_csv = run("report", "--month", "2026-10", "--format", "csv", *reference_files.options())
    assert only_csv.exit_code == 0, only_csv.output
    assert sorted(p.name for p in (loaded / "reports").iterdir()) == [
        "chargeback-2026-10-daily.csv", "chargeback-2026-10-unpriced.csv", "chargeback-2026-10.csv"]


def test_usage_charged_to_unassigned_is_named(loaded: Path, reference_files: ReferenceFiles,
                                              write_file: WriteFile) -> None:
    """sub-b's mapping ends before its event of 2026-10-10: the report names it, with its cost."""
    ended = write_file("ended.csv", "subscription_id,cost_center,effective_from,effective_to\n"
                                    "sub-a,CC-A,2026-01-01,\nsub-b,CC-B1,2026-01-01,2026-10-05\n")
    result = run("report", "--month", "2026-10", "--prices", str(reference_files.prices), "--format", "csv,html",
                 "--deployments", str(reference_files.deployments), "--cost-centers", str(ended))
    assert result.exit_code == 0, result.output
    assert "Total 3.20 USD over 3 requests" in flat(result.output)
    said = ("1 requests of 1 subscription(s) with no cost center on their days are charged to `unassigned` (0.20 USD): "
            "sub-b; map them in the cost-center file (--cost-centers, CHARGEBACK_COST_CENTERS)")
    assert f"warning: {said}\n" in result.output
    page = (loaded / "reports" / "chargeback-2026-10.html").read_text(encoding="utf-8")
    assert f'<li class="unassigned">{said}</li>' in page


def test_reference_files_from_the_environment(loaded: Path, reference_files: ReferenceFiles,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_PRICES", str(reference_files.prices))
    monkeypatch.setenv("CHARGEBACK_DEPLOYMENTS", str(reference_files.deployments))
    monkeypatch.setenv("CHARGEBACK_COST_CENTERS", str(reference_files.cost_centers))
    result = run("report", "--month", "2026-10")
    assert "Total 3.20 USD" in flat(result.output)


def test_query_formats(loaded: Path, reference_files: ReferenceFiles) -> None:
    as_csv = run("query", "SELECT event_id, prompt_tokens, date FROM usage ORDER BY event_id", "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.output == ("event_id,prompt_tokens,date\nevt-1,1000000,2026-10-05\nevt-2,2000000,2026-10-10\n"
                             "evt-3,,2026-10-11\n")
    sql = "SELECT cost_center, sum(cost) AS cost, count(*) AS n FROM costs GROUP BY ALL ORDER BY ALL"
    as_json = run("query", sql, "--format", "json", *reference_files.options())
    assert as_json.exit_code == 0, as_json.output
    rows = msgspec.json.decode(as_json.output)
    assert [(r["cost_center"], Decimal(r["cost"]), r["n"]) for r in rows] == [
        ("CC-A", Decimal(3), 2), ("CC-B1", Decimal("0.2"), 1)]
    table = run("query", "SELECT subscription_id, count(*) AS requests FROM usage GROUP BY ALL ORDER BY ALL")
    assert table.exit_code == 0, table.output
    assert "subscription_id" in table.output and "requests" in table.output
    assert "sub-a" in table.output and "│ 2 " in table.output


def test_report_and_query_snapshot_pending_events_first(home: Path, write_file: WriteFile,
                                                         reference_files: ReferenceFiles) -> None:
    assert run("ingest", str(write_file("events.jsonl", jsonl(EVENTS)))).exit_code == 0
    query = run("query", "SELECT count(*) AS n FROM usage", "--format", "json")
    assert query.exit_code == 0, query.output
    assert msgspec.json.decode(query.stdout) == [{"n": 3}]  # stdout stays machine-readable
    assert "snapshot: 3 events -> 3 new Parquet file(s), committed as manifest 1" in flat(query.stderr)
    late = event(eventId="evt-4", subscriptionId="sub-b", deployment="dep-beta", model=None,
                 timestamp="2026-10-12T10:00:00Z", usage=usage(1_000_000, 0))  # + 0.10
    assert run("ingest", "-", input=jsonl([late])).exit_code == 0
    report = run("report", "--month", "2026-10", *reference_files.options())
    assert report.exit_code == 0, report.output
    assert "snapshot: 1 events -> 1 new Parquet file(s), committed as manifest 2" in flat(report.output)
    assert "Total 3.30 USD over 4 requests" in flat(report.output)
    assert len(list((home / "snapshots" / "usage").glob("date=*/part-*.parquet"))) == 4
    again = run("query", "SELECT count(*) AS n FROM usage", "--format", "json")
    assert (msgspec.json.decode(again.stdout), again.stderr) == ([{"n": 4}], "")  # nothing pending: no notice


def test_query_reads_committed_files_only(loaded: Path) -> None:
    [committed] = (loaded / "snapshots" / "usage" / "date=2026-10-05").iterdir()
    (committed.parent / "part-00000009-orphan.parquet").write_bytes(committed.read_bytes())  # a dead run's file
    result = run("query", "SELECT event_id FROM usage ORDER BY ALL", "--format", "csv")
    assert result.output == "event_id\nevt-1\nevt-2\nevt-3\n"


def test_usage_shows_live_spend_and_budget_alerts(home: Path, write_file: WriteFile) -> None:
    # `ingest` prices live spend with the shipped catalog and the maps under the home.
    price = load_price_catalog(shipped_catalog_path()).find("gpt-4o", "global", None, date(2026, 10, 5))
    assert price is not None
    cost = price.cost(1_000_000, 0, 100_000)
    home.mkdir()
    (home / "deployments.csv").write_text("deployment,model,deployment_type,region\ndep-4o,gpt-4o,global,\n")
    (home / "budgets.csv").write_text(f"scope,key,monthly_budget,currency\nsubscription,sub-a,{2 * cost:f},USD\n")
    traffic = jsonl([event(subscriptionId="sub-a", deployment="dep-4o", model=None, timestamp="2026-10-05T10:00:00Z",
                           usage=usage(1_000_000, 100_000)),
                     event(subscriptionId="sub-b", deployment="dep-unknown", timestamp="2026-10-06T10:00:00Z")])
    ingested = run("ingest", str(write_file("events.jsonl", traffic)))
    assert ingested.exit_code == 0, ingested.output
    two = Decimal(2) * cost
    assert f"budget alert subscription sub-a: 50% of {two:.2f} USD reached in 2026-10" in flat(ingested.output)
    again = run("ingest", str(write_file("events.jsonl", traffic)))
    assert "budget alert" not in again.output
    live = run("usage", "--month", "2026-10")
    assert live.exit_code == 0, live.output
    text = flat(live.output)
    assert "Live usage 2026-10" in text
    assert f"budget alert subscription sub-a: 50% of {two:.2f} USD reached at" in text
    assert f"({cost:.2f} USD)" in text and "By cost center" in text
    assert re.search(rf"sub-a\W+1\W+1,100,000\W+0\W+{cost:.2f}\W+{two:,.2f} USD\W+50%", text), text
    assert re.search(r"sub-b\W+1\W+1,200\W+1\W+0.00\W+-\W+-", text), text
    one = flat(run("usage", "--month", "2026-10", "--subscription", "sub-b").output)
    assert "sub-b" in one and "sub-a" not in one and "budget alert" not in one
    assert "no live usage recorded for this month" in run("usage", "--month", "2026-09").output


def test_usage_of_many_subscriptions_shows_those_that_spent_most_unless_all(home: Path, write_file: WriteFile) -> None:
    home.mkdir()
    (home / "deployments.csv").write_text("deployment,model,deployment_type,region\ndep-4o,gpt-4o,global,\n")
    traffic = jsonl([event(subscriptionId=f"sub-{n:02d}", deployment="dep-4o", model=None,
                           timestamp="2026-10-05T10:00:00Z", usage=usage(10_000 * (n + 1), 0)) for n in range(45)])
    assert run("ingest", str(write_file("events.jsonl", traffic))).exit_code == 0
    text = flat(run("usage", "--month", "2026-10").output)
    shown = re.findall(r"sub-(\d\d)", text)
    assert shown == [f"{n:02d}" for n in range(44, 4, -1)], text  # the 40 that spent most, most first
    assert "... 5 more subscriptions: --all shows every one" in text
    every = flat(run("usage", "--month", "2026-10", "--all").output)
    assert re.findall(r"sub-(\d\d)", every) == [f"{n:02d}" for n in range(45)] and "more subscriptions" not in every


def test_backends_are_chosen_by_their_urls(home: Path, tmp_path: Path, write_file: WriteFile,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "other place"
    monkeypatch.setenv("CHARGEBACK_LEDGER", f"sqlite:///{elsewhere}/events.sqlite3")
    monkeypatch.setenv("CHARGEBACK_COUNTERS", f"sqlite:///{elsewhere}/live.sqlite3")
    monkeypatch.setenv("CHARGEBACK_STORE", (elsewhere / "store").as_uri())
    assert run("ingest", str(write_file("events.jsonl", jsonl(EVENTS) + b"not json\n"))).exit_code == 0
    query = run("query", "SELECT count(*) AS n FROM usage", "--format", "json")
    assert msgspec.json.decode(query.stdout) == [{"n": 3}]
    assert (elsewhere / "events.sqlite3").is_file() and (elsewhere / "live.sqlite3").is_file()
    assert len(list((elsewhere / "store" / "snapshots" / "usage").glob("date=*/part-*.parquet"))) == 3
    assert [p.suffix for p in (elsewhere / "store" / "dead-letters").rglob("*") if p.is_file()] == [".jsonl"]
    assert not home.exists()  # nothing fell back to the home


def test_settings_default_to_the_home(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "h")
    assert (settings.ledger, settings.counters, settings.store) == (
        f"sqlite:///{tmp_path}/h/ledger.sqlite3", f"sqlite:///{tmp_path}/h/counters.sqlite3", (tmp_path / "h").as_uri())
    assert (settings.embedded_ledger, settings.budgets_csv) == (tmp_path / "h" / "ledger.sqlite3",
                                                                tmp_path / "h" / "budgets.csv")
    assert Settings(Path("relative")).store == Path("relative").absolute().as_uri()
    configured = Settings.from_env({"CHARGEBACK_HOME": str(tmp_path), "CHARGEBACK_LEDGER": "cosmos://h/db/events",
                                    "CHARGEBACK_COUNTERS": "", "CHARGEBACK_BUDGETS": "/etc/budgets.csv"})
    assert (configured.ledger, configured.embedded_ledger, configured.counters, configured.budgets_csv) == (
        "cosmos://h/db/events", None, f"sqlite:///{tmp_path}/counters.sqlite3", Path("/etc/budgets.csv"))


def test_query_without_snapshots_sees_empty_views_and_says_so(home: Path) -> None:
    result = run("query", "SELECT count(*) AS n FROM costs", "--format", "json")
    assert result.exit_code == 0, result.output
    assert msgspec.json.decode(result.stdout) == [{"n": 0}]
    assert flat(result.stderr) == (f"warning: {(home / 'snapshots').as_uri()} holds no committed snapshot, so there "
                                   "is no usage to read: check CHARGEBACK_STORE (`chargeback doctor` checks it), or "
                                   "ingest events (`chargeback ingest FILE`) and run `chargeback snapshot`")
    other = run("query", "SELECT count(*) AS n FROM llm_usage", "--format", "json")
    assert (other.exit_code, other.stderr) == (0, "")  # not a view of the snapshots' events


def test_a_report_without_usage_says_why(loaded: Path) -> None:
    """An empty report is never a silent zero: it names the days the snapshots hold, or says
    that the store (a wrong CHARGEBACK_STORE, say) holds none."""
    outside = run("report", "--month", "2025-01", "--format", "csv")
    assert outside.exit_code == 0, outside.output
    assert "note: no usage in 2025-01; the committed snapshots hold 2026-10-05 to 2026-10-11" in outside.output
    assert "over 0 requests" in flat(outside.output)
    days = run("report", "--from", "2026-10-06", "--to", "2026-10-09", "--format", "csv")
    assert "note: no usage in 2026-10-06 to 2026-10-09; the committed snapshots hold 2026-10-05 to 2026-10-11" \
        in days.output
    reported = run("report", "--month", "2026-10", "--format", "csv")
    assert reported.exit_code == 0 and "over 3 requests" in flat(reported.output), reported.output
    assert "note:" not in reported.output and "no committed snapshot" not in reported.output


def test_a_report_of_a_store_without_snapshots_says_so(home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"  # a CHARGEBACK_STORE that names a folder not there
    monkeypatch.setenv("CHARGEBACK_STORE", elsewhere.as_uri())
    wrong = run("report", "--month", "2026-10", "--format", "csv")
    assert wrong.exit_code == 0, wrong.output
    assert flat(wrong.output).startswith(
        f"warning: {(elsewhere / 'snapshots').as_uri()} holds no committed snapshot, so there is no usage to read: "
        "check CHARGEBACK_STORE (`chargeback doctor` checks it), or ingest events (`chargeback ingest FILE`) and "
        "run `chargeback snapshot` Chargeback 2026-10 by cost center"), wrong.output
    assert "over 0 requests" in flat(wrong.output)


@pytest.mark.parametrize(("case", "expected"), [
    ("unknown-ledger", "CHARGEBACK_LEDGER 'postgres://db/usage': expected sqlite:///PATH or cosmos://"),
    ("unknown-store", "CHARGEBACK_STORE 's3://bucket/usage': expected file:///PATH or az://"),
    ("bad-budget", "scope 'team' must be one of subscription, cost-center"),
    ("bad-month", "'2026-13' is not of the form YYYY-MM"),
    ("missing-input", "missing.jsonl: no such file"),
    ("folder-input", "a folder, not a JSON-lines file: name its files ("),
    ("damaged-gzip", "cut.jsonl.gz: gzip data damaged or cut short after line 0"),
    ("missing-prices", "nope.csv: no such file"),
    ("negative-price", "output_per_1m '-4.00' must be a finite price >= 0"),
    ("bad-sql", "query failed: Parser Error"),
    ("unknown-table", "query failed: Catalog Error"),
    ("unknown-format", "unknown format(s) xlsx"),
    ("month-with-newline", "is not of the form YYYY-MM"),
    ("empty-sql", ""),  # any clear message will do
])
def test_user_mistakes_give_one_clear_line(loaded: Path, reference_files: ReferenceFiles, write_file: WriteFile,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
                                           expected: str) -> None:
    negative = write_file("negative.csv", reference_files.prices.read_text().replace(",4.00", ",-4.00"))
    budgets = write_file("budgets.csv", "scope,key,monthly_budget,currency\nteam,search,10,USD\n")
    environment = {"unknown-ledger": ("CHARGEBACK_LEDGER", "postgres://db/usage"),
                   "unknown-store": ("CHARGEBACK_STORE", "s3://bucket/usage"),
                   "bad-budget": ("CHARGEBACK_BUDGETS", str(budgets))}
    if case in environment:
        monkeypatch.setenv(*environment[case])
    args = {
        "unknown-ledger": ["snapshot"],
        "unknown-store": ["query", "SELECT 1"],
        "bad-budget": ["ingest", str(write_file("one.jsonl", jsonl(EVENTS[:1])))],
        "bad-month": ["report", "--month", "2026-13"],
        "missing-input": ["ingest", str(tmp_path / "missing.jsonl")],
        "folder-input": ["ingest", str(tmp_path)],
        "damaged-gzip": ["ingest", str(write_file("cut.jsonl.gz", gzip.compress(jsonl(EVENTS))[:-12]))],
        "missing-prices": ["report", "--month", "2026-10", "--prices", str(tmp_path / "nope.csv")],
        "negative-price": ["report", "--month", "2026-10", "--prices", str(negative)],
        "bad-sql": ["query", "SELEC nothing"],
        "unknown-table": ["query", "SELECT * FROM nowhere"],
        "unknown-format": ["report", "--month", "2026-10", "--format", "csv,xlsx"],
        "month-with-newline": ["report", "--month", "2026-10\n"],
        "empty-sql": ["query", "  "],
    }[case]
    result = run(*args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # not an escaped exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and expected in lines[0]
    assert "Traceback" not in result.output


def test_demo_rejects_a_negative_event_count(home: Path) -> None:
    result = run("demo", "--events", "-5", "--month", "2026-10")
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert "events" in result.output.strip().splitlines()[-1]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_an_example(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    result = run(name, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_demo_console_script_is_repeatable(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "chargeback"
    environment = {**os.environ, "CHARGEBACK_HOME": str(tmp_path / "demo-home"), "COLUMNS": "200"}
    for name in SETTINGS_VARIABLES:
        environment.pop(name, None)
    command = [str(script), "demo", "--events", "3000", "--month", "2026-10"]
    first = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    report = tmp_path / "demo-home" / "reports" / "chargeback-2026-10.csv"
    assert report.is_file()
    assert "Total" in first.stdout and "Traceback" not in first.stderr
    published = report.read_bytes()
    second = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    counts = re.search(r"received 3,000: ingested 0, duplicates ([\d,]+), dead-lettered (\d+)", flat(second.stdout))
    assert counts, second.stdout
    assert int(counts[1].replace(",", "")) + int(counts[2]) == 3000
    assert "snapshot: nothing new" in flat(second.stdout)
    assert report.read_bytes() == published
