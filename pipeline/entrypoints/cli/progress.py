"""A running count on standard error while a long ingest or replay works: on a terminal only,
gone when it ends (scripts and logs see only the summary)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from pipeline.stages.ingest import IngestResult

Advance = Callable[[str], Callable[["IngestResult"], None] | None]


@contextmanager
def batch_progress(console: Console) -> Iterator[Advance]:
    """`advance(name)` gives the `progress` callback of one input's ingest (None when the
    console is not a terminal): each batch adds its events to the count shown for `name`."""
    if not console.is_terminal:
        yield lambda name: None
        return
    from rich.live import Live  # here: a terminal only
    from rich.spinner import Spinner

    started, received = time.perf_counter(), 0
    spinner = Spinner("dots", text="starting")
    # What the command prints meanwhile goes above the count when standard output is this
    # terminal too, and straight to its file or pipe otherwise.
    with Live(spinner, console=console, transient=True, redirect_stdout=sys.stdout.isatty(),
              redirect_stderr=False):
        def advance(name: str) -> Callable[[IngestResult], None]:
            def batch(result: IngestResult) -> None:
                nonlocal received
                received += result.received
                rate = received / max(time.perf_counter() - started, 1e-9)
                spinner.update(text=f"{name}: {received:,} events read ({rate:,.0f} events/s)")
            return batch
        yield advance
