"""Ingest stage on the real SQLite ledger and counters and the dead-letter files; live spend
priced with the test catalog of conftest (open_pipeline(settings, reference)) and budgets read
from budgets.csv under the home."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.app import Pipeline, open_pipeline
from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.domain.live import BudgetAlert, BudgetScope
from pipeline.inputs.event_files import json_lines
from pipeline.lake.dead_letters import raw_body
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest
from tests.conftest import Feed, ReferenceFiles, WriteFile
from tests.factories import event, jsonl, line, usage

MEASURES = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")


def traffic() -> list[bytes]:
    """17 valid, distinct events over two subscriptions, three deployments, two months and
    several hours; some without usage, some with cached and reasoning tokens."""
    bodies = []
    for n in range(17):
        bodies.append(event(
            subscriptionId=("sub-a", "sub-b")[n % 2],
            deployment=("dep-x", "dep-y", "dep-z")[n % 3],
            timestamp=f"2026-{9 + n % 2:02d}-{10 + n % 4:02d}T{n % 5:02d}:{n:02d}:00Z",
            usage=None if n % 6 == 5 else usage(100 * n + 7, 10 * n + 3, cached=n, reasoning=n % 3),
            usageSource="none" if n % 6 == 5 else "response",
        ))
    return [line(body) for body in bodies]


def ledger_rows(pipeline: Pipeline) -> list[dict[str, Any]]:
    changes = pipeline.ledger.changes(None, 100_000)
    return changes.table.to_pylist()  # type: ignore[no-any-return]


def ledger_sums(pipeline: Pipeline, hourly: bool) -> dict[tuple[str, ...], list[int]]:
    """Requests and token sums straight from the ledger rows."""
    sums: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(MEASURES))
    for row in ledger_rows(pipeline):
        when = row["timestamp"].strftime("%Y-%m-%dT%H" if hourly else "%Y-%m")
        key = (str(row["subscription_id"]), str(row["deployment"]), when) if hourly else (
            str(row["subscription_id"]), when)
        total = sums[key]
        total[0] += 1
        for index, name in enumerate(MEASURES[1:], start=1):
            total[index] += row[name] or 0
    return dict(sums)


def counter_sums(pipeline: Pipeline, hourly: bool) -> dict[tuple[str, ...], list[int]]:
    if not hourly:
        return {(row.subscription_id, row.month): [getattr(row, m) for m in MEASURES]
                for month in ("2026-09", "2026-10") for row in pipeline.counters.month_to_date(month)}
    rows = [row for subscription in ("sub-a", "sub-b", "sub-c") for row in pipeline.counters.hourly(subscription)]
    return {(row.subscription_id, row.deployment, row.hour): [getattr(row, m) for m in MEASURES] for row in rows}


def assert_counters_match_ledger(pipeline: Pipeline) -> None:
    assert counter_sums(pipeline, hourly=False) == ledger_sums(pipeline, hourly=False)
    assert counter_sums(pipeline, hourly=True) == ledger_sums(pipeline, hourly=True)


def test_same_file_twice_changes_nothing(pipeline: Pipeline, feed: Feed) -> None:
    data = b"".join(body + b"\n" for body in traffic())
    first = feed(data)
    assert (first.received, first.ingested, first.duplicates, first.counted) == (17, 17, 0, 17)
    monthly, hourly = counter_sums(pipeline, False), counter_sums(pipeline, True)
    second = feed(data)
    assert (second.received, second.ingested, second.duplicates, second.dead_lettered, second.counted) == (
        17, 0, 17, 0, 0)
    assert pipeline.ledger.count() == 17
    assert counter_sums(pipeline, False) == monthly
    assert counter_sums(pipeline, True) == hourly
    assert_counters_match_ledger(pipeline)


def test_counters_equal_ledger_sums(pipeline: Pipeline, feed: Feed) -> None:
    feed(b"".join(body + b"\n" for body in traffic()))
    monthly = counter_sums(pipeline, hourly=False)
    # 9 events of sub-a: n = 0, 2, ..., 16; those with n % 2 == 0 are September (9 + n % 2 = 9).
    assert monthly[("sub-a", "2026-09")][0] == 9
    assert monthly[("sub-b", "2026-10")][0] == 8
    # n = 5 and n = 11 carry no usage; the others have prompt 100n + 7.
    assert monthly[("sub-b", "2026-10")][1] == sum(100 * n + 7 for n in range(1, 17, 2) if n % 6 != 5)
    assert_counters_match_ledger(pipeline)
    # dep-x/y/z are not in the deployment map: nothing is priced, every request is unpriced.
    live = [row for month in ("2026-09", "2026-10") for row in pipeline.counters.month_to_date(month)]
    assert [(row.spend_micros, row.unpriced_requests) for row in live] == [(0, row.requests) for row in live]
    assert sum(row.requests for row in live) == 17
    september = pipeline.counters.hourly("sub-a", "2026-09")
    assert september == [row for row in pipeline.counters.hourly("sub-a") if row.hour.startswith("2026-09")]
    assert sum(row.requests for row in september) == 9
    assert pipeline.counters.hourly("sub-a", "2026_09") == pipeline.counters.hourly("sub-a", "2026-09%") == []


def test_duplicates_within_one_batch(pipeline: Pipeline, feed: Feed) -> None:
    lines = traffic()[:5]
    result = feed(b"".join(body + b"\n" for body in [*lines, lines[0], lines[3], lines[0]]))
    assert (result.received, result.ingested, result.duplicates, result.counted) == (8, 5, 3, 5)
    assert pipeline.ledger.count() == 5
    assert_counters_match_ledger(pipeline)


def test_conflicting_duplicate_in_one_batch_counts_what_the_ledger_keeps(pipeline: Pipeline, feed: Feed) -> None:
    # A redelivery whose payload differs: the ledger keeps the first copy (INSERT OR IGNORE),
    # so the counters must count that same copy, as they do when the copies arrive in two batches.
    first = event(eventId="evt-conflict", usage=usage(10, 5))
    second = event(eventId="evt-conflict", usage=usage(100, 50))
    feed(jsonl([first, second]))
    assert pipeline.ledger.count() == 1
    assert [row["prompt_tokens"] for row in ledger_rows(pipeline)] == [10]
    assert_counters_match_ledger(pipeline)


def test_conflicting_duplicate_in_two_batches_keeps_the_first_copy(pipeline: Pipeline, feed: Feed) -> None:
    feed(jsonl([event(eventId="evt-conflict", usage=usage(10, 5))]))
    feed(jsonl([event(eventId="evt-conflict", usage=usage(100, 50))]))
    assert [row["prompt_tokens"] for row in ledger_rows(pipeline)] == [10]
    assert_counters_match_ledger(pipeline)


def test_mixed_file_adds_up_and_dead_letters_keep_the_raw_bytes(pipeline: Pipeline, feed: Feed) -> None:
    good = traffic()[:6]
    bad = {
        3: (b"this is not json", "not-json"),
        5: (b"", "empty"),
        8: (b"\xff\xfe not utf-8 \x00", "not-json"),
        9: (line(event(usage={"promptTokens": 1, "completionTokens": 1, "totalTokens": 5})), "inconsistent-usage"),
        11: (line({k: v for k, v in event().items() if k != "eventId"}), "missing-event-id"),
        12: (line(event(schemaVersion=2)), "unsupported-schema-version"),
        13: (line(event(timestamp="2010-01-01T00:00:00Z")), "timestamp-out-of-range"),
    }
    valid = iter([*good, good[1], good[4]])
    lines = [bad[n][0] if n in bad else next(valid) for n in range(1, 16)]
    assert next(valid, None) is None
    result = feed(b"\n".join(lines) + b"\r\n")
    assert (result.received, result.ingested, result.duplicates, result.dead_lettered) == (15, 6, 2, 7)
    assert result.received == result.ingested + result.duplicates + result.dead_lettered
    assert dict(result.reasons) == {"not-json": 2, "empty": 1, "inconsistent-usage": 1, "missing-event-id": 1,
                                    "unsupported-schema-version": 1, "timestamp-out-of-range": 1}
    assert len(result.dead_letter_objects) == 1
    records = pipeline.dead_letters.read()
    assert sorted((r.position, r.code, raw_body(r)) for r in records) == sorted(
        (f"line {n}", code, body) for n, (body, code) in bad.items())
    assert all(r.source.endswith(".jsonl") and r.reason for r in records)
    assert [r.body_base64 is not None for r in records if r.position == "line 8"] == [True]
    assert pipeline.ledger.count() == 6
    assert_counters_match_ledger(pipeline)


def test_content_fields_are_redacted_in_dead_letters(pipeline: Pipeline, feed: Feed) -> None:
    result = feed(jsonl([event(messages=[{"role": "user", "content": "top secret plan"}])]))
    assert dict(result.reasons) == {"content-field": 1}
    [record] = pipeline.dead_letters.read()
    assert b"top secret plan" not in raw_body(record)
    assert record.position == "line 1"
    assert pipeline.ledger.count() == 0


def test_crash_after_ledger_before_counters(pipeline: Pipeline) -> None:
    messages = [RawMessage(body, "replay", f"line {n}") for n, body in enumerate(traffic(), start=1)]
    decoded = decode_batch(messages)
    pipeline.ledger.append(decoded.events[:11])  # the process died before counters.add ran
    assert counter_sums(pipeline, hourly=False) == {}
    result = ingest(messages, pipeline.ledger, pipeline.counters, pipeline.dead_letters, pipeline.pricer)
    assert (result.ingested, result.duplicates, result.counted) == (6, 11, 17)
    assert pipeline.ledger.count() == 17
    assert_counters_match_ledger(pipeline)
    again = ingest(messages, pipeline.ledger, pipeline.counters, pipeline.dead_letters, pipeline.pricer)
    assert (again.ingested, again.duplicates, again.counted) == (0, 17, 0)
    assert_counters_match_ledger(pipeline)


def test_small_batches_give_the_same_totals(tmp_path: Path) -> None:
    lines = traffic()
    data = [*lines[:10], lines[2], b"garbage", *lines[10:], lines[12], lines[0], b""]
    outcomes = []
    for batch_size in (7, 5_000):
        opened = open_pipeline(Settings(tmp_path / f"home-{batch_size}"))
        try:
            messages = [RawMessage(body, "f", f"line {n}") for n, body in enumerate(data, start=1)]
            result = ingest(messages, opened.ledger, opened.counters, opened.dead_letters, opened.pricer,
                            batch_size=batch_size)
            assert_counters_match_ledger(opened)
            outcomes.append(((result.received, result.ingested, result.duplicates, result.dead_lettered,
                              result.counted), counter_sums(opened, False), counter_sums(opened, True),
                             opened.ledger.count(), len(opened.dead_letters.read())))
        finally:
            opened.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == (22, 17, 3, 2, 17)


def ev(subscription: str, deployment: str, timestamp: str, tokens: dict[str, int] | None,
       **changes: Any) -> dict[str, Any]:
    return event(**{"subscriptionId": subscription, "deployment": deployment, "timestamp": timestamp,
                    "usage": tokens, "model": None, **changes})


# Per 1M tokens (conftest.PRICES_CSV): m-alpha 1.00 in / 0.50 cached / 4.00 out before 2026-10-16,
# 2.00 / 1.00 / 8.00 from then; m-beta 0.10 in (cached too) / 0.40 out. 1 micro = 0.000001 USD.
LIVE = [
    ev("sub-a", "dep-alpha", "2026-10-05T10:00:00Z", usage(1_000_000, 250_000)),  # 1.00 + 1.00 = 2_000_000
    ev("sub-a", "dep-alpha", "2026-10-05T11:00:00Z", usage(3, 0, cached=3)),  # 1.5 micros -> 2
    ev("sub-a", "dep-alpha", "2026-10-05T11:30:00Z", usage(5, 0, cached=5)),  # 2.5 -> 2 (half-even)
    ev("sub-a", "dep-alpha", "2026-10-06T00:00:00Z", None, usageSource="none", statusCode=429),  # unpriced
    ev("sub-a", "dep-unknown", "2026-10-06T00:00:00Z", usage(100, 50)),  # unpriced: not in the map
    ev("sub-b", "dep-beta", "2026-10-10T00:00:00Z", usage(25, 0)),  # 2.5 -> 2
    ev("sub-b", "dep-beta", "2026-10-10T01:00:00Z", usage(15, 1)),  # 1.5 + 0.4 = 1.9 -> 2
    ev("sub-b", "dep-beta", "2026-10-10T02:00:00Z", usage(5, 0)),  # 0.5 -> 0, but priced
    ev("sub-b", "dep-beta", "2026-10-25T00:00:00Z", usage(2_000_000, 1_000_000, cached=1_000_000)),  # 600_000
    ev("sub-c", "dep-alpha", "2026-10-20T00:00:00Z", usage(3, 1, cached=1),  # new price: 2*2 + 1*1 + 1*8 = 13
       costCenter="CC-CALLER"),
    ev("sub-c", "dep-alpha", "2026-10-20T01:00:00Z", None, stream=True, usageSource="stream"),  # pending
    ev("sub-a", "dep-alpha", "2026-10-01T01:00:00+02:00", usage(1_000_000, 0)),  # 2026-09-30 UTC: 1_000_000
]


def live_totals(pipeline: Pipeline, month: str) -> dict[str, tuple[int, int, int]]:
    return {row.subscription_id: (row.requests, row.spend_micros, row.unpriced_requests)
            for row in pipeline.counters.month_to_date(month)}


def test_live_spend_is_the_hand_computed_cost_in_micros(pipeline: Pipeline, feed: Feed) -> None:
    # Rounded per event: sub-b's three small events make 2 + 2 + 0 = 4, where their sum (4.9) would make 5.
    october = {"sub-a": (5, 2_000_004, 2), "sub-b": (4, 600_004, 0), "sub-c": (2, 13, 1)}
    centers = {"CC-A": 2_000_004, "CC-B1": 4, "CC-B2": 600_000, "CC-CALLER": 13, "unassigned": 0}
    first = feed(jsonl(LIVE), batch_size=5)
    assert (first.ingested, first.counted, first.alerts) == (12, 12, [])
    for _ in range(2):
        assert live_totals(pipeline, "2026-10") == october
        assert live_totals(pipeline, "2026-09") == {"sub-a": (1, 1_000_000, 0)}
        assert pipeline.counters.cost_center_spend("2026-10") == centers
        assert pipeline.counters.cost_center_spend("2026-09") == {"CC-A": 1_000_000}
        assert (pipeline.counters.month_to_date("2026-11"), pipeline.counters.cost_center_spend("2026-11")) == ([], {})
        again = feed(jsonl([*LIVE[6:], *LIVE[:6]]))  # redelivered, in another order: nothing changes
        assert (again.ingested, again.duplicates, again.counted) == (0, 12, 0)
    assert_counters_match_ledger(pipeline)


BUDGETS_CSV = """\
scope,key,monthly_budget,currency
subscription,sub-a,10.00,USD
cost-center,CC-B1,1.00,USD
subscription,sub-quiet,5.00,USD
"""


def alert_keys(alerts: list[BudgetAlert]) -> list[tuple[object, ...]]:
    return sorted((a.month, a.scope.value, a.key, a.threshold, a.spend_micros, a.budget_micros, a.currency)
                  for a in alerts)


def test_budget_alerts_are_raised_once_per_threshold(settings: Settings, reference_files: ReferenceFiles,
                                                      write_file: WriteFile) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / "budgets.csv").write_text(BUDGETS_CSV, encoding="utf-8")
    dollars = [4, 1, 2.99, 0.01]  # sub-a on m-alpha (1.00 per 1M input tokens): 40%, 50%, 79.9%, 80%
    first = write_file("first.jsonl", jsonl(
        [ev("sub-a", "dep-alpha", f"2026-10-05T0{n}:00:00Z", usage(round(d * 1_000_000), 0))
         for n, d in enumerate(dollars)]
        + [ev("sub-b", "dep-beta", "2026-10-10T00:00:00Z", usage(20_000_000, 0))]))  # 2.00: 200% of CC-B1
    second = write_file("second.jsonl", jsonl([
        ev("sub-a", "dep-alpha", "2026-10-06T00:00:00Z", usage(2_000_000, 0)),  # 10.00: exactly 100%
        ev("sub-a", "dep-alpha", "2026-09-06T00:00:00Z", usage(6_000_000, 0)),  # 60% of September's budget
    ]))
    sub, center = BudgetScope.SUBSCRIPTION.value, BudgetScope.COST_CENTER.value
    expected_first = [
        ("2026-10", center, "CC-B1", 50, 2_000_000, 1_000_000, "USD"),
        ("2026-10", center, "CC-B1", 80, 2_000_000, 1_000_000, "USD"),
        ("2026-10", center, "CC-B1", 100, 2_000_000, 1_000_000, "USD"),
        ("2026-10", sub, "sub-a", 50, 5_000_000, 10_000_000, "USD"),
        ("2026-10", sub, "sub-a", 80, 8_000_000, 10_000_000, "USD"),
    ]
    expected_second = [("2026-09", sub, "sub-a", 50, 6_000_000, 10_000_000, "USD"),
                       ("2026-10", sub, "sub-a", 100, 10_000_000, 10_000_000, "USD")]
    started = datetime.now(UTC)
    opened = open_pipeline(settings, reference_files.load())
    other = open_pipeline(settings, reference_files.load())  # a second consumer on the same counters
    try:
        def run(p: Pipeline, path: Path) -> list[BudgetAlert]:
            result = ingest(json_lines(str(path)), p.ledger, p.counters, p.dead_letters, p.pricer, batch_size=1)
            return result.alerts

        raised = run(opened, first)
        assert alert_keys(raised) == expected_first
        assert [a.threshold for a in raised if a.key == "sub-a"] == [50, 80]  # in the order they were crossed
        assert run(opened, first) == [] and run(other, first) == []
        assert alert_keys(run(other, second)) == expected_second
        assert run(opened, second) == []
        finished = datetime.now(UTC)
        stored = opened.counters.alerts("2026-10") + opened.counters.alerts("2026-09")
        assert alert_keys(stored) == sorted(expected_first + expected_second)
        assert all(started <= a.raised_at <= finished for a in stored)
        assert opened.counters.alerts("2026-08") == []
        assert live_totals(opened, "2026-10")["sub-a"] == (5, 10_000_000, 0)
    finally:
        opened.close()
        other.close()
