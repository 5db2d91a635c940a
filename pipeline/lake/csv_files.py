"""The CSV files the pipeline writes (reports, reconciliations): a header, then one line per row,
`\n` line ends, UTF-8."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence


def csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> bytes:
    """The rows (column -> value) under the header `columns`, as CSV bytes."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def csv_table_bytes(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """The rows (cells in the order of `columns`) under the header `columns`, as CSV bytes: what
    `csv_bytes` writes, without a dictionary per row (the daily report has one row per day and key)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def csv_line(cells: Sequence[object]) -> str:
    """The cells as one line of what `csv_table_bytes` writes, without its line end."""
    return csv_lines([cells])[0]


def csv_lines(rows: Iterable[Sequence[object]]) -> list[str]:
    """Each row as one line of what `csv_table_bytes` writes, without its line end: one writer
    for all of them (a line may hold a quoted line break, so they are cut where each row ended)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    ends = []
    for row in rows:
        writer.writerow(row)
        ends.append(text.tell())
    written, start = text.getvalue(), 0
    lines: list[str] = []
    for end in ends:
        lines.append(written[start:end - 1])
        start = end
    return lines
