"""Publish a report into an object store: a folder (`chargeback report --out`) or the `reports`
area of Blob Storage (the daily Functions timer). Both get the same bytes (`render_report`).

A closed period written before with other content is restated, never silently replaced: the
previous objects are kept under `history/` and `chargeback-<label>-restatement.csv` lists the
old and new totals per cost center (pipeline.stages.report.restate); the current month's report
is provisional and is replaced in place, each file written as soon as it is made (so that one
format's bytes are held at a time: the daily timer renders every format of the month).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pipeline.domain.periods import Period
from pipeline.ports import ObjectStore
from pipeline.stages.report import restate
from pipeline.stages.report.focus import FocusContext
from pipeline.stages.report.model import DEFAULT_FORMATS, Report, as_period, check_formats
from pipeline.stages.report.render import render_report, report_files
from pipeline.stages.report.restate import Restatement


@dataclass(frozen=True, slots=True)
class Published:
    """What publishing wrote: the keys of the report's files in the store (`store`, its URL), and
    the restatement written first when a closed period's files changed."""

    store: str
    keys: list[str]
    restatement: Restatement | None = None


def is_closed(period: Period | str, today: date | None = None) -> bool:
    """A month is closed once the next one has begun, a range once its last day is over (UTC)."""
    return as_period(period).is_closed(today or datetime.now(UTC).date())


def publish_report(report: Report, store: ObjectStore, formats: Iterable[str] = DEFAULT_FORMATS,
                   today: date | None = None, focus: FocusContext | None = None) -> Published:
    """Write the report's files into the store, each object replaced atomically. The formats
    already there are rewritten too, so that no stale file stays next to the new ones."""
    wanted = check_formats(formats)  # an unknown format fails before the store is read
    current = restate.current_files(store, report.label)
    chosen = set(wanted) | restate.present_formats(current, report.label)
    restatement = None
    if is_closed(report.period, today):  # every new file is compared with the old before any is written
        files = render_report(report, chosen, focus)
        if restate.changed(current, files):
            restatement = restate.restate(store, report.label, current, report.cost_center_totals,
                                          report.explanations)
        made: Iterable[tuple[str, bytes]] = files.items()
    else:  # a provisional report is replaced in place: each file is written as soon as it is made
        made = report_files(report, chosen, focus)
    keys = []
    for key, data in made:
        store.put(key, data, overwrite=True)
        keys.append(key)
    removed_legacy_hubs_file(store, report.label, keys)
    return Published(store.url, keys, restatement)


def removed_legacy_hubs_file(store: ObjectStore, label: str, files: Iterable[str]) -> bool:
    """A month exported before FOCUS 1.3 left `chargeback-YYYY-MM-focus.parquet` (no ingestion id)
    in its hubs folder: once the `{ingestion-id}__` file replaces it, it goes, so that a hub never
    reads the month twice."""
    hubs = [key for key in files if "__" in key.rpartition("/")[2] and key.endswith("-focus.parquet")]
    if not hubs:
        return False
    folder, _, name = hubs[0].rpartition("/")
    return store.delete(f"{folder}/{name.partition('__')[2]}")
