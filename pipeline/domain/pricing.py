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
# Service tiers a catalog row prices (`service_tier`; blank = standard). An event's serviceTier
# null, `default`, `auto` or `standard` is billed standard; any other is looked up as it is.
STANDARD = "standard"
SERVICE_TIERS = (STANDARD, "flex", "priority")
STANDARD_ALIASES = frozenset({"", "default", "auto", STANDARD})
_DATE_VERSION = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class CatalogError(UserError):
    """A catalog or mapping file that cannot be used, with the place and the reason."""


@dataclass(frozen=True, slots=True)
class Price:
    """Prices per 1M tokens for one model, deployment type and service tier, in force on
    [effective_from, effective_to). Audio tokens have their own prices (None: not priced)."""

    model: str
    deployment_type: str
    region: str
    effective_from: date
    effective_to: date | None
    currency: str
    input_per_1m: Decimal
    cached_input_per_1m: Decimal
    output_per_1m: Decimal
    service_tier: str = STANDARD
    audio_input_per_1m: Decimal | None = None
    audio_output_per_1m: Decimal | None = None
    origin: str = field(default="", compare=False)  # where it was read, e.g. `prices.csv:12`

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)

    def prices_audio(self, audio_prompt: bool, audio_completion: bool) -> bool:
        """Whether the row has a price for each audio token class the usage has."""
        return ((not audio_prompt or self.audio_input_per_1m is not None)
                and (not audio_completion or self.audio_output_per_1m is not None))

    def cost(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int,
             audio_prompt_tokens: int = 0, audio_completion_tokens: int = 0) -> Decimal:
        """Exact cost: text prompt (prompt - cached - audio) at input, cached at cached input,
        audio prompt at audio input, text completion (completion - audio) at output, audio
        completion at audio output. Audio tokens need their price (`prices_audio`)."""
        # money_sum's additions, in its order, written out: a report prices every group here.
        add, multiply = MONEY.add, MONEY.multiply
        units = add(add(add(_ZERO, multiply(prompt_tokens - cached_tokens - audio_prompt_tokens, self.input_per_1m)),
                        multiply(cached_tokens, self.cached_input_per_1m)),
                    multiply(completion_tokens - audio_completion_tokens, self.output_per_1m))
        if audio_prompt_tokens:
            units = add(units, multiply(audio_prompt_tokens, _audio(self.audio_input_per_1m)))
        if audio_completion_tokens:
            units = add(units, multiply(audio_completion_tokens, _audio(self.audio_output_per_1m)))
        return MONEY.divide(units, TOKENS_PER_UNIT)


def _audio(price: Decimal | None) -> Decimal:
    if price is None:  # resolution never gives a price without the audio prices its usage needs
        raise ValueError("audio tokens priced by a catalog row without an audio price")
    return price


def billing_tier(service_tier: str | None) -> str:
    """The tier an event is billed at: null, `default`, `auto` and `standard` are standard
    (the same rule as pipeline.lake.views.BILLING_COLUMNS in SQL)."""
    tier = (service_tier or "").strip().lower()
    return STANDARD if tier in STANDARD_ALIASES else tier


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
        # Per model: (normalised deployment type, tier, normalised region, price), keys computed once.
        self._by_model: dict[str, list[tuple[str, str, str, Price]]] = defaultdict(list)
        for price in self.prices:
            self._by_model[price.model].append((loose_key(price.deployment_type), price.service_tier,
                                                loose_key(price.region), price))
        _check_overlaps(self.prices)
        # find() is called once per group of a report (tens of thousands of times with a few
        # distinct arguments): its answers are kept. The catalog never changes once built.
        self._found: dict[tuple[str, str, str | None, date, str], Price | None] = {}

    @property
    def models(self) -> frozenset[str]:
        return frozenset(self._by_model)

    def boundaries(self) -> set[date]:
        """Every day on which a price starts or stops being in force."""
        return {day for p in self.prices for day in (p.effective_from, p.effective_to) if day is not None}

    def find(self, model: str, deployment_type: str, region: str | None, day: date,
             service_tier: str = STANDARD) -> Price | None:
        """The price in force on `day` at `service_tier` (a billing tier: see `billing_tier`):
        exact model name first, then without a date suffix; an exact region before `*`. A tier
        without a row has no price: it is never priced at another tier's rate."""
        args = (model, deployment_type, region, day, service_tier)
        try:
            return self._found[args]
        except KeyError:
            found = self._found[args] = self._find(*args)
            return found

    def _find(self, model: str, deployment_type: str, region: str | None, day: date,
              service_tier: str) -> Price | None:
        type_key, region_key = loose_key(deployment_type), loose_key(region or "")
        for name in dict.fromkeys((model, base_model(model))):
            candidates = [
                (price_region, p) for price_type, tier, price_region, p in self._by_model.get(name, ())
                if price_type == type_key and tier == service_tier and p.in_force(day)
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
    """Every pair of rows for the same model, deployment type, region and service tier whose
    effective ranges overlap (each row is compared with the one before it, in start order)."""
    groups: dict[tuple[str, str, str, str], list[Price]] = defaultdict(list)
    for price in prices:
        groups[(price.model, loose_key(price.deployment_type), loose_key(price.region),
                price.service_tier)].append(price)
    problems = []
    for (model, deployment_type, region, tier), group in groups.items():
        group.sort(key=lambda p: p.effective_from)
        for earlier, later in pairwise(group):
            if earlier.effective_to is None or earlier.effective_to > later.effective_from:
                problems.append(
                    f"{later.origin or 'catalog'}: overlapping prices for {model} / {deployment_type} / "
                    f"region {region}{'' if tier == STANDARD else f' / service tier {tier}'}: "
                    f"{later.effective_from}..{later.effective_to or 'open'} overlaps "
                    f"{earlier.effective_from}..{earlier.effective_to or 'open'}"
                    + (f" ({earlier.origin})" if earlier.origin else "")
                )
    return problems
