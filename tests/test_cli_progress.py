"""The running count of `chargeback ingest` and `replay` (pipeline.entrypoints.cli.progress): on
a terminal only, never in what a script or a log reads."""

from __future__ import annotations

import io

from rich.console import Console

from pipeline.entrypoints.cli.progress import batch_progress
from pipeline.stages.ingest import IngestResult


def test_a_terminal_sees_the_events_counted_batch_by_batch() -> None:
    screen = io.StringIO()
    with batch_progress(Console(file=screen, force_terminal=True, width=100)) as advance:
        batch = advance("month.jsonl")
        assert batch is not None
        batch(IngestResult(received=25_000))
        batch(IngestResult(received=1_234))
        batch = advance("next.jsonl")
        assert batch is not None
        batch(IngestResult(received=10))
    shown = screen.getvalue()
    assert "next.jsonl: 26,244 events read (" in shown and "events/s)" in shown


def test_a_file_or_pipe_gets_no_count() -> None:
    log = io.StringIO()
    with batch_progress(Console(file=log, force_terminal=False)) as advance:
        assert advance("month.jsonl") is None
    assert log.getvalue() == ""
