"""Publish a report into an object store (the `reports` area: a folder, or Blob Storage).

The bytes are those `write_report` writes (both come from `render_report` through
`store_report`), so the CLI's files and the published objects never differ. A month published
before with other content is restated, never silently replaced: the previous objects are kept
under `history/` and `chargeback-YYYY-MM-restatement.csv` lists the old and new totals per cost
center (pipeline.stages.restate).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from pipeline.ports import ObjectStore
from pipeline.stages.report import DEFAULT_FORMATS, Report, store_report


def publish_report(report: Report, store: ObjectStore, formats: Iterable[str] = DEFAULT_FORMATS,
                   today: date | None = None) -> list[str]:
    """Write the report's files into the store; returns their keys (a restatement, if any, is
    in `report.restatement`)."""
    keys = store_report(report, store, formats, today)
    if report.restatement is not None:
        report.restatement.location = f"{store.url}/{report.restatement.key}"
    return keys
