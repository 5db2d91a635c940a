"""Decoding ahead in a second process (pipeline.stages.decode_ahead) changes nothing but where
the decoding runs: the same file ingested with and without it gives the same counts, reasons,
ledger rows, counters and dead letters, batch for batch."""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from pipeline.app import Pipeline, open_pipeline
from pipeline.domain.decode import RawMessage
from pipeline.inputs.event_files import LineBatch, json_lines
from pipeline.lake.dead_letters import dead_letter_messages
from pipeline.settings import Settings
from pipeline.stages import decode_ahead
from pipeline.stages.decode_ahead import DecodeAheadError, Prepared, prepared_batches
from pipeline.stages.ingest import IngestResult, ingest
from tests.conftest import ReferenceFiles
from tests.factories import event, line, usage

MONTH = "2026-10"


def month_file(path: Path) -> Path:
    """A month of events with everything a file can hold: priced and unpriced events on both
    sides of a price change, redeliveries (a later copy with other tokens: the first one wins),
    and lines that are refused for each kind of reason, one of them with CRLF."""
    lines: list[bytes] = []
    for n in range(40):
        lines.append(line(event(
            eventId=f"ahead-{n:03d}", model=None, subscriptionId=("sub-a", "sub-b", "sub-c")[n % 3],
            deployment=("dep-alpha", "dep-beta", "dep-noprice")[n % 3],
            timestamp=f"2026-10-{10 + n % 15:02d}T{n % 24:02d}:15:00Z", usage=usage(1000 + n, 200 + n, n % 7))))
        if n % 9 == 4:
            lines.append(line(event(eventId=f"ahead-{n - 2:03d}", deployment="dep-alpha", usage=usage(1, 1))))
    lines[5:5] = [b"", b"not json at all", line(event(prompt="secret text")),
                  line(event(eventId="ahead-crlf")) + b"\r",
                  b'{"subscriptionId":"sub-z",' + line(event(eventId="twice"))[1:],
                  line(event(eventId="ahead-bigint", futureField=2**70)),
                  line(event(eventId="ahead-unknown", note="x")),
                  line(event(eventId="ahead-total", usage={**usage(10, 5), "totalTokens": 99}))]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def ingested(home: Path, reference: ReferenceFiles, source: Path, ahead: bool) -> tuple[IngestResult, dict[str, Any]]:
    opened: Pipeline = open_pipeline(Settings(home), reference.load())
    try:
        result = ingest(json_lines(str(source)), opened.ledger, opened.counters, opened.dead_letters, opened.pricer,
                        batch_size=4, ahead=ahead)
        table = opened.ledger.changes(None, 10_000).table.drop_columns(["ingested_at"]).to_pylist()
        state = {
            "ledger": table,
            "month": opened.counters.month_to_date(MONTH),
            "cost centers": opened.counters.cost_center_spend(MONTH),
            "hourly": [opened.counters.hourly(sub) for sub in ("sub-a", "sub-b", "sub-c")],
            "dead letters": sorted((m.body, m.source, m.position)
                                   for m in dead_letter_messages(opened.dead_letters.store)),
        }
    finally:
        opened.close()
    return result, state


def test_a_file_decoded_ahead_is_ingested_exactly_as_here(tmp_path: Path, reference_files: ReferenceFiles,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    source = month_file(tmp_path / "month.jsonl")
    here, here_state = ingested(tmp_path / "here", reference_files, source, ahead=False)
    monkeypatch.setattr(decode_ahead, "worth_a_worker", lambda: True)  # even on a machine of one core
    from_worker: list[Prepared] = []
    unshipped = decode_ahead._unshipped

    def counted(shipped: Any) -> Prepared:
        from_worker.append(unshipped(shipped))
        return from_worker[-1]

    monkeypatch.setattr(decode_ahead, "_unshipped", counted)
    ahead, ahead_state = ingested(tmp_path / "ahead", reference_files, source, ahead=True)
    assert len(from_worker) == 12  # 13 batches of 4 lines: the first prepared here while the worker starts
    lines = source.read_bytes().count(b"\n")
    assert (here.received, here.ingested, here.duplicates, here.dead_lettered) == (lines, 43, 4, 5)
    assert (ahead.received, ahead.ingested, ahead.duplicates, ahead.dead_lettered, ahead.counted) == (
        here.received, here.ingested, here.duplicates, here.dead_lettered, here.counted)
    assert ahead.reasons == here.reasons == {"empty": 1, "not-json": 1, "content-field": 1, "duplicate-key": 1,
                                             "inconsistent-usage": 1}
    assert ahead_state == here_state
    rows = {row["event_id"]: row for row in ahead_state["ledger"]}
    assert rows["ahead-002"]["prompt_tokens"] == 1002  # the first copy, not the redelivered 1 token
    assert rows["ahead-crlf"]["source_position"] == "line 9"
    assert rows["ahead-bigint"]["extra"] is not None  # an integer past 64 bits, as text in the Arrow rows
    assert sum(month.requests for month in ahead_state["month"]) == 43
    assert sum(month.spend_micros for month in ahead_state["month"]) > 0 and ahead_state["cost centers"]


def test_one_batch_is_prepared_here_without_a_worker(reference_files: ReferenceFiles) -> None:
    from pipeline.domain.live import LivePricer

    pricer = LivePricer(reference_files.load())
    batch = LineBatch("inline", 7, [line(event(eventId="only", deployment="dep-alpha", model=None)) + b"\n", b"\n"])
    [prepared] = list(prepared_batches([batch], pricer))
    assert isinstance(prepared, Prepared) and prepared.received == 2
    assert [e.origin.position for e in prepared.decoded.events if e.origin] == ["line 7"]
    assert [r.message.position for r in prepared.decoded.rejections] == ["line 8"]
    assert prepared.charges[0].priced and prepared.charges[0].micros == 1_800  # 1000 x 1.00 + 200 x 4.00 per 1M


def test_messages_that_are_not_lines_go_to_the_worker_as_columns(reference_files: ReferenceFiles) -> None:
    from pipeline.domain.live import LivePricer

    pricer = LivePricer(reference_files.load())
    batches = [[RawMessage(line(event(eventId=f"m{n}-{k}", deployment="dep-alpha")), "eventhub", f"seq {k}", "3", k)
                for k in range(3)] for n in range(3)]
    prepared = list(prepared_batches(batches, pricer))
    assert [p.received for p in prepared] == [3, 3, 3]
    origins = [e.origin for p in prepared for e in p.decoded.events]
    assert [(o.partition, o.sequence_number) for o in origins if o] == [("3", k) for _ in range(3) for k in range(3)]


def test_events_for_other_ledgers_come_back_as_objects(tmp_path: Path, reference_files: ReferenceFiles,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Not columnar (a Cosmos DB ledger, Redis counters): the events come back as msgpack, or
    pickled when msgpack cannot hold a value (an integer past 64 bits in an unknown field)."""
    from pipeline.domain.live import LivePricer

    monkeypatch.setattr(decode_ahead, "worth_a_worker", lambda: True)
    batches = [LineBatch("f", 1 + 2 * n, [line(event(eventId=f"o-{n}", deployment="dep-alpha", model=None)) + b"\n",
                                          line(event(eventId=f"big-{n}", futureField=2**70)) + b"\n"])
               for n in range(3)]
    prepared = list(prepared_batches(batches, LivePricer(reference_files.load()), columnar=False))
    assert [p.columns for p in prepared] == [None, None, None]
    events = [e for p in prepared for e in p.decoded.events]
    assert [e.event_id for e in events] == ["o-0", "big-0", "o-1", "big-1", "o-2", "big-2"]
    assert all(e.extra == '{"futureField":1180591620717411303424}' for e in events if e.event_id.startswith("big"))
    assert [c.micros for p in prepared for c in p.charges] == [1_800, 0] * 3  # the second: not a priced deployment


def test_a_worker_that_died_is_one_clear_error() -> None:
    future: Future[Any] = Future()
    future.set_exception(BrokenProcessPool("terminated abruptly"))
    with pytest.raises(DecodeAheadError, match=r"stopped .* ingesting the input again is safe"):
        decode_ahead._result(future)
