"""Provisioned throughput (PTU): a fixed cost per hour, allocated to the teams that used it.

A provisioned deployment is billed per PTU-hour whatever the traffic. Each UTC day, a
deployment's capacity cost (PTU x hours in force that day x price per PTU-hour, rounded to the
currency's minor unit) is split between its consumers (cost center x subscription x model x
deployment type x charge class) in proportion to their weighted usage: uncached input tokens x
input weight + cached tokens x cached weight + output tokens x output weight, the weights per
model (Microsoft counts one gpt-4.1 output token as 4 input tokens against a PTU's throughput and
deducts cached tokens 100%, hence the shipped defaults `1, 0, 4`).

Idle capacity, when the throughput of a PTU for the model is known (input tokens per minute per
PTU), is `capacity - used` in the same weighted tokens. It is either spread over the users in the
same proportion (the default: their amounts simply cover the whole day) or, when an idle owner
cost center is configured (per capacity row, or for the whole plan), charged to that owner as its
own `idle` line. A day with capacity and no weighted usage at all goes to the owner, else to
`unassigned`: capacity cost never disappears.

Amounts are exact: the day's cost is split in whole minor units (cents) by the largest remainder
method, so the allocations of a deployment-day add up to its capacity cost exactly and each one
is within one minor unit of its exact proportional share.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from itertools import pairwise

from pipeline.domain.currencies import minor_unit
from pipeline.domain.mappings import UNASSIGNED
from pipeline.domain.periods import midnight
from pipeline.domain.pricing import MONEY, CatalogError, base_model, money_sum

ANY_MODEL = "*"
USAGE, IDLE = "usage", "idle"  # allocation kinds
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Capacity:
    """One row of the provisioned-capacity file: `ptu` PTUs of a deployment in [start, end)."""

    deployment: str
    ptu: int
    price_per_ptu_hour: Decimal
    currency: str
    start: datetime  # UTC, on a whole hour
    end: datetime | None  # exclusive; None = open
    idle_owner: str | None = None
    origin: str = field(default="", compare=False)

    def hours_on(self, day: date) -> int:
        """Whole hours of this row in force on the UTC day."""
        first, last = max(self.start, midnight(day)), midnight(day) + DAY
        if self.end is not None:
            last = min(last, self.end)
        return max(0, int((last - first) / HOUR))

    def cost_on(self, day: date) -> Decimal:
        """Exact (unrounded) cost of the day's hours."""
        return MONEY.multiply(MONEY.multiply(self.ptu, self.hours_on(day)), self.price_per_ptu_hour)


@dataclass(frozen=True, slots=True)
class PtuWeight:
    """Input-token equivalents per token of each kind, and (when known) a PTU's throughput."""

    model: str
    input: Decimal = Decimal(1)
    cached_input: Decimal = Decimal(0)
    output: Decimal = Decimal(4)
    input_tpm_per_ptu: int | None = None  # input tokens per minute per PTU; None = not known
    origin: str = field(default="", compare=False)

    def weighted(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
        return money_sum((MONEY.multiply(prompt_tokens - cached_tokens, self.input),
                          MONEY.multiply(cached_tokens, self.cached_input),
                          MONEY.multiply(completion_tokens, self.output)))


DEFAULT_WEIGHT = PtuWeight(ANY_MODEL)


class PtuWeights:
    """Weights by model: exact name, then without a date suffix, then `*`, then 1/0/4."""

    def __init__(self, weights: Iterable[PtuWeight] = ()) -> None:
        self._by_model: dict[str, PtuWeight] = {}
        for weight in weights:
            if weight.model in self._by_model:
                raise CatalogError(f"{weight.origin or 'PTU weights'}: model {weight.model!r} is listed twice")
            self._by_model[weight.model] = weight

    def for_model(self, model: str | None) -> PtuWeight:
        names = (model, base_model(model)) if model else ()
        for name in (*names, ANY_MODEL):
            if name in self._by_model:
                return self._by_model[name]
        return DEFAULT_WEIGHT

    def __len__(self) -> int:
        return len(self._by_model)


class CapacityPlan:
    """The provisioned capacity of every PTU deployment over time, the weights, and who pays
    for idle capacity when no row names an owner (None: spread it over the users)."""

    def __init__(self, rows: Iterable[Capacity] = (), weights: PtuWeights | None = None,
                 idle_owner: str | None = None, version: str = "") -> None:
        self.rows = tuple(rows)
        self.weights = weights or PtuWeights()
        self.idle_owner = idle_owner
        self.version = version
        self._by_deployment: dict[str, list[Capacity]] = defaultdict(list)
        for row in self.rows:
            self._by_deployment[row.deployment].append(row)
        problems = []
        for deployment, group in self._by_deployment.items():
            group.sort(key=lambda r: r.start)
            for earlier, later in pairwise(group):
                if earlier.end is None or earlier.end > later.start:
                    problems.append(f"{later.origin or 'capacity'}: deployment {deployment!r} has overlapping "
                                    f"capacity rows (from {later.start:%Y-%m-%d %H:%M} overlaps the row from "
                                    f"{earlier.start:%Y-%m-%d %H:%M}{f', {earlier.origin}' if earlier.origin else ''})")
            currencies = sorted({r.currency for r in group})
            if len(currencies) > 1:
                problems.append(f"{group[-1].origin or 'capacity'}: deployment {deployment!r} is priced in "
                                f"several currencies ({', '.join(currencies)}); use one")
        if problems:
            raise CatalogError("\n".join(problems))

    def __bool__(self) -> bool:
        return bool(self.rows)

    @property
    def deployments(self) -> list[str]:
        return sorted(self._by_deployment)

    def on(self, deployment: str, day: date) -> list[Capacity]:
        """The deployment's rows with hours on the UTC day."""
        return [r for r in self._by_deployment.get(deployment, ()) if r.hours_on(day) > 0]

    def currency(self, deployment: str) -> str:
        return self._by_deployment[deployment][0].currency

    def days(self, start: date, end: date) -> Iterable[tuple[date, str, list[Capacity]]]:
        """(day, deployment, rows) for every day in [start, end) with capacity."""
        for deployment in self.deployments:
            group = self._by_deployment[deployment]
            first = max(start, min(r.start for r in group).date())
            ends = [r.end for r in group]
            last = end if None in ends else min(end, (max(e for e in ends if e is not None) - timedelta(
                microseconds=1)).date() + DAY)
            day = first
            while day < last:
                rows = self.on(deployment, day)
                if rows:
                    yield day, deployment, rows
                day += DAY


NO_CAPACITY = CapacityPlan()


@dataclass(frozen=True, slots=True, order=True)
class Consumer:
    """Who an allocation is charged to (the report's line key without currency)."""

    cost_center: str
    subscription_id: str
    model: str
    deployment_type: str
    charge_class: str = ""


@dataclass(slots=True)
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    weighted: Decimal = Decimal(0)

    def add(self, requests: int, prompt: int, cached: int, completion: int, weighted: Decimal) -> None:
        self.requests += requests
        self.prompt_tokens += prompt
        self.cached_tokens += cached
        self.completion_tokens += completion
        self.weighted = MONEY.add(self.weighted, weighted)


@dataclass(frozen=True, slots=True)
class Allocation:
    """One consumer's (or the idle owner's) share of a deployment's capacity cost on a day."""

    day: date
    deployment: str
    consumer: Consumer
    kind: str  # USAGE or IDLE
    currency: str
    amount: Decimal  # a whole number of minor units
    usage: Usage
    price_per_ptu_hour: Decimal
    corrections: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeploymentDay:
    """What a provisioned deployment cost on a day, and how much of it was used."""

    day: date
    deployment: str
    currency: str
    ptu_hours: int
    cost: Decimal  # rounded to the minor unit; the allocations add up to it
    exact_cost: Decimal
    used: Decimal  # weighted tokens
    capacity: Decimal | None  # weighted tokens the PTUs could serve that day (None: throughput unknown)
    idle_to: str | None  # who was charged the idle share (None: spread over the users)
    allocations: tuple[Allocation, ...]

    @property
    def utilization(self) -> Decimal | None:
        """used / capacity (may exceed 1 when the throughput figure is too low)."""
        if self.capacity is None or self.capacity == 0:
            return None
        return self.used / self.capacity


def split_exact(total: Decimal, weights: Sequence[Decimal], unit: Decimal) -> list[Decimal]:
    """`total` (a whole number of `unit`s, >= 0) split in proportion to `weights` (>= 0, not all
    0) into whole units: the parts add up to `total` exactly and each is within one unit of its
    exact share. Largest remainder (Hamilton): every part gets the floor of its exact quota, and
    the units left go one each to the largest fractional parts, earlier parts first on ties."""
    units = MONEY.divide(total, unit)
    if units != units.to_integral_value() or units < 0:
        raise ValueError(f"{total} is not a whole, non-negative number of {unit}")
    if not weights or any(w < 0 for w in weights) or not any(weights):
        raise ValueError("weights must be non-negative and not all zero")
    count, whole = len(weights), int(units)
    denominator = sum(Fraction(w) for w in weights)
    quotas = [Fraction(whole) * Fraction(w) / denominator for w in weights]
    parts = [q.numerator // q.denominator for q in quotas]
    left = whole - sum(parts)
    for index in sorted(range(count), key=lambda i: (-(quotas[i] - parts[i]), i))[:left]:
        parts[index] += 1
    return [MONEY.multiply(unit, part) for part in parts]


def allocate_day(day: date, deployment: str, rows: Sequence[Capacity], usage: Mapping[Consumer, Usage],
                 plan: CapacityPlan, model: str | None, deployment_type: str,
                 corrections: Mapping[Consumer, tuple[str, ...]] | None = None) -> DeploymentDay:
    """Split one deployment-day's capacity cost between its consumers (and the idle owner)."""
    currency = rows[0].currency
    unit = minor_unit(currency)
    exact = money_sum(r.cost_on(day) for r in rows)
    cost = exact.quantize(unit, rounding=ROUND_HALF_EVEN)
    ptu_hours = sum(r.ptu * r.hours_on(day) for r in rows)
    throughput = plan.weights.for_model(model).input_tpm_per_ptu
    capacity = (MONEY.multiply(sum(r.ptu * r.hours_on(day) * 60 for r in rows), throughput)
                if throughput is not None else None)
    owners = {r.idle_owner for r in rows if r.idle_owner} or ({plan.idle_owner} if plan.idle_owner else set())
    owner = sorted(owners)[0] if owners else None
    consumers = sorted(c for c, u in usage.items() if u.weighted > 0 or u.requests > 0)
    used = money_sum(usage[c].weighted for c in consumers)
    parties: list[tuple[Consumer, str, Usage, Decimal]] = [(c, USAGE, usage[c], usage[c].weighted) for c in consumers]
    idle_to: str | None = None
    idle_party = Consumer(owner or UNASSIGNED, "", model or "", deployment_type)
    if used == 0:
        parties = [(c, USAGE, usage[c], Decimal(0)) for c in consumers]
        parties.append((idle_party, IDLE, Usage(), Decimal(1)))
        idle_to = idle_party.cost_center
    elif owner is not None and capacity is not None and capacity > used:
        parties.append((idle_party, IDLE, Usage(), MONEY.subtract(capacity, used)))
        idle_to = owner
    amounts = split_exact(cost, [weight for *_, weight in parties], unit) if cost > 0 else [
        Decimal(0) for _ in parties]
    price = rows[-1].price_per_ptu_hour
    allocations = tuple(
        Allocation(day, deployment, consumer, kind, currency, amount, used_by, price,
                   (corrections or {}).get(consumer, ()) if kind == USAGE else ())
        for (consumer, kind, used_by, _), amount in zip(parties, amounts, strict=True)
    )
    return DeploymentDay(day, deployment, currency, ptu_hours, cost, exact, used, capacity, idle_to, allocations)
