"""Publish a report into an object store: a folder (`chargeback report --out`) or the `reports`
area of Blob Storage (the daily Functions timer). Both get the same bytes (`render_report`).

A closed period written before with other content is restated, never silently replaced: the
previous objects are kept under `history/` and `chargeback-<label>-restatement.csv` lists the
old and new totals per cost center (pipeline.stages.report.restate); the current month's report
is provisional and is replaced in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pipeline.domain.periods import Period
from pipeline.ports import ObjectStore
from pipeline.stages.report import restate
from pipeline.stages.report.focus import FocusContext
from pipeline.stages.report.model import DEFAULT_FORMATS, Report, as_period, check_formats
from pipeline.stages.report.render import report_files
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
                   today: date | None = None, focus: FocusContext | None = None,
                   daily: Callable[[], bytes] | None = None) -> Published:
    """Write the report's files into the store, each object replaced atomically and written as
    soon as it is made (one format's bytes held at a time: the daily timer renders every format).
    The formats already there are rewritten too, so that no stale file stays next to the new ones.
    A closed period's files that are as they were are left alone until one is written: at the
    first that differs from the one there the period is restated (its files kept in history
    first), and that file and every later one are written (the hubs manifest is last).
    `daily`: what gives the `-daily.csv` bytes, when the caller began making them (report_files)."""
    wanted = check_formats(formats)  # an unknown format fails before the store is read
    current = restate.current_files(store, report.label)
    closed = is_closed(report.period, today)
    restatement, writing, keys = None, not closed, []
    for key, data in report_files(report, set(wanted) | restate.present_formats(current, report.label), focus,
                                  daily):
        keys.append(key)
        if closed and key in current:
            if restate.unchanged(store, key, data):
                if not writing:
                    continue
            elif restatement is None:
                restatement = restate.restate(store, report.label, current, report.cost_center_totals,
                                              report.explanations)
        store.put(key, data, overwrite=True)
        writing = True
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
