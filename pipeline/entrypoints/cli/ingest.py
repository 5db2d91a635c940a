"""`chargeback ingest FILES`: usage events into the ledger and the live counters."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pipeline.entrypoints.cli.options import console, pipeline_of, user_errors
from pipeline.settings import Settings


@click.command("ingest")
@click.argument("files", nargs=-1, required=True)
@user_errors
def ingest_command(files: tuple[str, ...]) -> None:
    """Ingest usage events from JSON-lines FILES (`-` for stdin) into the ledger and counters.

    Example: chargeback ingest events-2026-10.jsonl
    """
    from pipeline.entrypoints.cli.output import show_ingest
    from pipeline.inputs.event_files import json_lines
    from pipeline.stages.ingest import IngestResult, ingest

    for name in files:
        if name != "-" and not Path(name).is_file():
            raise click.ClickException(f"{name}: no such file")
    with pipeline_of(Settings.from_env()) as p:
        total = IngestResult()
        started = time.perf_counter()
        for name in files:
            total.add(ingest(json_lines(name), p.ledger, p.counters, p.dead_letters, p.pricer))
        total.seconds = time.perf_counter() - started
    show_ingest(console, total)
