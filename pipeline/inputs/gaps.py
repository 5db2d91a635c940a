"""The gaps of a cost reconciliation (`cost-reconciliation-YYYY-MM.csv`, written by
`chargeback reconcile-azure --cost-export`): billed minus metered cost per account, day and
currency, which `chargeback report --true-up` allocates."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

from pipeline.domain.pricing import CatalogError
from pipeline.domain.true_up import Gap
from pipeline.inputs.csv_rows import currency, day, read_file, required, table_rows

GAP_COLUMNS = ("date", "account", "currency", "gap")


def read_gaps(path: Path) -> list[Gap]:
    gaps = []
    for where, row in table_rows(path, read_file(path), GAP_COLUMNS):
        text = row["gap"].strip()
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise CatalogError(f"{where}: gap {text!r} is not a number") from None
        if not amount.is_finite():
            raise CatalogError(f"{where}: gap {text!r} is not a finite number")
        gaps.append(Gap(day(row, "date", where), required(row, "account", where), currency(row, where), amount))
    return gaps
