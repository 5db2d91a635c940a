"""`chargeback doctor`: one line per check, the fix under each problem, and the documented exit
code (0 ready, 1 a mistake to fix, 4 only unreachable backends), with each fault seeded for real."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.entrypoints.cli import main
from pipeline.inputs.reference import load_reference
from pipeline.lake.manifests import manifests
from pipeline.lake.rollups import rolled_up_note_key
from pipeline.stages.doctor import Status, check_coverage, check_llm_logs, check_snapshots
from pipeline.stages.llm_usage import StreamStatus
from tests.conftest import ReferenceFiles, WriteFile
from tests.factories import event, jsonl, usage
from tests.fault_tools import free_port

CATALOG = "model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,cached_input_per_1m," \
          "output_per_1m\nm-alpha,global,*,2026-01-01,2026-10-16,USD,1.00,0.50,4.00\n" \
          "m-beta,datazone,*,2026-01-01,,USD,0.10,,0.40\n"
PRICED = "deployment,model,deployment_type,region\ndep-4o,gpt-4o,global,\ndep-nomodel,,global,\n"  # shipped catalog


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["doctor", *args], env=env)


def lines(result: Result) -> dict[str, str]:
    """Each check's line (`status name detail`) by its name, and its `fix:` line under it."""
    assert "Traceback" not in result.output, result.output
    found: dict[str, str] = {}
    name = ""
    for line in result.output.splitlines():
        if line.strip().startswith("fix: "):
            found[f"{name} fix"] = line.strip().removeprefix("fix: ")
        elif line[:5].strip() in {"ok", "warn", "FAIL"}:
            name = line[6:16].strip()
            found[name] = line
    return found


def ready_home(home: Path, write_file: WriteFile) -> None:
    """A home with a priced deployment map and a month of events ingested and snapshotted."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "deployments.csv").write_text(PRICED)
    events = [event(eventId=f"doc-{n}", deployment="dep-4o", model=None, usage=usage(100, 10),
                    timestamp=f"2026-10-{1 + n:02d}T10:00:00Z") for n in range(3)]
    ingested = CliRunner().invoke(main, ["ingest", str(write_file("events.jsonl", jsonl(events)))])
    assert ingested.exit_code == 0, ingested.output
    assert CliRunner().invoke(main, ["snapshot"]).exit_code == 0


def test_a_fresh_home_is_ready_with_two_warnings_and_nothing_created(home: Path) -> None:
    result = run()
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert found["prices"].startswith("warn  prices     the deployment map is empty")
    assert found["snapshots"].startswith("warn  snapshots") and "no snapshot committed yet" in found["snapshots"]
    assert "not created yet (the first ingest creates it)" in found["ledger"]
    assert found["centers"] == "ok    centers    no live spend counted yet"
    assert result.output.strip().endswith("7 ok, 2 warning(s), 0 failed")
    assert not (home / "ledger.sqlite3").exists() and not (home / "counters.sqlite3").exists()
    assert [p.name for p in (home / "doctor").iterdir()] == ["probe.txt"]  # the store's write probe
    assert run("--strict").exit_code == 1


def test_a_home_with_priced_events_passes_strict(home: Path, write_file: WriteFile) -> None:
    ready_home(home, write_file)
    result = run("--strict")
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert "prices all 2 deployment(s) of the map on" in found["prices"]
    assert "(1 priced by the model their events name)" in found["prices"]
    assert found["ledger"].endswith("ledger.sqlite3: 3 events; wrote and read a probe item")
    assert found["counters"].endswith(f"counted in {datetime.now(UTC):%Y-%m}; wrote and read a probe key")
    assert "manifest 1, 0.0 h old" in found["snapshots"]
    assert found["centers"] == f"ok    centers    no live spend of {datetime.now(UTC):%Y-%m} is charged to `unassigned`"
    assert result.output.strip().endswith("9 ok, 0 warning(s), 0 failed")


def test_live_spend_charged_to_unassigned_is_a_warning_naming_the_subscriptions(home: Path,
                                                                               write_file: WriteFile) -> None:
    """This month's events of subscriptions the cost-center map does not know (and that sent no
    costCenter) are found by `doctor` while the month runs, with their live spend."""
    ready_home(home, write_file)
    (home / "cost-centers.csv").write_text("subscription_id,cost_center,effective_from,effective_to\n"
                                           "sub-mapped,CC-M,2026-01-01,\n")
    now = datetime.now(UTC).replace(microsecond=0)  # this month's, as the doctor's month is
    events = [event(eventId=f"live-{n}", subscriptionId=subscription, deployment="dep-4o", model=None,
                    usage=usage(1_000_000, 0), timestamp=now.isoformat(), **extra)  # 2.50 USD each (gpt-4o input)
              for n, (subscription, extra) in enumerate([("sub-mapped", {}), ("sub-new", {}), ("sub-old", {}),
                                                          ("sub-sent", {"costCenter": "CC-S"})])]
    assert CliRunner().invoke(main, ["ingest", str(write_file("live.jsonl", jsonl(events)))]).exit_code == 0
    result = run("--strict")
    assert result.exit_code == 1, result.output  # a warning, so --strict fails
    found = lines(result)
    assert found["centers"] == (f"warn  centers    5.00 USD of {now:%Y-%m}'s live spend is charged to `unassigned`; "
                                f"subscription(s) of {now:%Y-%m} with no cost center in the map on {now.date()}: "
                                "sub-new, sub-old, sub-sent")
    assert found["centers fix"].startswith("map them in the cost-center file (CHARGEBACK_COST_CENTERS)")


def test_an_unpriced_deployment_fails_with_its_name_and_the_fix(home: Path, write_file: WriteFile) -> None:
    ready_home(home, write_file)
    (home / "deployments.csv").write_text(PRICED + "dep-new,gpt-9,global,\n")
    result = run()
    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["prices"].startswith("FAIL  prices     1 of 3 deployment(s) have no price on ")
    assert found["prices"].endswith(": dep-new (gpt-9, global)")
    assert found["prices fix"].startswith("add their prices to the catalog")


def test_a_price_that_ends_mid_month_is_named_from_its_last_day(home: Path, reference_files: ReferenceFiles,
                                                               write_file: WriteFile) -> None:
    # `home`: the doctor's probes write under $CHARGEBACK_HOME, never into the working directory
    reference = load_reference(write_file("ends.csv", CATALOG), reference_files.deployments,
                               reference_files.cost_centers)
    check = check_coverage(reference, date(2026, 10, 1), date(2026, 10, 31))
    assert check.status is Status.FAIL
    assert check.detail == ("2 of 4 deployment(s) have no price from 2026-10-01 to 2026-10-31: dep-alpha "
                            "(m-alpha, global, from 2026-10-16), dep-noprice (m-gamma, global)")
    september = check_coverage(reference, date(2026, 9, 1), date(2026, 9, 30))
    assert september.detail.endswith("no price from 2026-09-01 to 2026-09-30: dep-noprice (m-gamma, global)")
    # the --month option checks the same way, from the CLI
    assert "dep-alpha (m-alpha, global, from 2026-10-16)" in lines(run(
        "--month", "2026-10", env={"CHARGEBACK_PRICES": str(write_file("ends.csv", CATALOG)),
                                   "CHARGEBACK_DEPLOYMENTS": str(reference_files.deployments)}))["prices"]


def test_a_bad_setting_is_the_only_check_and_exit_1(home: Path) -> None:
    result = run(env={"CHARGEBACK_LLM_LOG_STALE_HOURS": "soon"})
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "FAIL  settings   CHARGEBACK_LLM_LOG_STALE_HOURS 'soon': expected a number of hours above 0",
        "                 fix: fix the variable, or unset it to take the default",
        "0 ok, 0 warning(s), 1 failed"]


def test_a_missing_reference_file_and_a_bad_budgets_file_are_named(home: Path, write_file: WriteFile) -> None:
    budgets = write_file("budgets.csv", "scope,key,monthly\nteam,x,lots\n")
    result = run(env={"CHARGEBACK_PRICES": str(home / "nowhere.csv"), "CHARGEBACK_BUDGETS": str(budgets)})
    assert result.exit_code == 1
    found = lines(result)
    assert found["prices"] == f"FAIL  prices     {home / 'nowhere.csv'}: no such file"
    assert found["budgets"].startswith(f"FAIL  budgets    {budgets}")
    assert found["store"].startswith("ok")  # the other checks still run


def test_an_unreachable_redis_alone_exits_4(home: Path, write_file: WriteFile) -> None:
    ready_home(home, write_file)
    result = run(env={"CHARGEBACK_COUNTERS": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.exit_code == 4, result.output
    found = lines(result)
    assert "Redis is unavailable (ConnectionError" in found["counters"]
    assert found["counters fix"].startswith("is it running, and reachable from here")


def test_a_redis_identity_that_may_only_read_fails_with_exit_1(home: Path, write_file: WriteFile,
                                                                redis_url: str) -> None:
    ready_home(home, write_file)
    user, password = f"reader-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with redis.Redis.from_url(redis_url) as admin:
        admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                          commands=["+@read", "+@connection", "-@write"])
        try:
            result = run(env={"CHARGEBACK_COUNTERS": redis_url.replace("redis://", f"redis://{user}:{password}@")})
        finally:
            admin.acl_deluser(user)
    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["counters"].startswith("FAIL  counters   redis://")
    assert "Redis refused a command (" in found["counters"] and "no permissions to run the 'set' command" \
        in found["counters"]
    assert "assign the identity an access policy that may write" in found["counters"]
    assert password not in result.output
    assert found["ledger"].startswith("ok")


def test_an_old_snapshot_and_silent_llm_logs_warn(home: Path, write_file: WriteFile) -> None:
    ready_home(home, write_file)
    snapshots = LocalObjectStore(home / "snapshots")
    created = manifests(snapshots)[-1].created
    assert check_snapshots(snapshots, created + timedelta(minutes=59)).status is Status.OK
    old = check_snapshots(snapshots, created + timedelta(hours=3))
    assert old.status is Status.WARN and old.detail.endswith("manifest 1, 3.0 h old")
    assert snapshots.delete(rolled_up_note_key())  # as a store begun before rollups and not yet backfilled
    unrolled = check_snapshots(snapshots, created + timedelta(minutes=59))
    assert unrolled.status is Status.WARN and unrolled.detail.endswith("files committed before rollups may have "
                                                                       "none (reports read their events: the same "
                                                                       "numbers, slower)")
    assert unrolled.fix.startswith("run `chargeback snapshot --rollups`")
    now = datetime(2026, 10, 5, 12, tzinfo=UTC)
    silent = StreamStatus(now, timedelta(hours=6), pending=40, recent_streams=12,
                          last_record=now - timedelta(hours=9))
    check = check_llm_logs(silent)
    assert check.status is Status.WARN
    assert check.detail == "40 streamed request(s) of the last 24 h waiting; newest record 2026-10-05 03:00 UTC"
    assert "APIM diagnostic setting" in check.fix
    assert check_llm_logs(StreamStatus(now, timedelta(hours=6), recent_streams=12,
                                       last_record=now - timedelta(hours=1))).status is Status.OK


@pytest.mark.parametrize("month", ["2026-13", "October"])
def test_a_bad_month_is_a_one_line_error(home: Path, month: str) -> None:
    result = run("--month", month)
    assert result.exit_code == 1 and result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
