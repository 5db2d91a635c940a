"""`chargeback ingest FILES`: usage events into the ledger and the live counters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.entrypoints.cli.options import console, notices, pipeline_of, user_errors
from pipeline.entrypoints.cli.progress import batch_progress
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.stages.ingest import IngestResult


@click.command("ingest")
@click.argument("files", nargs=-1, required=True)
@user_errors
def ingest_command(files: tuple[str, ...]) -> None:
    """Ingest usage events from JSON-lines FILES (`-` for stdin) into the ledger and counters.

    A gzip-compressed file (or stdin) is read decompressed, whatever its name.

    Example: chargeback ingest events-2026-10.jsonl
    """
    from pipeline.entrypoints.cli.output import show_ingest
    from pipeline.inputs.event_files import json_lines
    from pipeline.stages.ingest import IngestResult, ingest

    for name in (name for name in files if name != "-"):  # a file, or a pipe: `<(xzcat month.jsonl.xz)`
        if not Path(name).exists():
            raise click.ClickException(f"{name}: no such file")
        if Path(name).is_dir():
            raise click.ClickException(f"{name}: a folder, not a JSON-lines file: name its files ({name}/*.jsonl)")
    settings = Settings.from_env()
    with pipeline_of(settings) as p, batch_progress(notices) as advance:
        total = IngestResult()
        started = time.perf_counter()
        for name in files:
            total.add(ingest(json_lines(name), p.ledger, p.counters, p.dead_letters, p.pricer, ahead=True,
                             progress=advance(name)))
        total.seconds = time.perf_counter() - started
    show_ingest(console, total)
    publish_if_blocked(settings, total)


def publish_if_blocked(settings: Settings, result: IngestResult) -> None:
    """A block budget reached 100% in this ingest: publish the gateway state now."""
    from datetime import UTC, datetime

    from pipeline.app import open_budgets, publish_budgets
    from pipeline.domain.budget_gate import crosses_block

    now = datetime.now(UTC)
    if result.alerts and crosses_block(result.alerts, open_budgets(settings), f"{now:%Y-%m}"):
        published = publish_budgets(settings, now)
        for key in published.written:
            console.print(f"  gateway state: wrote {key}", markup=False)
