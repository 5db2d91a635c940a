"""`chargeback correct FILE` (record corrections) and `chargeback corrections` (list them).

Corrections are append-only records in the store's `corrections` area, applied by every report
(pipeline.stages.correct, pipeline.domain.corrections). Nothing here rewrites history.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.entrypoints.cli.options import console, user_errors
from pipeline.lake.areas import CORRECTIONS, SNAPSHOTS
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.domain.corrections import Correction
    from pipeline.stages.correct import RecordResult


def who_records(by: str | None, settings: Settings) -> str:
    """`--by`, else the settings' user ($CHARGEBACK_USER, else $USER / $USERNAME); never empty."""
    if by is not None:
        if not by.strip():
            raise click.ClickException("--by is empty: say who records these corrections")
        return by.strip()
    if settings.user and settings.user.strip():
        return settings.user.strip()
    raise click.ClickException("who records these corrections? Give --by NAME or set CHARGEBACK_USER")


@click.command("correct")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--by", default=None, help="Who records them (default: $CHARGEBACK_USER, else $USER / $USERNAME).")
@click.option("--dry-run", is_flag=True, help="Validate the file and show what would be recorded; record nothing.")
@user_errors
def correct_command(file: Path, by: str | None, dry_run: bool) -> None:
    """Record corrections from a YAML or CSV FILE; every report applies them from then on.

    Kinds: void (event_ids, or subscription_id with from/to and an optional deployment),
    reassign (subscription_id, cost_center, from, to), reprice (catalog, from, to, optional
    model). Each needs a reason. The whole file is validated before anything is recorded; a
    correction recorded before is not recorded again. Ledger and snapshots are never changed.

    Example: chargeback correct fixes-2026-10.yaml --by alice
    """
    from pipeline.app import open_store
    from pipeline.inputs.corrections import parse_corrections_file
    from pipeline.stages.correct import record

    settings = Settings.from_env()
    who = who_records(by, settings)
    if not file.is_file():
        raise click.ClickException(f"{file}: no such file")
    at = datetime.now(UTC).replace(microsecond=0)
    parsed = parse_corrections_file(file, who, at)
    store = open_store(settings, CORRECTIONS)
    result = record(store, parsed.corrections, parsed.catalogs, by=who, at=at, source=file.name, dry_run=dry_run)
    show_recorded(result, dry_run, who, at)
    show_months(settings, result.recorded)


def show_recorded(result: RecordResult, dry_run: bool, who: str, at: datetime) -> None:
    if result.recorded:
        where = "would be recorded (dry run, nothing written)" if dry_run else (
            f"recorded as corrections log entry {result.entry}")
        console.print(f"{len(result.recorded)} correction(s) {where}, by {who} at {at:%Y-%m-%d %H:%M:%S} UTC:",
                      markup=False)
        _list(result.recorded)
    if result.already:
        console.print(f"already recorded: {len(result.already)} correction(s), not recorded again:")
        _list(result.already)
    for new, earlier in result.superseded:
        console.print(f"note: {new.id} overrides {earlier.id} ({earlier.describe()}) for the days both cover",
                      markup=False)


def show_months(settings: Settings, corrections: Iterable[Correction]) -> None:
    corrections = list(corrections)
    months = {month for c in corrections for month in c.months()}
    ids = sorted({event_id for c in corrections for event_id in c.event_ids})
    if ids:
        found = _event_months(settings, ids)
        months.update(found.values())
        missing = [event_id for event_id in ids if event_id not in found]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            console.print(f"warning: {len(missing)} event id(s) not found in the snapshots (yet): {shown}",
                          markup=False)
    if not corrections:
        console.print("months affected: none (nothing new)")
    elif months:
        ordered = sorted(months)
        console.print(f"months affected: {', '.join(ordered)}; their next report is restated "
                      f"(chargeback report --month {ordered[0]})")


def _event_months(settings: Settings, ids: list[str]) -> dict[str, str]:
    """eventId -> month of the events found in the committed snapshots."""
    import pyarrow as pa

    from pipeline.app import open_store
    from pipeline.lake.pandas_probe import skip_pandas_probe
    from pipeline.lake.warehouse import open_warehouse

    skip_pandas_probe()  # this process never hands pyarrow a pandas object
    warehouse = open_warehouse(open_store(settings, SNAPSHOTS))
    try:
        warehouse.connection.register("wanted_event_ids", pa.table({"event_id": pa.array(ids, pa.string())}))
        rows = warehouse.connection.execute(
            "SELECT u.event_id, strftime(u.date, '%Y-%m') FROM usage u "
            "JOIN wanted_event_ids w ON u.event_id = w.event_id").fetchall()
    finally:
        warehouse.connection.close()
    return {str(event_id): str(month) for event_id, month in rows}


@click.command("corrections")
@user_errors
def corrections_command() -> None:
    """List the recorded corrections, in the order they were recorded.

    Example: chargeback corrections
    """
    from pipeline.app import open_store
    from pipeline.stages.correct import read_log

    entries = read_log(open_store(Settings.from_env(), CORRECTIONS))
    if not entries:
        console.print("no corrections recorded")
    for entry in entries:
        console.print(f"entry {entry.number}: {entry.source}, by {entry.by} at "
                      f"{entry.recorded_at:%Y-%m-%d %H:%M:%S} UTC", markup=False)
        _list(entry.corrections)


def _list(corrections: Iterable[Correction]) -> None:
    for c in corrections:
        console.print(f"  {c.id} {c.describe()}: {c.reason}", markup=False)
