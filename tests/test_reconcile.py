"""Reconcile: counters rebuilt from the ledger, on the embedded counters and on real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from pipeline.app import Pipeline, open_pipeline
from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.entrypoints.cli import main
from pipeline.inputs.event_files import json_lines
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest
from pipeline.stages.reconcile import reconcile
from tests.conftest import SETTINGS_VARIABLES
from tests.factories import event, jsonl, line, usage

DEPLOYMENTS = "deployment,model,deployment_type,region\nchat-gpt4o,gpt-4o,global,\n"
BUDGETS = "scope,key,monthly_budget,currency\nsubscription,sub-a,0.01,USD\n"


def _events() -> list[dict[str, object]]:
    bodies = [event(eventId=f"r-{n:03d}", subscriptionId=f"sub-{'abc'[n % 3]}", deployment="chat-gpt4o",
                    timestamp=f"2026-10-{1 + n % 30:02d}T{n % 24:02d}:00:00Z", usage=usage(1000 + n, 100 + n % 9))
              for n in range(120)]
    bodies.append(event(eventId="r-error", statusCode=500, usage=None, usageSource="none",
                        timestamp="2026-10-03T01:00:00Z"))
    bodies.append(event(eventId="r-november", timestamp="2026-11-02T01:00:00Z"))  # another month: untouched
    return bodies


@pytest.fixture(params=["sqlite", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    for variable in SETTINGS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / "deployments.csv").write_text(DEPLOYMENTS)
    (home / "budgets.csv").write_text(BUDGETS)
    monkeypatch.setenv("CHARGEBACK_HOME", str(home))
    database = ""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        database = url.rsplit("/", 1)[0] + "/9"
        redis.Redis.from_url(database).flushdb()
        monkeypatch.setenv("CHARGEBACK_COUNTERS", database)
    source = tmp_path / "events.jsonl"
    source.write_bytes(jsonl(_events()))
    opened = open_pipeline(Settings.from_env())
    ingest(json_lines(str(source)), opened.ledger, opened.counters, opened.dead_letters, opened.pricer)
    opened.close()
    yield Settings.from_env()
    if database:
        redis.Redis.from_url(database).flushdb()


@pytest.fixture
def opened(settings: Settings) -> Iterator[Pipeline]:
    pipeline = open_pipeline(settings)
    yield pipeline
    pipeline.close()


def test_counters_that_agree_with_the_ledger_show_no_drift(opened: Pipeline) -> None:
    result = reconcile(opened.ledger, opened.counters, opened.pricer, "2026-10")
    assert (result.events, result.drift, result.applied) == (121, [], False)


def test_lost_and_doubled_counts_are_found_and_rebuilt_exactly(opened: Pipeline) -> None:
    before = opened.counters.month_to_date("2026-10")
    hours_before = opened.counters.hourly("sub-a", "2026-10")
    spend_before = opened.counters.cost_center_spend("2026-10")
    alerts_before = opened.counters.alerts("2026-10")
    assert [a.threshold for a in alerts_before] == [50, 80, 100]
    # Lose the month, then count three sub-a events twice (their marks forgotten): drift both ways.
    opened.counters.clear_month("2026-10")
    doubled = [e for e in _events() if e["eventId"] in ("r-000", "r-003", "r-006")]
    decoded = decode_batch([RawMessage(line(body), "test", "1") for body in doubled]).events
    for _ in range(2):
        opened.counters.forget([e.event_id for e in decoded])
        assert opened.counters.add(decoded, opened.pricer.charges(decoded)).new == 3

    found = reconcile(opened.ledger, opened.counters, opened.pricer, "2026-10")
    by_key = {(d.key, d.measure): (d.counted, d.expected) for d in found.drift}
    expected_a = next(row for row in before if row.subscription_id == "sub-a")
    assert by_key[("subscription sub-a", "requests")] == (6, expected_a.requests)
    assert by_key[("subscription sub-b", "requests")] == (0, 40)
    assert by_key[("subscription sub-a", "prompt_tokens")] == (2 * (1000 + 1003 + 1006), expected_a.prompt_tokens)
    assert not found.applied and opened.counters.month_to_date("2026-10") != before

    fixed = reconcile(opened.ledger, opened.counters, opened.pricer, "2026-10", apply=True)
    assert fixed.applied and fixed.drift_after == []
    assert opened.counters.month_to_date("2026-10") == before
    assert opened.counters.hourly("sub-a", "2026-10") == hours_before
    assert opened.counters.cost_center_spend("2026-10") == spend_before
    assert opened.counters.alerts("2026-10") == alerts_before  # raised once, not again
    assert reconcile(opened.ledger, opened.counters, opened.pricer, "2026-10").drift == []
    november = opened.counters.month_to_date("2026-11")
    assert [(row.subscription_id, row.requests) for row in november] == [("sub-a", 1)]


def test_a_redelivery_after_the_rebuild_is_still_a_duplicate(opened: Pipeline, tmp_path: Path) -> None:
    opened.counters.clear_month("2026-10")
    reconcile(opened.ledger, opened.counters, opened.pricer, "2026-10", apply=True)
    before = opened.counters.month_to_date("2026-10")
    again = ingest(json_lines(str(tmp_path / "events.jsonl")), opened.ledger, opened.counters, opened.dead_letters,
                   opened.pricer)
    assert (again.ingested, again.duplicates, again.counted) == (0, 122, 0)
    assert opened.counters.month_to_date("2026-10") == before


def test_cli_rebuilds_the_counters_after_a_flush(settings: Settings, opened: Pipeline) -> None:
    before = opened.counters.month_to_date("2026-10")
    if settings.counters.startswith("redis://"):
        redis.Redis.from_url(settings.counters).flushdb()  # what `redis-cli FLUSHALL` does to our keys
    else:
        opened.counters.clear_month("2026-10")
    runner = CliRunner()
    found = runner.invoke(main, ["reconcile", "--month", "2026-10"])
    assert found.exit_code == 3, found.output
    assert "121 ledger events" in found.output and "subscription sub-a" in found.output
    fixed = runner.invoke(main, ["reconcile", "--month", "2026-10", "--apply"])
    assert fixed.exit_code == 0, fixed.output
    assert "drift now: 0" in fixed.output
    assert opened.counters.month_to_date("2026-10") == before
    clean = runner.invoke(main, ["reconcile", "--month", "2026-10"])
    assert clean.exit_code == 0 and "0 counter(s) drifted" in clean.output
