"""Effective-dated token prices and the cost arithmetic. Money is Decimal, never float."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from itertools import pairwise

from pipeline.domain.errors import UserError

# Exact arithmetic: any operation that would round raises instead.
MONEY = Context(prec=60, traps=[Inexact, Overflow, InvalidOperation])
TOKENS_PER_UNIT = Decimal(1_000_000)
_ZERO = Decimal(0)
MAX_PRICE_DECIMALS = 6
ANY_REGION = "*"
_DATE_VERSION = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class CatalogError(UserError):
    """A catalog or mapping file that cannot be used, with the place and the reason."""


@dataclass(frozen=True, slots=True)
class Price:
    """Prices per 1M tokens for one model and deployment type, in force on [effective_from, effective_to)."""

    model: str
    deployment_type: str
    region: str
    effective_from: date
    effective_to: date | None
    currency: str
    input_per_1m: Decimal
    cached_input_per_1m: Decimal
    output_per_1m: Decimal
    origin: str = field(default="", compare=False)  # where it was read, e.g. `prices.csv:12`

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)

    def cost(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
        """Exact cost: uncached prompt at input, cached at cached input, completion at output."""
        # money_sum's additions, in its order, written out: a report prices every group here.
        add, multiply = MONEY.add, MONEY.multiply
        units = add(add(add(_ZERO, multiply(prompt_tokens - cached_tokens, self.input_per_1m)),
                        multiply(cached_tokens, self.cached_input_per_1m)),
                    multiply(completion_tokens, self.output_per_1m))
        return MONEY.divide(units, TOKENS_PER_UNIT)


def money_sum(amounts: Iterable[Decimal]) -> Decimal:
    """Exact sum (the default decimal context would round past 28 digits without a word)."""
    total = Decimal(0)
    for amount in amounts:
        total = MONEY.add(total, amount)
    return total


def base_model(model: str) -> str:
    """`gpt-4o-2024-11-20` -> `gpt-4o`: the name without its date-version suffix."""
    return _DATE_VERSION.sub("", model)


def loose_key(text: str) -> str:
    """Deployment types and regions compare loosely: `West Europe` == `westeurope`."""
    return "".join(text.split()).lower()


class PriceCatalog:
    """A validated set of prices; `version` is the content hash of the file it came from."""

    def __init__(self, prices: Iterable[Price], version: str) -> None:
        self.version = version
        self.prices = tuple(prices)
        # Per model: (normalised deployment type, normalised region, price), keys computed once.
        self._by_model: dict[str, list[tuple[str, str, Price]]] = defaultdict(list)
        for price in self.prices:
            self._by_model[price.model].append((loose_key(price.deployment_type), loose_key(price.region), price))
        _check_overlaps(self.prices)
        # find() is called once per group of a report (tens of thousands of times with a few
        # distinct arguments): its answers are kept. The catalog never changes once built.
        self._found: dict[tuple[str, str, str | None, date], Price | None] = {}

    @property
    def models(self) -> frozenset[str]:
        return frozenset(self._by_model)

    def boundaries(self) -> set[date]:
        """Every day on which a price starts or stops being in force."""
        return {day for p in self.prices for day in (p.effective_from, p.effective_to) if day is not None}

    def find(self, model: str, deployment_type: str, region: str | None, day: date) -> Price | None:
        """The price in force on `day`: exact model name first, then without a date suffix;
        an exact region before `*`."""
        args = (model, deployment_type, region, day)
        try:
            return self._found[args]
        except KeyError:
            found = self._found[args] = self._find(*args)
            return found

    def _find(self, model: str, deployment_type: str, region: str | None, day: date) -> Price | None:
        type_key, region_key = loose_key(deployment_type), loose_key(region or "")
        for name in dict.fromkeys((model, base_model(model))):
            candidates = [
                (price_region, p) for price_type, price_region, p in self._by_model.get(name, ())
                if price_type == type_key and p.in_force(day)
            ]
            for wanted in (region_key, ANY_REGION):
                for price_region, price in candidates:
                    if price_region == wanted:
                        return price
        return None


def _check_overlaps(prices: Iterable[Price]) -> None:
    problems = overlap_problems(prices)
    if problems:
        raise CatalogError(problems[0])


def overlap_problems(prices: Iterable[Price]) -> list[str]:
    """Every pair of rows for the same model, deployment type and region whose effective
    ranges overlap (each row is compared with the one before it, in start order)."""
    groups: dict[tuple[str, str, str], list[Price]] = defaultdict(list)
    for price in prices:
        groups[(price.model, loose_key(price.deployment_type), loose_key(price.region))].append(price)
    problems = []
    for (model, deployment_type, region), group in groups.items():
        group.sort(key=lambda p: p.effective_from)
        for earlier, later in pairwise(group):
            if earlier.effective_to is None or earlier.effective_to > later.effective_from:
                problems.append(
                    f"{later.origin or 'catalog'}: overlapping prices for {model} / {deployment_type} / "
                    f"region {region}: {later.effective_from}..{later.effective_to or 'open'} overlaps "
                    f"{earlier.effective_from}..{earlier.effective_to or 'open'}"
                    + (f" ({earlier.origin})" if earlier.origin else "")
                )
    return problems
