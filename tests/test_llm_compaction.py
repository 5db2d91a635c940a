"""Compaction of the LLM-log usage area (pipeline.stages.llm_compaction): a settled day's files,
one per host batch, rewritten as one, with a note naming them. The oracle is the `llm_usage` view
before it (the deduplicated records), row for row: after the compaction, with the note lost (a
crash between the file and its note), with a file come later, and after the files replaced are
deleted."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import open_store
from pipeline.domain.llm_logs import LlmUsage
from pipeline.entrypoints.cli import main
from pipeline.lake.areas import LLM_USAGE
from pipeline.lake.llm_usage import batch_files, llm_usage_keys
from pipeline.lake.warehouse import open_warehouse
from pipeline.settings import Settings
from pipeline.stages.llm_compaction import compact_llm_days

SETTLED = date(2026, 10, 20)


def record(join_id: str, at: datetime, tokens: int = 120) -> LlmUsage:
    return LlmUsage(join_id=join_id, time=at, prompt_tokens=tokens - 20, completion_tokens=20, total_tokens=tokens,
                    cached_tokens=None, deployment="chat-gpt4o", model="gpt-4o", is_stream=True)


def batches(store: LocalObjectStore, day: date, count: int, tag: str = "r") -> None:
    """`count` host batches of a day, two records each; each batch repeats the last record of
    the batch before (a redelivered log record: the same join id in two files)."""
    start = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    for batch in range(count):
        records = [record(f"{tag}-{day}-{batch}-{n}", start + timedelta(minutes=batch, seconds=n)) for n in range(2)]
        if batch:
            records.append(record(f"{tag}-{day}-{batch - 1}-1", start + timedelta(minutes=batch - 1, seconds=1)))
        for key, data in batch_files(records).items():
            assert store.put(key, data, overwrite=False)


def usage_rows(store: LocalObjectStore, empty: LocalObjectStore) -> list[tuple[Any, ...]]:
    warehouse = open_warehouse(empty, None, (date(2026, 10, 1), date(2026, 11, 1)), llm_usage=store)
    try:
        return warehouse.connection.execute("SELECT * FROM llm_usage ORDER BY join_id").fetchall()
    finally:
        warehouse.connection.close()


def test_a_compacted_day_holds_the_same_usage(tmp_path: Path) -> None:
    store, empty = LocalObjectStore(tmp_path / "llm-usage"), LocalObjectStore(tmp_path / "snapshots")
    batches(store, date(2026, 10, 15), 12)
    batches(store, date(2026, 10, 16), 3)  # too few files
    batches(store, date(2026, 10, 25), 12)  # not settled
    before = usage_rows(store, empty)
    assert len(before) == 12 * 2 + 3 * 2 + 12 * 2  # each repeated record counted once

    done = compact_llm_days(store, SETTLED)

    assert (done.days, done.replaced, done.written, done.unreadable) == (1, 12, 1, None)
    keys = llm_usage_keys(store)
    assert sum(key.startswith("date=2026-10-15/") for key in keys) == 1 and len(keys) == 1 + 3 + 12
    assert usage_rows(store, empty) == before
    assert len(store.list("date=2026-10-15")) == 12 + 2  # the files replaced stay, with the file and its note
    assert compact_llm_days(store, SETTLED).days == 0

    [note] = [key for key in store.list("date=2026-10-15") if key.endswith(".json")]
    batches(store, date(2026, 10, 15), 1, tag="late")  # a file come later is read with the compacted one
    assert len(usage_rows(store, empty)) == len(before) + 2
    store.delete(note)  # as a crash between the file and its note leaves it: every file read, each record once
    assert len(llm_usage_keys(store)) == 12 + 1 + 1 + 3 + 12 and len(usage_rows(store, empty)) == len(before) + 2


def test_the_files_replaced_are_deleted_a_week_later(tmp_path: Path) -> None:
    store, empty = LocalObjectStore(tmp_path / "llm-usage"), LocalObjectStore(tmp_path / "snapshots")
    batches(store, date(2026, 10, 15), 10)
    before = usage_rows(store, empty)
    compacted = datetime.now(UTC)
    assert compact_llm_days(store, SETTLED, now=compacted).written == 1

    assert compact_llm_days(store, SETTLED, now=compacted + timedelta(days=6)).deleted == 0
    assert compact_llm_days(store, SETTLED, now=compacted + timedelta(days=8)).deleted == 10
    assert [key.rsplit("/", 1)[1].split("-")[0] for key in store.list("")] == ["compact", "compact"]
    assert usage_rows(store, empty) == before


def test_a_day_with_a_file_it_cannot_read_is_left_as_it_is(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "llm-usage")
    batches(store, date(2026, 10, 15), 10)
    store.put(store.list("")[3], b"not parquet", overwrite=True)
    done = compact_llm_days(store, SETTLED)
    assert (done.days, done.unreadable) == (0, ["2026-10-15"]) and len(store.list("")) == 10


def test_a_plain_snapshot_compacts_the_llm_usage_of_the_last_settled_days(home: Path) -> None:
    store = open_store(Settings.from_env(), LLM_USAGE)
    assert isinstance(store, LocalObjectStore)
    day = datetime.now(UTC).date() - timedelta(days=3)
    batches(store, day, 11)
    result = CliRunner().invoke(main, ["snapshot"])
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()) == ("snapshot: nothing new llm usage: 1 settled day(s): 11 file(s) "
                                               "rewritten as 1")
    assert len(llm_usage_keys(store)) == 1


def test_the_snapshot_timer_compacts_the_llm_usage(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.entrypoints.functions import timers

    store = open_store(Settings.from_env(), LLM_USAGE)
    assert isinstance(store, LocalObjectStore)
    batches(store, date(2026, 10, 15), 10)
    caplog.set_level(logging.INFO)
    done = timers.compact_llm_usage(Settings.from_env(), datetime(2026, 10, 20, 12, tzinfo=UTC))
    assert (done.days, done.replaced, done.written) == (1, 10, 1)
    assert "llm usage: 1 settled day(s), 10 file(s) rewritten as 1" in caplog.text
