"""Reading the project's CSV files: rows with the file and line they start on (blank and `#`
comment lines skipped), and the checked values of their cells. Every error names the file,
the line and what to fix."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pipeline.domain.currencies import is_currency
from pipeline.domain.pricing import MAX_PRICE_DECIMALS, CatalogError

_CURRENCY = re.compile(r"^[A-Z]{3}$")


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CatalogError(f"cannot read {path}: {error.strerror}") from None


def data_rows(text: str, path: Path, line: Callable[[int], str] = str,
              error: type[CatalogError] = CatalogError) -> Iterator[tuple[str, list[str]]]:
    """(`line(n)`, values) of each CSV row that is neither blank nor a `#` comment line, n being
    the line the row starts on. Invalid CSV raises `error` naming the file and the line."""
    reader = csv.reader(io.StringIO(text))
    ended = 0  # the line the previous row ended on; a row starts on the next one
    try:
        for values in reader:
            start, ended = ended + 1, reader.line_num
            if any(v.strip() for v in values) and not values[0].lstrip().startswith("#"):
                yield line(start), values
    except csv.Error as problem:
        raise error(f"{path}:{line(reader.line_num)}: not valid CSV: {problem}") from None


def table_rows(path: Path, data: bytes, columns: tuple[str, ...],
               header_check: Callable[[list[str], str], None] | None = None,
               problems: list[str] | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """(`file:line`, row) for each data row; blank lines and `#` comment lines are skipped. A row
    that cannot be read (wrong number of values, a line break in a value) is an error; with
    `problems`, it is recorded there and skipped so that every problem is found in one pass."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not UTF-8 text") from None
    header: list[str] | None = None
    for line, values in data_rows(text, path):
        where = f"{path}:{line}"
        if any("\n" in v or "\r" in v for v in values):
            problem(problems, f"{where}: a value contains a line break: {values[0]!r}")
            continue
        if header is None:
            header = [h.strip() for h in values]
            if header_check is not None:
                header_check(header, where)
            missing = [c for c in columns if c not in header]
            if missing:
                raise CatalogError(f"{where}: missing column(s) {', '.join(missing)}; "
                                   f"expected {','.join(columns)}")
            continue
        if len(values) != len(header):
            problem(problems, f"{where}: {len(values)} values for {len(header)} columns")
            continue
        yield where, dict(zip(header, values, strict=True))
    if header is None:
        raise CatalogError(f"{path}: empty file; expected the header {','.join(columns)}")


def problem(problems: list[str] | None, message: str) -> None:
    if problems is None:
        raise CatalogError(message)
    problems.append(message)


def required(row: dict[str, str], column: str, where: str) -> str:
    value = row[column].strip()
    if not value:
        raise CatalogError(f"{where}: {column} is empty")
    return value


def day(row: dict[str, str], column: str, where: str) -> date:
    value = row[column].strip()
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise CatalogError(f"{where}: {column} {value!r} is not a date (YYYY-MM-DD, UTC)")


def optional_day(row: dict[str, str], column: str, where: str) -> date | None:
    return day(row, column, where) if row[column].strip() else None


def currency(row: dict[str, str], where: str) -> str:
    value = row["currency"].strip()
    if not _CURRENCY.match(value):
        raise CatalogError(f"{where}: currency {value!r} is not an ISO 4217 code such as USD")
    if not is_currency(value):
        raise CatalogError(f"{where}: currency {value!r} is unknown: not an ISO 4217 currency code (USD, EUR, ...)")
    return value


def amount(row: dict[str, str], column: str, where: str, unit: str = "per 1M tokens") -> Decimal:
    value = row[column].strip()
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise CatalogError(f"{where}: {column} {value!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise CatalogError(f"{where}: {column} {value!r} must be a finite price >= 0")
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PRICE_DECIMALS:
        raise CatalogError(f"{where}: {column} {value!r} has more than {MAX_PRICE_DECIMALS} decimals "
                           f"({column} is in {unit})")
    return price


def optional_amount(row: dict[str, str], column: str, where: str, unit: str = "per 1M tokens") -> Decimal | None:
    """`amount` of an optional column: None when the column is absent or blank."""
    return amount(row, column, where, unit) if (row.get(column) or "").strip() else None
