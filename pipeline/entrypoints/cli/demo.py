"""`chargeback demo`: a month of synthetic APIM traffic through the whole pipeline."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import click

from pipeline.entrypoints.cli.options import console, month_option, pipeline_of, reference_of, user_errors
from pipeline.settings import Settings


@click.command("demo")
@click.option("--events", default=100_000, show_default=True, type=click.IntRange(min=1),
              help="How many events to generate.")
@click.option("--month", default=None, help="Month of the traffic, YYYY-MM (default: last month).")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same events).")
@user_errors
def demo_command(events: int, month: str | None, seed: int) -> None:
    """Generate a month of realistic APIM traffic, then ingest, snapshot and report it.

    Example: chargeback demo --events 100000
    """
    from rich.progress import Progress

    from pipeline.app import report_stores, warehouse_limits
    from pipeline.domain.periods import Period
    from pipeline.entrypoints.cli.output import show_ingest, show_snapshot
    from pipeline.entrypoints.cli.report import FORMATS, write_report
    from pipeline.inputs import synthetic
    from pipeline.inputs.event_files import json_lines
    from pipeline.lake.warehouse import query_errors
    from pipeline.stages.ingest import ingest
    from pipeline.stages.report.build import period_report
    from pipeline.stages.snapshot import snapshot

    settings = Settings.from_env()
    chosen = month_option(month or _last_month())
    started = time.perf_counter()
    _write_if_absent(settings.deployments_csv, synthetic.deployments_csv())
    _write_if_absent(settings.cost_centers_csv, synthetic.cost_centers_csv(chosen))
    _write_if_absent(settings.budgets_csv, synthetic.budgets_csv())
    _write_if_absent(settings.capacity_csv, synthetic.capacity_csv(chosen))
    traffic = settings.home / "demo" / f"traffic-{chosen}.jsonl"
    write_lines(traffic, synthetic.traffic(chosen, events, seed))
    console.print(f"generated {events:,} events of {chosen} in {traffic}")
    with pipeline_of(settings) as p, Progress(console=console, transient=True) as progress:
        task = progress.add_task("ingest", total=events)
        # As `chargeback ingest FILE` reads it: decoded ahead in worker processes.
        result = ingest(json_lines(str(traffic)), p.ledger, p.counters, p.dead_letters, p.pricer, ahead=True,
                        progress=lambda batch: progress.advance(task, batch.received))
        progress.stop()
        show_ingest(console, result)
        show_snapshot(console, snapshot(p.ledger, p.snapshots))
    with query_errors():
        report = period_report(report_stores(settings), reference_of(settings), Period.month(chosen),
                               limits=warehouse_limits(settings))
    write_report(settings, report, settings.reports_dir, FORMATS)
    elapsed = time.perf_counter() - started
    console.print(f"demo done in {elapsed:.1f} s ({events / elapsed:,.0f} events/s end to end). "
                  f"Try: chargeback query \"SELECT cost_center, sum(cost) FROM costs GROUP BY ALL\"")


def _last_month() -> str:
    today = datetime.now(UTC).date()
    return f"{today.year - 1}-12" if today.month == 1 else f"{today.year}-{today.month - 1:02d}"


def write_lines(path: Path, lines: Iterable[bytes], chunk: int = 10_000) -> None:
    """Each line and its end of line, written `chunk` lines at a time: a month of a million
    events is 700 MB of text, never held whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        stream = iter(lines)
        while part := list(islice(stream, chunk)):
            out.write(b"\n".join(part) + b"\n")


def _write_if_absent(path: Path, text: str) -> None:
    if path.exists():
        console.print(f"keeping your {path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    console.print(f"wrote demo map {path}", highlight=False, soft_wrap=True)
