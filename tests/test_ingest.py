"""Ingest stage on the real SQLite ledger and counters and the dead-letter files."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.adapters.dead_letter_files import raw_body
from pipeline.bootstrap import Pipeline, open_pipeline
from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest
from tests.conftest import Feed
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
    batches = list(pipeline.ledger.read(0, pipeline.ledger.head(), 1000))
    return pa.Table.from_batches(batches).to_pylist() if batches else []


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
    rows: list[dict[str, Any]] = []
    if hourly:
        for subscription in ("sub-a", "sub-b"):
            rows += pipeline.counters.hourly(subscription)
    else:
        for month in ("2026-09", "2026-10"):
            rows += pipeline.counters.monthly(month)
    names = ("subscription_id", "deployment", "hour") if hourly else ("subscription_id", "month")
    return {tuple(str(row[n]) for n in names): [int(row[m]) for m in MEASURES] for row in rows}


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
    result = ingest(messages, pipeline.ledger, pipeline.counters, pipeline.dead_letters)
    assert (result.ingested, result.duplicates, result.counted) == (6, 11, 17)
    assert pipeline.ledger.count() == 17
    assert_counters_match_ledger(pipeline)
    again = ingest(messages, pipeline.ledger, pipeline.counters, pipeline.dead_letters)
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
            result = ingest(messages, opened.ledger, opened.counters, opened.dead_letters, batch_size=batch_size)
            assert_counters_match_ledger(opened)
            outcomes.append(((result.received, result.ingested, result.duplicates, result.dead_lettered,
                              result.counted), counter_sums(opened, False), counter_sums(opened, True),
                             opened.ledger.count(), len(opened.dead_letters.read())))
        finally:
            opened.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == (22, 17, 3, 2, 17)
