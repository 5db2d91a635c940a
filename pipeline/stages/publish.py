"""Publish a report into an object store (the `reports` area: a folder, or Blob Storage).

The bytes are those `write_report` writes (both come from `render_report`), so the CLI's files
and the published objects never differ. Reports are re-derived from the snapshots and the
catalogs at any time, so a newer report replaces the older one in place.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.ports import ObjectStore
from pipeline.stages.report import FORMATS, Report, render_report


def publish_report(report: Report, store: ObjectStore, formats: Iterable[str] = FORMATS) -> list[str]:
    """Write the report's files into the store, replacing earlier versions; returns their keys."""
    files = render_report(report, formats)
    for key, data in files.items():
        store.put(key, data, overwrite=True)
    return list(files)
