"""Cost Management exports in FOCUS form (CSV, gzip CSV or Parquet): what Azure billed per Azure
OpenAI account, UTC day and currency.

Columns read (FOCUS column definitions; Microsoft's FOCUS cost and usage export):
`BilledCost`, `BillingCurrency`, `ChargePeriodStart` and `ResourceId` (required), and
`ChargeCategory` when present (only `Usage` and `Purchase` rows count; `Credit`, `Tax` and
`Adjustment` do not describe usage). A row counts when its ResourceId is an account of
`Microsoft.CognitiveServices/accounts` (or a child of one, such as a deployment): the account is
the id up to `accounts/<name>`. BilledCost stays exact: CSV text is read as a decimal, Parquet
decimals as they are (a float column is read through its shortest text).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pipeline.domain.errors import UserError
from pipeline.domain.pricing import MONEY

REQUIRED = ("BilledCost", "BillingCurrency", "ChargePeriodStart", "ResourceId")
USAGE_CATEGORIES = frozenset({"usage", "purchase"})
_ACCOUNT = re.compile(r"^(/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.cognitiveservices/"
                      r"accounts/[^/]+)", re.IGNORECASE)


class CostExportError(UserError):
    """A cost export that cannot be used, with the file and the reason."""


@dataclass(slots=True)
class BilledCosts:
    """Billed cost per (account lower case, day, currency), and the accounts as written."""

    amounts: dict[tuple[str, date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    accounts: dict[str, str] = field(default_factory=dict)
    rows: int = 0  # rows of Azure OpenAI accounts read


def read_cost_exports(paths: Iterable[Path], month_start: date, month_end: date) -> BilledCosts:
    billed = BilledCosts()
    for path in paths:
        for where, row in _rows(path):
            account = _ACCOUNT.match((row.get("ResourceId") or "").strip())
            if account is None:
                continue
            category = (row.get("ChargeCategory") or "usage").strip().lower()
            if category not in USAGE_CATEGORIES:
                continue
            day = _day(row.get("ChargePeriodStart"), where)
            if not month_start <= day < month_end:
                continue
            currency = (row.get("BillingCurrency") or "").strip().upper()
            if not re.fullmatch(r"[A-Z]{3}", currency):
                raise CostExportError(f"{where}: BillingCurrency {currency!r} is not an ISO 4217 code")
            key = account.group(1).lower()
            billed.accounts.setdefault(key, account.group(1))
            billed.amounts[(key, day, currency)] = MONEY.add(billed.amounts[(key, day, currency)],
                                                             _amount(row.get("BilledCost"), where))
            billed.rows += 1
    return billed


def _rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    if not path.is_file():
        raise CostExportError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        yield from _parquet_rows(path)
        return
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise CostExportError(f"{path}: not a readable gzip file ({error})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CostExportError(f"{path}: not UTF-8 text: expected a FOCUS cost export (CSV or Parquet)") from None
    reader = csv.DictReader(io.StringIO(text))
    _check_columns(reader.fieldnames or [], path)
    for number, row in enumerate(reader, 2):
        yield f"{path}:{number}", row


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise CostExportError(f"{path}: not a Parquet file ({error})") from None
    _check_columns(schema.names, path)
    wanted = [name for name in (*REQUIRED, "ChargeCategory") if name in schema.names]
    table = pq.read_table(path, columns=wanted)
    for number, row in enumerate(table.to_pylist(), 1):
        yield f"{path} row {number}", {name: _text(value) for name, value in row.items()}


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # a float's str is its shortest round-trip text


def _check_columns(names: Sequence[str], path: Path) -> None:
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise CostExportError(f"{path}: missing column(s) {', '.join(missing)}: expected a Cost Management FOCUS "
                              f"export with {', '.join(REQUIRED)}")


def _day(value: str | None, where: str) -> date:
    text = (value or "").strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CostExportError(f"{where}: ChargePeriodStart {text!r} is not an ISO 8601 date-time") from None
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def _amount(value: str | None, where: str) -> Decimal:
    text = (value or "").strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise CostExportError(f"{where}: BilledCost {text!r} is not a number") from None
    if not amount.is_finite():
        raise CostExportError(f"{where}: BilledCost {text!r} is not a finite number")
    return amount
