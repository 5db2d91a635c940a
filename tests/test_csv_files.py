"""The CSV writers of pipeline.lake.csv_files: `csv_lines` cuts one writer's output back into the
lines `csv_table_bytes` writes, whatever a cell holds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pipeline.lake.csv_files import csv_line, csv_lines, csv_table_bytes

ROWS: list[list[object]] = [
    ["plain", 1, Decimal("0.000001")],
    ["a,comma", 'a "quote"', "two\nlines"],
    ["carriage\rreturn", "", None],
    ["ünïcødé", "CC-1000", True],
    [""],  # a lone empty cell is written quoted, so that the line is not blank
    ["trailing\n", "\n", "x"],
]


def test_each_line_is_what_the_table_writer_writes_for_its_row() -> None:
    table = csv_table_bytes(["h"], ROWS).decode()
    assert table == "h\n" + "".join(f"{line}\n" for line in csv_lines(ROWS))
    assert csv_lines(ROWS)[1] == '"a,comma","a ""quote""","two\nlines"'
    assert csv_lines(ROWS)[4] == '""'


@pytest.mark.parametrize("row", ROWS)
def test_a_line_alone_is_the_same_line(row: list[object]) -> None:
    assert csv_line(row) == csv_lines([row])[0] == csv_lines(ROWS)[ROWS.index(row)]


def test_no_rows_no_lines() -> None:
    assert csv_lines([]) == []
