"""The CSV files the pipeline writes (reports, reconciliations, query output): a header, then one
line per row, `\n` line ends, UTF-8.

A cell that holds a line break is quoted, a lone `\r` included: the csv module quotes only the
characters of its own line end, so with `\n` it would leave a cost-center name holding a `\r`
bare, and a reader (Excel, pandas, DuckDB) would cut the row in two there. Text without a `\r`
(every row, nearly always) is written by `writerows`, a slice of rows at a time; a slice with one
is written again with a `\r\n` line end, which quotes both, and each row's end cut back to `\n`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import TextIO


def _write_rows(out: TextIO, rows: Iterable[Sequence[object]]) -> None:
    """Write the rows to `out` as CSV lines, each ending in `\n`, a cell with a line break (`\n`
    or `\r`) quoted; a slice of rows at a time (only a slice's text is held twice)."""
    remaining = iter(rows)
    while part := list(islice(remaining, _PART_ROWS)):
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(part)
        written = text.getvalue()
        out.write(written if "\r" not in written else "".join(f"{line}\n" for line in csv_lines(part)))


_PART_ROWS = 8192


def csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> bytes:
    """The rows (column -> value; a column left out is empty) under the header `columns`, as CSV
    bytes. A key that is not a column is a programming error, as for `csv.DictWriter`."""
    known = set(columns)
    cells = []
    for row in rows:
        if not known.issuperset(row):
            raise ValueError(f"row has keys that are not columns: {sorted(set(row) - known)}")
        cells.append([row.get(column, "") for column in columns])
    return csv_table_bytes(columns, cells)


def csv_table_bytes(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """The rows (cells in the order of `columns`) under the header `columns`, as CSV bytes: what
    `csv_bytes` writes, without a dictionary per row (the daily report has one row per day and key)."""
    text = io.StringIO()
    text.write(csv_line(columns) + "\n")
    _write_rows(text, rows)
    return text.getvalue().encode("utf-8")


def csv_line(cells: Sequence[object]) -> str:
    """The cells as one line of what `csv_table_bytes` writes, without its line end."""
    return csv_lines([cells])[0]


def csv_lines(rows: Iterable[Sequence[object]]) -> list[str]:
    """Each row as one line of what `csv_table_bytes` writes, without its line end: one writer
    for all of them (a line may hold a quoted line break, so they are cut where each row ended).
    The writer ends a row with `\r\n`, so that a cell holding either is quoted; the cut drops both."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    ends = []
    for row in rows:
        writer.writerow(row)
        ends.append(text.tell())
    written, start = text.getvalue(), 0
    lines: list[str] = []
    for end in ends:
        lines.append(written[start:end - 2])
        start = end
    return lines
