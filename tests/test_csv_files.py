"""The CSV writers of pipeline.lake.csv_files: `csv_lines` cuts one writer's output back into the
lines `csv_table_bytes` writes, whatever a cell holds; a cell with a line break, a lone `\r`
included, is quoted, so that a reader gets the rows back as they were written."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from pipeline.lake.csv_files import csv_bytes, csv_line, csv_lines, csv_table_bytes

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


def test_a_lone_carriage_return_is_quoted_and_reads_back_as_one_cell() -> None:
    assert csv_lines(ROWS)[2] == '"carriage\rreturn",,'
    text = csv_table_bytes(["a", "b", "c"], [["CC\r9", "x", "y"], ["z", "CC\r\n1", "w\n"]]).decode()
    assert text == 'a,b,c\n"CC\r9",x,y\nz,"CC\r\n1","w\n"\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["a", "b", "c"], ["CC\r9", "x", "y"], ["z", "CC\r\n1", "w\n"]]


def test_rows_without_a_carriage_return_are_the_csv_modules_own_bytes() -> None:
    rows = [row for row in ROWS if not any(isinstance(cell, str) and "\r" in cell for cell in row)]
    plain = io.StringIO()
    csv.writer(plain, lineterminator="\n").writerows([["h"], *rows])
    assert csv_table_bytes(["h"], rows) == csv_table_bytes(["h"], iter(rows)) == plain.getvalue().encode()


def test_dict_rows_are_written_in_column_order_and_an_unknown_key_is_refused() -> None:
    assert csv_bytes(["a", "b"], [{"b": 2, "a": "x\ry"}, {"a": 1}]) == b'a,b\n"x\ry",2\n1,\n'
    with pytest.raises(ValueError, match=r"\['c'\]"):
        csv_bytes(["a", "b"], [{"a": 1, "c": 3}])
