"""A batch handed over as Arrow columns (pipeline.lake.event_columns) is written exactly as the
same events handed over as objects: the same Tally, ledger rows, seqs, results, counters and
alerts, with copies within the batch, redeliveries of earlier batches and ids that hold NUL."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.adapters.embedded.counters import SqliteCounters
from pipeline.adapters.embedded.ledger import SqliteLedger
from pipeline.domain.counters import SumRows, Tally
from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import Budget, Budgets, BudgetScope, LiveCharge
from pipeline.lake.event_columns import EventColumns, event_columns, sum_rows
from tests.factories import event, line, usage


def decoded(bodies: list[dict[str, Any]]) -> list[UsageEvent]:
    batch = decode_batch([RawMessage(line(body), "test", f"line {n}") for n, body in enumerate(bodies, 1)])
    assert not batch.rejections
    return batch.events


def charge(n: int) -> LiveCharge:
    """Priced events of two cost centers, and every fifth one unpriced."""
    if n % 5 == 4:
        return LiveCharge(f"cc-{n % 2}", 0, "", False)
    return LiveCharge(f"cc-{n % 2}", 1_000 + n * 37, "USD", True)


def month_edge(count: int, prefix: str = "e") -> list[dict[str, Any]]:
    """Events on both sides of a month's end, in several hours, subscriptions and deployments;
    every sixth without usage (a stream that never reported it)."""
    bodies = []
    for n in range(count):
        hour = ("2026-09-30T22", "2026-09-30T23", "2026-10-01T00", "2026-10-01T01")[n % 4]
        moment = f"{hour}:{n % 60:02d}:59.999999Z"  # the last microsecond of a minute: hours cut exactly
        body = event(eventId=f"{prefix}-{n:04d}", timestamp=moment, subscriptionId=f"sub-{n % 3}",
                     deployment=f"dep-{n % 2}", usage=usage(100 + n, 10 + n, n % 50, n % 7))
        if n % 6 == 5:
            body.update(usage=None, usageSource="stream", stream=True)
        bodies.append(body)
    return bodies


def as_columns(events: list[UsageEvent], charges: list[LiveCharge]) -> EventColumns:
    """Pickled (Arrow IPC inside), as the worker process ships them."""
    shipped = pickle.loads(pickle.dumps(event_columns(events, charges)))
    assert isinstance(shipped, EventColumns)
    return shipped


def sorted_rows(rows: SumRows) -> tuple[list[tuple[Any, ...]], ...]:
    return sorted(rows.hourly), sorted(rows.monthly), sorted(rows.cost_centers)


def test_the_tally_of_columns_is_the_tally_of_the_events() -> None:
    events = decoded(month_edge(120))
    charges = [charge(n) for n in range(len(events))]
    expected = Tally()
    expected.add(zip(events, charges, strict=True))
    columns = as_columns(events, charges)
    assert sorted_rows(sum_rows(columns)) == sorted_rows(expected.rows())
    assert ("sub-2", "2026-09") in expected.monthly and ("cc-1", "2026-10") in expected.cost_centers
    assert expected.monthly[("sub-0", "2026-09")][7] > 0  # unpriced ones are counted apart

    held = {event.event_id for event in events if int(event.event_id[2:]) % 3 == 0}
    subset = Tally()
    subset.add((e, c) for e, c in zip(events, charges, strict=True) if e.event_id not in held)
    assert sorted_rows(sum_rows(columns, columns.without(held))) == sorted_rows(subset.rows())
    every = {event.event_id for event in events}
    assert sorted_rows(sum_rows(columns, columns.without(every))) == ([], [], [])


def test_a_mask_asked_for_again_is_the_mask_of_the_ids_asked_for() -> None:
    events = decoded(month_edge(12))
    columns = as_columns(events, [charge(n) for n in range(len(events))])
    thirds = {event.event_id for event in events if int(event.event_id[2:]) % 3 != 0}
    first = columns.without(thirds)
    assert first is not None and columns.without(set(thirds)) is first  # the ledger's mask, for the counters
    thirds.add(events[0].event_id)  # the caller's set changes: the mask made before does not answer for it
    assert columns.events.filter(columns.without(thirds)).column("event_id").to_pylist() == [
        "e-0003", "e-0006", "e-0009"]
    assert columns.events.filter(columns.without({event.event_id for event in events})).num_rows == 0
    assert columns.without(set()) is None
    assert columns.without({"e-9999"}) is not None  # an id not in the batch: every row, as a mask


def test_copies_within_a_batch_keep_the_first_one() -> None:
    bodies = month_edge(10)
    bodies.insert(3, {**bodies[1], "usage": usage(1, 1)})  # a later copy of e-0001 with other tokens
    events = decoded(bodies)
    columns = as_columns(events, [charge(n) for n in range(len(events))])
    assert (columns.copies, columns.rows) == (11, 10)
    assert columns.events.column("event_id").to_pylist() == [f"e-{n:04d}" for n in range(10)]
    assert columns.events.column("prompt_tokens")[1].as_py() == 101
    # row 3 carries the charge of decoded event 4 (unpriced), not the copy's (event 3, priced)
    assert columns.charges.column("priced").to_pylist()[2:5] == [True, False, True]
    assert columns.months() == {"2026-09", "2026-10"}


def ledger_state(ledger: SqliteLedger) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ledger.changes(None, 10_000).table.drop_columns(["ingested_at"]).to_pylist()
    return rows


@pytest.mark.parametrize("nul", [False, True], ids=["ids-as-json", "an-id-with-nul"])
def test_the_embedded_ledger_and_counters_write_columns_as_they_write_events(tmp_path: Path, nul: bool) -> None:
    first = month_edge(30, "a")
    if nul:
        first[7]["eventId"] = "a-\x00-nul"
    # the second batch: half of it redelivered from the first (other tokens: the first copy wins)
    second = [{**body, "usage": usage(5, 5)} for body in first[::2]] + month_edge(12, "b")
    budgets = Budgets([Budget(BudgetScope.SUBSCRIPTION, "sub-1", 12_000, "USD"),
                       Budget(BudgetScope.COST_CENTER, "cc-0", 9_000, "USD")])
    results: dict[str, list[Any]] = {}
    states: dict[str, Any] = {}
    for way in ("objects", "columns"):
        ledger = SqliteLedger(tmp_path / way / "ledger.sqlite3")
        counters = SqliteCounters(tmp_path / way / "counters.sqlite3", budgets)
        results[way] = []
        for bodies in (first, second, second):  # the last one wholly redelivered
            events = decoded(bodies)
            charges = [charge(n) for n in range(len(events))]
            if way == "objects":
                appended, counted = ledger.append(events), counters.add(events, charges)
            else:
                columns = as_columns(events, charges)
                appended, counted = ledger.append_columns(columns), counters.add_columns(columns)
            results[way].append((appended, counted.new, [(a.scope, a.key, a.month, a.threshold, a.spend_micros)
                                                         for a in counted.alerts]))
        states[way] = (ledger_state(ledger), counters.month_to_date("2026-09"), counters.month_to_date("2026-10"),
                       counters.cost_center_spend("2026-10"), counters.hourly("sub-1"),
                       [(a.scope, a.key, a.month, a.threshold, a.spend_micros) for a in counters.alerts("2026-10")])
        ledger.close()
        counters.close()
    assert results["columns"] == results["objects"]
    assert [(r[0].new, r[0].duplicates, r[1]) for r in results["columns"]] == [(30, 0, 30), (12, 15, 12), (0, 27, 0)]
    assert any(r[2] for r in results["columns"])  # a threshold was crossed, and said once
    assert states["columns"] == states["objects"]
    rows = states["columns"][0]
    assert [row["ledger_seq"] for row in rows] == list(range(1, 43))
    assert rows[2]["prompt_tokens"] == 102  # the first copy of a-0002, not the redelivered 5 tokens
    assert ("a-\x00-nul" in {row["event_id"] for row in rows}) is nul


def test_an_empty_batch_of_columns_writes_nothing(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    columns = event_columns([], [])
    assert (columns.rows, columns.copies) == (0, 0) and isinstance(columns.events, pa.RecordBatch)
    result = ledger.append_columns(columns)
    assert (result.new, result.duplicates, ledger.count()) == (0, 0, 0)
    ledger.close()
