"""The report's files as bytes: `chargeback-<label>.csv` with its `-unpriced.csv` and
`-daily.csv` companions, `.parquet`, and on request the FOCUS export and the HTML page."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake.csv_files import csv_bytes
from pipeline.stages.report.focus import FocusContext, render_focus
from pipeline.stages.report.html import render_html
from pipeline.stages.report.model import (
    AMOUNT_COLUMNS,
    BOOLEAN_COLUMNS,
    DAILY_COLUMNS,
    DEFAULT_FORMATS,
    REPORT_COLUMNS,
    REPORT_SCHEMA,
    UNPRICED_COLUMNS,
    Report,
    ReportRow,
    check_formats,
    exact_text,
)
from pipeline.stages.report.restate import stem as file_stem
from pipeline.stages.report.rows import line_usage, report_rows, with_true_ups


def render_report(report: Report, formats: Iterable[str] = DEFAULT_FORMATS,
                  focus: FocusContext | None = None) -> dict[str, bytes]:
    """The report's files as {file name: bytes}: `chargeback-<label>.csv` with its `-unpriced.csv`
    and `-daily.csv` companions, and `chargeback-<label>.parquet`, for the formats asked; the
    format `focus` adds the FOCUS 1.3 CSV and Parquet (a month's Parquet in the FinOps hubs
    layout) for the billing account `focus` names, `focus-1.2` the FOCUS 1.2 files of earlier
    releases (next to the CSV, never in the hubs layout), `html` the HTML report. The label is the
    month (`2026-10`) or the range (`2026-10-05_2026-10-20`)."""
    wanted = check_formats(formats)
    stem = file_stem(report.label)
    files: dict[str, bytes] = {}
    if "csv" in wanted:
        files[f"{stem}.csv"] = csv_bytes(REPORT_COLUMNS, (_csv_values(row) for row in report.rows))
        files[f"{stem}-unpriced.csv"] = csv_bytes(
            UNPRICED_COLUMNS, (_booleans({c: getattr(row, c) for c in UNPRICED_COLUMNS}) for row in report.unpriced))
        daily = with_true_ups(report_rows(line_usage(report.lines), report.deployment_days, bucket=date.isoformat,
                                          unknown=report.cached_unknown), report.true_ups, date.isoformat)
        files[f"{stem}-daily.csv"] = csv_bytes(DAILY_COLUMNS, (_csv_values(row, first="date") for row in daily))
    if "parquet" in wanted:
        table = pa.Table.from_pylist([row.values() for row in report.rows], schema=REPORT_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        files[f"{stem}.parquet"] = sink.getvalue().to_pybytes()
    if "focus-1.2" in wanted:
        files.update(render_focus(report, focus, version="1.2"))
    if "focus" in wanted:  # after focus-1.2: the hubs manifest comes last
        files.update(render_focus(report, focus))
    if "html" in wanted:
        files[f"{stem}.html"] = render_html(report)
    return files


def _csv_values(row: ReportRow, first: str = "month") -> dict[str, object]:
    """The row's CSV cells, its bucket of days (`month`, or `date` for daily rows) named `first`."""
    values = {**row.values(), **{c: exact_text(getattr(row, c)) for c in AMOUNT_COLUMNS}}
    values[first] = values.pop("month")
    return _booleans(values)


def _booleans(values: dict[str, object]) -> dict[str, object]:
    for column in BOOLEAN_COLUMNS:
        values[column] = "true" if values[column] else "false"
    return values

