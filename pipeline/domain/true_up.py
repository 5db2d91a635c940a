"""True-up: the billed cost the metered usage does not explain, allocated to the cost centers.

A finance choice (`chargeback report --true-up FILE`): for each account and UTC day of a cost
reconciliation (pipeline.stages.cost_reconcile), the gap (billed - metered; a negative gap
gives money back) is split between the cost centers and APIM subscriptions in proportion to
their metered cost on that account that day, or charged whole to a named owner. A day with a
gap and no metered cost goes to the owner, else to `unassigned`. The parts are exact (largest
remainder, in units of 10^-12) and add up to the gap; they are lines of
their own (charge class `True-up`), never mixed into metered lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from pipeline.domain.capacity import split_exact
from pipeline.domain.mappings import UNASSIGNED
from pipeline.domain.pricing import MONEY

TRUE_UP = "True-up"  # the report's charge_class of true-up lines
BY_METERED_COST, TO_OWNER = "metered-cost", "owner"
RATIO_UNIT = Decimal("0.000000000001")  # ratios are stated to 12 decimals (the amounts are exact)


@dataclass(frozen=True, slots=True)
class Gap:
    """Billed minus metered cost of one account, day and currency."""

    day: date
    account: str
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class TrueUp:
    """One cost center's (and APIM subscription's) share of a gap."""

    day: date
    account: str
    cost_center: str
    subscription_id: str
    currency: str
    amount: Decimal
    ratio: Decimal  # its share of the gap; the ratios of one gap add up to 1
    method: str  # BY_METERED_COST or TO_OWNER


Consumer = tuple[str, str]  # (cost center, APIM subscription)


def allocate_true_up(gaps: Iterable[Gap], metered: Mapping[tuple[str, date, str], Mapping[Consumer, Decimal]],
                     owner: str | None = None) -> list[TrueUp]:
    """Each gap split over the consumers of `metered[(account lower case, day, currency)]`."""
    parts: list[TrueUp] = []
    for gap in gaps:
        if gap.amount == 0:
            continue
        weights = {} if owner else {c: w for c, w in metered.get((gap.account.lower(), gap.day, gap.currency),
                                                                 {}).items() if w > 0}
        if not weights:
            parts.append(TrueUp(gap.day, gap.account, owner or UNASSIGNED, "", gap.currency, gap.amount, Decimal(1),
                                TO_OWNER))
            continue
        consumers = sorted(weights)
        shares = [weights[c] for c in consumers]
        amounts = split_exact(abs(gap.amount), shares, _unit(gap.amount))
        ratios = split_exact(Decimal(1), shares, RATIO_UNIT)  # they add up to exactly 1
        sign = -1 if gap.amount < 0 else 1
        for (cost_center, subscription), amount, ratio in zip(consumers, amounts, ratios, strict=True):
            parts.append(TrueUp(gap.day, gap.account, cost_center, subscription, gap.currency,
                                MONEY.multiply(amount, sign), ratio, BY_METERED_COST))
    return parts


def _unit(amount: Decimal) -> Decimal:
    """The unit the parts are whole numbers of: 10^-12, as the report's amounts (or the gap's own
    smallest decimal when it has more places)."""
    exponent = amount.as_tuple().exponent
    return Decimal(1).scaleb(min(exponent if isinstance(exponent, int) else -12, -12))

