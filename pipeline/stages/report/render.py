"""The report's files as bytes: `chargeback-<label>.csv` with its `-unpriced.csv` and
`-daily.csv` companions, `.parquet`, and on request the FOCUS export and the HTML page."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipeline.lake.csv_files import csv_table_bytes
from pipeline.stages.report.daily import daily_csv
from pipeline.stages.report.focus import FocusContext
from pipeline.stages.report.focus_files import render_focus
from pipeline.stages.report.model import (
    BOOLEAN_COLUMNS,
    DEFAULT_FORMATS,
    REPORT_COLUMNS,
    REPORT_SCHEMA,
    UNPRICED_COLUMNS,
    Report,
    UnpricedRow,
    check_formats,
    csv_cells,
)
from pipeline.stages.report.restate import stem as file_stem


def render_report(report: Report, formats: Iterable[str] = DEFAULT_FORMATS,
                  focus: FocusContext | None = None) -> dict[str, bytes]:
    """The report's files as {file name: bytes}: `chargeback-<label>.csv` with its `-unpriced.csv`
    and `-daily.csv` companions, and `chargeback-<label>.parquet`, for the formats asked; the
    format `focus` adds the FOCUS 1.3 CSV and Parquet (a month's Parquet in the FinOps hubs
    layout) for the billing account `focus` names, `focus-1.2` the FOCUS 1.2 files of earlier
    releases (next to the CSV, never in the hubs layout), `html` the HTML report. The label is the
    month (`2026-10`) or the range (`2026-10-05_2026-10-20`)."""
    return dict(report_files(report, formats, focus))


def report_files(report: Report, formats: Iterable[str] = DEFAULT_FORMATS,
                 focus: FocusContext | None = None,
                 daily: Callable[[], bytes] | None = None) -> Iterator[tuple[str, bytes]]:
    """`render_report`'s files one at a time, in its order (the hubs manifest last), each format's
    made when the one before has been taken: a caller that writes each file before asking for the
    next holds one format's bytes at a time (a 5,000-subscription month's FOCUS CSVs are 356 and
    330 MB). `daily`: what gives the `-daily.csv` bytes, when the caller began making them
    (pipeline.stages.report.daily.DailyAhead); else they are made here."""
    wanted = check_formats(formats)
    stem = file_stem(report.label)
    if {"csv", "parquet"} & set(wanted):
        monthly = csv_table_bytes(REPORT_COLUMNS, map(csv_cells, report.rows))
        if "csv" in wanted:
            yield f"{stem}.csv", monthly
            yield f"{stem}-unpriced.csv", csv_table_bytes(UNPRICED_COLUMNS, map(_unpriced_cells, report.unpriced))
        # Made before the -daily.csv is waited for, which a caller may be making meanwhile
        # (Arrow reads the CSV and writes the Parquet mostly without the GIL); written after it.
        parquet = _parquet(monthly) if "parquet" in wanted else None
        if "csv" in wanted:
            yield f"{stem}-daily.csv", daily() if daily is not None else daily_csv(report)
        if parquet is not None:
            yield f"{stem}.parquet", parquet
    if "focus-1.2" in wanted:
        yield from render_focus(report, focus, version="1.2").items()
    if "focus" in wanted:  # after focus-1.2: the hubs manifest comes last
        yield from render_focus(report, focus).items()
    if "html" in wanted:
        from pipeline.stages.report.html import render_html  # here: the CSV and Parquet do not need it

        yield f"{stem}.html", render_html(report)


def _parquet(monthly_csv: bytes) -> bytes:
    """The report's rows as Parquet (REPORT_SCHEMA), read back from their CSV text: the same
    values (the amounts are exact decimal text), and Arrow's CSV reader builds the columns without
    the pandas import (~0.2 s) that building them from Python objects costs pyarrow once per process."""
    options = pa_csv.ConvertOptions(column_types=REPORT_SCHEMA, strings_can_be_null=False,
                                    true_values=["true"], false_values=["false"])
    table = pa_csv.read_csv(pa.py_buffer(monthly_csv), parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                            convert_options=options)
    sink = pa.BufferOutputStream()
    # The reader gave every column its schema type: no cast, which would load pyarrow.compute (40 ms).
    pq.write_table(table.select(REPORT_SCHEMA.names), sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


_UNPRICED_CELLS = operator.attrgetter(*UNPRICED_COLUMNS)
_UNPRICED_BOOLEANS = tuple(UNPRICED_COLUMNS.index(column) for column in BOOLEAN_COLUMNS)


def _unpriced_cells(row: UnpricedRow) -> list[object]:
    """The unpriced row's CSV cells in UNPRICED_COLUMNS order."""
    cells: list[object] = list(_UNPRICED_CELLS(row))
    for at in _UNPRICED_BOOLEANS:
        cells[at] = "true" if cells[at] else "false"
    return cells

