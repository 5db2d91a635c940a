"""Live spend: what the counters add per event, and the monthly budgets they watch.

Live spend is priced at ingest with the catalog in force and kept in integer micro-units of
currency (1 USD = 1,000,000). It is a running view for budgets and dashboards; the report,
priced from the ledger at report time, stays the authority.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

import msgspec

from pipeline.domain.costing import Reference, UsageKey, UsageState, audio_classes
from pipeline.domain.events import UsageEvent
from pipeline.domain.pricing import MONEY, Price, billing_tier

MICROS = Decimal(1_000_000)
PICO_PER_MICRO = 1_000_000
THRESHOLDS = (50, 80, 100)  # percent of a monthly budget


class LiveCharge(msgspec.Struct, frozen=True, gc=False):
    """What one event adds to the live spend. (A struct rather than a frozen dataclass: one is
    built per event, and a frozen dataclass's __init__ sets each field through Python.)"""

    cost_center: str
    micros: int  # cost in micro-units of `currency`, rounded half-even; 0 when unpriced
    currency: str
    priced: bool


# The usage state as plain text in cache keys: a str hashes in C, a StrEnum member in Python.
_MEASURED, _PENDING, _NONE = UsageState.MEASURED.value, UsageState.PENDING.value, UsageState.NONE.value
# (reference period of the day, subscription, cost center sent, deployment, model, usage state,
# service tier as sent, spilled, audio classes): a UsageKey as a plain tuple, its day replaced by
# its reference period (Reference.period_of).
LiveKey = tuple[int, str, str | None, str, str | None, str, str | None, bool, int]
MicroRates = tuple[int, int, int, int, int]  # input, cached input, output, audio input, audio output


class LivePricer:
    """Prices events as they arrive. What a key resolves to is cached: a batch shares few keys.
    The key is a plain tuple, not a UsageKey, whose dataclass __init__, __hash__ and __eq__ would
    run in Python for every event."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        # Per key, with its reference period in place of its day (a key is charged alike on all
        # the days of a period): the charge without tokens, and the integer rates when tokens
        # are charged.
        self._charging: dict[LiveKey, tuple[LiveCharge, MicroRates | None]] = {}
        self._rates: dict[Price, MicroRates] = {}
        self._periods: dict[date, int] = {}

    def charge(self, event: UsageEvent) -> LiveCharge:
        usage = event.usage
        state = _MEASURED if usage is not None else _PENDING if event.usage_source == "stream" else _NONE
        day = event.timestamp.date()
        period = self._periods.get(day)
        if period is None:
            period = self._periods[day] = self.reference.period_of(day)
        key = (period, event.subscription_id, event.cost_center, event.deployment, event.model, state,
               event.service_tier, event.spillover is True, audio_classes(usage))
        charging = self._charging.get(key)
        if charging is None:
            charging = self._charging[key] = self._resolve(day, key)
        fixed, rates = charging
        if rates is None or usage is None:  # unpriced, provisioned (PTU) or without usage: the same for every event
            return fixed
        cached = usage.cached_tokens
        # cost x 10^12 as an integer (prices have at most 6 decimals per 1M tokens), then micros
        # rounded half-even: the same value as Decimal arithmetic, without Decimal on the hot path.
        audio_prompt, audio_completion = usage.audio_prompt_tokens, usage.audio_completion_tokens
        exact = ((usage.prompt_tokens - cached - audio_prompt) * rates[0] + cached * rates[1]
                 + (usage.completion_tokens - audio_completion) * rates[2] + audio_prompt * rates[3]
                 + audio_completion * rates[4])
        micros, rest = divmod(exact, PICO_PER_MICRO)
        if rest * 2 > PICO_PER_MICRO or (rest * 2 == PICO_PER_MICRO and micros % 2):
            micros += 1
        return LiveCharge(fixed.cost_center, micros, fixed.currency, True)

    def charges(self, events: Iterable[UsageEvent]) -> list[LiveCharge]:
        return [self.charge(event) for event in events]

    def charging(self, day: date, key: LiveKey) -> tuple[LiveCharge, MicroRates | None]:
        """What an event of this key on `day` is charged (the key's first item is the day's
        reference period, `reference.period_of(day)`): its charge without tokens, and when its
        tokens are charged, the integer rates `charge` multiplies them by
        (pipeline.lake.live_columns prices a table's rows with them)."""
        charging = self._charging.get(key)
        if charging is None:
            charging = self._charging[key] = self._resolve(day, key)
        return charging

    def _resolve(self, day: date, key: LiveKey) -> tuple[LiveCharge, MicroRates | None]:
        _, subscription_id, cost_center_sent, deployment, model, state, tier, spilled, audio = key
        resolved = self.reference.resolve(UsageKey(day, subscription_id, cost_center_sent, deployment, model,
                                                   UsageState(state), billing_tier(tier), spilled, audio))
        price, measured = resolved.price, state == _MEASURED
        if resolved.provisioned and measured:  # PTU: no per-token cost; the capacity is allocated later
            return LiveCharge(resolved.cost_center, 0, resolved.currency, True), None
        if price is None or not measured:
            return LiveCharge(resolved.cost_center, 0, "", False), None
        rates = self._rates.get(price)
        if rates is None:
            rates = self._rates[price] = _micro_rates(price)
        return LiveCharge(resolved.cost_center, 0, price.currency, True), rates


def _micro_rates(price: Price) -> MicroRates:
    """Prices per 1M tokens as integers in units of 10^-6: exact, as the catalog refuses more
    than 6 decimals. tokens x rate is then the cost in units of 10^-12. A missing audio price
    is 0: a key with audio tokens resolves to no price when its row has none."""
    return tuple(int(MONEY.multiply(rate or 0, MICROS)) for rate in  # type: ignore[return-value]
                 (price.input_per_1m, price.cached_input_per_1m, price.output_per_1m, price.audio_input_per_1m,
                  price.audio_output_per_1m))


class BudgetScope(StrEnum):
    SUBSCRIPTION = "subscription"
    COST_CENTER = "cost-center"
    PRODUCT = "product"  # an APIM product: the spend of its subscriptions (gateway state only)


class BudgetAction(StrEnum):
    ALERT = "alert"  # alerts at THRESHOLDS, a `warn` state from warn_at percent
    BLOCK = "block"  # the same, and the gateway refuses the covered subscriptions at 100%


DEFAULT_WARN_AT = 80  # percent of the budget from which the state is `warn`


@dataclass(frozen=True, slots=True)
class Budget:
    scope: BudgetScope
    key: str  # a subscription id, a cost center or an APIM product id
    monthly_micros: int
    currency: str
    action: BudgetAction = BudgetAction.ALERT
    warn_at: int = DEFAULT_WARN_AT
    origin: str = field(default="", compare=False)  # where it was read, e.g. `budgets.csv:3`


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A monthly spend crossed `threshold` percent of its budget. Raised once per threshold."""

    scope: BudgetScope
    key: str
    month: str
    threshold: int
    spend_micros: int
    budget_micros: int
    currency: str
    raised_at: datetime


class Budgets:
    def __init__(self, budgets: Iterable[Budget] = ()) -> None:
        self._by_key = {(budget.scope, budget.key): budget for budget in budgets}

    def get(self, scope: BudgetScope, key: str) -> Budget | None:
        return self._by_key.get((scope, key))

    def __iter__(self) -> Iterator[Budget]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


def reached(budget: Budget, spend_micros: int) -> list[int]:
    """The thresholds that a month-to-date spend has reached. Counters raise an alert for each
    one not raised before (an atomic create-if-absent mark), so concurrent consumers and
    redeliveries raise every alert exactly once."""
    return [t for t in THRESHOLDS if spend_micros * 100 >= t * budget.monthly_micros]


@dataclass(frozen=True, slots=True)
class SubscriptionMonth:
    """Month-to-date live totals of one subscription."""

    subscription_id: str
    month: str
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_tokens: int
    spend_micros: int
    unpriced_requests: int
