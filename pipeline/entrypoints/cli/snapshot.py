"""`chargeback snapshot`: the ledger's new events into Parquet snapshots."""

from __future__ import annotations

import click

from pipeline.entrypoints.cli.options import console, pipeline_of, user_errors
from pipeline.settings import Settings


@click.command("snapshot")
@user_errors
def snapshot_command() -> None:
    """Write new ledger events to Parquet snapshots (usage/date=YYYY-MM-DD/*.parquet).

    Example: chargeback snapshot
    """
    from pipeline.entrypoints.cli.output import show_snapshot
    from pipeline.stages.snapshot import snapshot

    with pipeline_of(Settings.from_env()) as p:
        show_snapshot(console, snapshot(p.ledger, p.snapshots))
