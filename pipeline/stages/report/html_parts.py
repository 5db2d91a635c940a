"""The building blocks of the HTML report's page (pipeline.stages.report.html): escaping, amounts
shown rounded with their exact value kept, and sortable tables."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from pipeline.stages.report.model import exact_text

CENT = Decimal("0.01")


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def money(value: Decimal, currency: str = "") -> str:
    return f"{value.quantize(CENT, rounding=ROUND_HALF_EVEN):,.2f} {currency}".strip()


def amount(value: Decimal, currency: str) -> str:
    """A rounded amount with its exact value in title and data-exact."""
    exact = escape(exact_text(value))
    return f'<span title="{exact} {escape(currency)}" data-exact="{exact}">{escape(money(value, currency))}</span>'


def count(n: int) -> str:
    return f"{n:,}"


def table(ident: str, headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f'<table id="{ident}" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
