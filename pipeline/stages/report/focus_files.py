"""The FOCUS files of a report: the CSV and the Parquet of a FOCUS version (the rows are
pipeline.stages.report.focus's), written a day's table at a time, and a month's hubs manifest."""

from __future__ import annotations

import io

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stages.report.focus import FOCUS_VERSION, SCHEMAS, FocusContext, focus_day_tables, focus_keys
from pipeline.stages.report.focus_csv import csv_body, csv_header
from pipeline.stages.report.model import Report

_CSV_BATCH_ROWS = 16_384


def render_focus(report: Report, context: FocusContext | None = None,
                 version: str = FOCUS_VERSION) -> dict[str, bytes]:
    """{key: bytes} of the FOCUS CSV, the Parquet and, last, a month's hubs manifest."""
    schema = SCHEMAS[version]
    csv_key, parquet_key, manifest_key = focus_keys(report.label, version)
    sink = pa.BufferOutputStream()
    # The CSV grows in one buffer that becomes the file's bytes without a copy (a list of pieces
    # joined at the end held the text twice: a month of 5,000 subscriptions' is 356 MB).
    text = io.BytesIO(csv_header(schema))
    text.seek(0, io.SEEK_END)
    connection = duckdb.connect()
    pending: list[pa.Table] = []  # days whose CSV is still to be made: one DuckDB query per ~16k rows

    def flush() -> None:
        if pending:
            text.write(csv_body(pa.concat_tables(pending), connection))
            pending.clear()

    try:
        with pq.ParquetWriter(sink, schema, compression="zstd") as writer:  # a row group per day
            for table in focus_day_tables(report, context, version):
                writer.write_table(table)
                pending.append(table)
                if sum(map(len, pending)) >= _CSV_BATCH_ROWS:
                    flush()
            flush()
    finally:
        connection.close()
    files = {csv_key: text.getvalue(), parquet_key: sink.getvalue().to_pybytes()}
    if manifest_key is not None:
        files[manifest_key] = b""
    return files
