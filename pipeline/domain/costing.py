"""Turn usage into cost lines: resolve model, deployment type, cost center and price.

Pricing is linear in tokens, so a group of events that share a resolution key (same day,
subscription, sent cost center, deployment, model, usage state) is priced exactly like the sum
of its events. Reports price such groups; the `costs` query view prices each event with the
same resolution, so both agree to the last digit.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from pipeline.domain.capacity import NO_CAPACITY, CapacityPlan
from pipeline.domain.events import Usage, UsageEvent
from pipeline.domain.mappings import CostCenterMap, Deployment, DeploymentMap, is_provisioned_type
from pipeline.domain.pricing import STANDARD, Price, PriceCatalog, billing_tier

CORRECTION = "Correction"  # FOCUS ChargeClass of lines set by a correction


class UsageState(StrEnum):
    """Whether a group of events carries token counts."""

    MEASURED = "measured"  # usage present (response, stream final chunk, estimate, or APIM's LLM logs)
    PENDING = "pending"  # streamed, usage still to be joined from APIM's LLM logs (within the window)
    EXPIRED = "expired"  # streamed, and the LLM logs brought no usage within the window
    NONE = "none"  # no usage at all (usageSource = none, e.g. most errors)
    # No usage because the gateway stopped waiting for Azure OpenAI (the policy's on-error tags
    # the event chargebackError=gateway-timeout): Azure may have served and billed the request.
    TIMED_OUT = "timed-out"


GATEWAY_TIMEOUT_TAG = ("chargebackError", "gateway-timeout")  # (tag, value) the APIM policy sets on such events
AUDIO_PROMPT, AUDIO_COMPLETION = 1, 2  # UsageKey.audio: which audio token classes the usage has


def audio_classes(usage: Usage | None) -> int:
    """AUDIO_PROMPT | AUDIO_COMPLETION: the audio token classes the usage has (SQL: the `usage`
    view's audio_classes)."""
    if usage is None:
        return 0
    return (usage.audio_prompt_tokens > 0) * AUDIO_PROMPT + (usage.audio_completion_tokens > 0) * AUDIO_COMPLETION


def event_key(event: UsageEvent) -> UsageKey:
    """What pricing depends on besides token counts, for one event as it was received (the
    report groups events by the same key: pipeline.lake.views.KEY_COLUMNS)."""
    usage = event.usage
    return UsageKey(event.timestamp.date(), event.subscription_id, event.cost_center, event.deployment, event.model,
                    usage_state(usage is not None, event.usage_source, event.tags), billing_tier(event.service_tier),
                    event.spillover is True, audio_classes(usage))


def usage_state(has_usage: bool, usage_source: str, tags: dict[str, str] | None) -> UsageState:
    """The state of one event as it was received (before any LLM-log usage is joined)."""
    if has_usage:
        return UsageState.MEASURED
    if usage_source == "stream":
        return UsageState.PENDING
    tag, value = GATEWAY_TIMEOUT_TAG
    return UsageState.TIMED_OUT if tags is not None and tags.get(tag) == value else UsageState.NONE


class Unpriced(StrEnum):
    NO_USAGE = "no-usage"
    USAGE_PENDING = "usage-pending"
    UNKNOWN_DEPLOYMENT = "unknown-deployment"
    UNKNOWN_MODEL = "unknown-model"
    NO_PRICE = "no-price"
    NO_CAPACITY = "no-capacity"  # a provisioned deployment without a capacity row for the day
    GATEWAY_TIMEOUT = "gateway-timeout"  # the gateway timed out: Azure may have billed it, usage unknown
    # spilled over from a provisioned deployment whose map row names no spillover_deployment
    NO_SPILLOVER_DEPLOYMENT = "no-spillover-deployment"


@dataclass(frozen=True, slots=True)
class UsageKey:
    """What pricing depends on, besides token counts."""

    day: date
    subscription_id: str
    cost_center_sent: str | None
    deployment: str
    model: str | None
    state: UsageState
    service_tier: str = STANDARD  # the billing tier (pipeline.domain.pricing.billing_tier)
    spillover: bool = False  # Azure spilled the request over from a provisioned deployment
    audio: int = 0  # AUDIO_PROMPT | AUDIO_COMPLETION: the audio token classes of the usage


@dataclass(frozen=True, slots=True)
class Resolution:
    cost_center: str
    model: str | None
    deployment_type: str | None
    price: Price | None
    unpriced: Unpriced | None
    detail: str
    catalog_version: str = ""  # the catalog that priced it ("" when unpriced)
    corrections: tuple[str, ...] = ()  # ids of the corrections that changed it (pipeline.domain.corrections)
    uncorrected: Resolution | None = None  # what it would be without those corrections
    # Provisioned (PTU) usage: no per-token price (its pay-as-you-go cost is 0); the capacity
    # cost, in this currency, is allocated by pipeline.domain.capacity.
    provisioned_currency: str = ""
    service_tier: str = ""  # the tier it is billed at ("" for provisioned usage: capacity has no tier)
    spillover: bool = False  # spilled over from a provisioned deployment (priced at its spillover deployment)

    @property
    def priced(self) -> bool:
        return self.price is not None

    def for_cost_center(self, cost_center: str) -> Resolution:
        """The same resolution for another cost center (made directly: dataclasses.replace
        looks at every field, at several times the cost)."""
        return Resolution(cost_center, self.model, self.deployment_type, self.price, self.unpriced, self.detail,
                          self.catalog_version, self.corrections, self.uncorrected, self.provisioned_currency,
                          self.service_tier, self.spillover)

    @property
    def provisioned(self) -> bool:
        return bool(self.provisioned_currency)

    @property
    def charge_class(self) -> str:
        """FOCUS ChargeClass: `Correction` when a correction set the cost center or the price."""
        return CORRECTION if self.corrections else ""

    @property
    def currency(self) -> str:
        return self.price.currency if self.price else self.provisioned_currency


@dataclass(frozen=True, slots=True)
class Reference:
    """Everything pricing reads: the catalog, the two maps and the provisioned capacity."""

    catalog: PriceCatalog
    deployments: DeploymentMap
    cost_centers: CostCenterMap
    capacity: CapacityPlan = NO_CAPACITY
    _memo: PeriodMemo | None = field(default=None, init=False, repr=False, compare=False)

    def boundaries(self) -> set[date]:
        """Every day on which a price, a cost-center assignment or a capacity row starts or
        stops being in force: between two of them, a key resolves the same on every day."""
        days = self.catalog.boundaries() | self.cost_centers.boundaries()
        for row in self.capacity.rows:
            days.add(row.start.date())
            if row.end is not None:  # the last day with hours of the row, plus one
                days.add((row.end - timedelta(microseconds=1)).date() + timedelta(days=1))
        return days

    def resolve(self, key: UsageKey) -> Resolution:
        return self._period_memo().get(key, self._resolve)

    def period_of(self, day: date) -> int:
        """The number of the reference period holding `day`: how many boundaries fall on or
        before it (a key resolves alike on all the days of a period)."""
        return bisect_right(self._period_memo().boundaries, day)

    def _period_memo(self) -> PeriodMemo:
        memo = self._memo
        if memo is None:
            memo = PeriodMemo(self.boundaries())
            object.__setattr__(self, "_memo", memo)  # built once, on first use
        return memo

    def _resolve(self, key: UsageKey, bucket: int) -> Resolution:
        """A key's resolution from two parts resolved apart, each kept per reference period (the
        key's is `bucket`): its cost center (from the subscription and the cost center sent) and
        all the rest (from the deployment, model, state, tier, spillover and audio classes).
        Thousands of subscriptions share a few dozen of the latter, so a key new to the period
        mostly costs three lookups."""
        memo = self._period_memo()
        center_key = (bucket, key.subscription_id, key.cost_center_sent)
        cost_center = memo.centers.get(center_key)
        if cost_center is None:
            cost_center = memo.centers[center_key] = self.cost_centers.cost_center(
                key.subscription_id, key.day, key.cost_center_sent)
        rest_key = (bucket, key.deployment, key.model, key.state, key.service_tier, key.spillover, key.audio)
        rest = memo.rests.get(rest_key)
        if rest is None:
            rest = self._resolve_rest(key)
            if names_day(rest):  # its detail names the day: made for each day, never kept
                return rest.for_cost_center(cost_center)
            memo.rests[rest_key] = rest
        whole_key = (cost_center, id(rest))  # `rest` is kept by the memo: its id stays its own
        whole = memo.wholes.get(whole_key)
        if whole is None:
            whole = memo.wholes[whole_key] = rest.for_cost_center(cost_center)
        return whole

    def _resolve_rest(self, key: UsageKey) -> Resolution:
        """The key's resolution but its cost center (left blank)."""
        cost_center = ""
        deployment = self.deployments.get(key.deployment)
        model = key.model or (deployment.model if deployment else None)
        deployment_type = deployment.deployment_type if deployment else None

        def unpriced(reason: Unpriced, detail: str, tier: str = key.service_tier) -> Resolution:
            return Resolution(cost_center, model, deployment_type, None, reason, detail,
                              service_tier=tier, spillover=key.spillover)

        if key.state is UsageState.NONE:
            return unpriced(Unpriced.NO_USAGE, "request carried no token usage (usageSource none)")
        if key.state is UsageState.TIMED_OUT:
            return unpriced(Unpriced.GATEWAY_TIMEOUT, "the gateway stopped waiting for Azure OpenAI (forward-request "
                            "timeout): Azure may have served and billed it; its usage is unknown")
        if key.state is UsageState.EXPIRED:
            return unpriced(Unpriced.NO_USAGE, "streamed request; its usage never arrived from APIM LLM logs "
                            "(GatewayLlmLogs) within the usage window")
        if key.state is UsageState.PENDING:
            return unpriced(Unpriced.USAGE_PENDING, "streamed request; usage not yet joined from APIM LLM logs")
        if deployment is None:
            return unpriced(Unpriced.UNKNOWN_DEPLOYMENT,
                            f"deployment {key.deployment!r} is not in the deployment map")
        if model is None:
            return unpriced(Unpriced.UNKNOWN_MODEL,
                            f"no model in the event nor in the deployment map for {key.deployment!r}")
        capacity = self.capacity.on(key.deployment, key.day)
        if key.spillover and (capacity or is_provisioned_type(deployment.deployment_type)):
            # Billed pay-as-you-go at the standard deployment Azure spilled it to, capacity or not.
            target = self.deployments.get(deployment.spillover_deployment or "")
            if target is None:
                return unpriced(Unpriced.NO_SPILLOVER_DEPLOYMENT, f"spilled over from provisioned deployment "
                                f"{key.deployment!r}, whose deployment-map row names no spillover_deployment: name "
                                "the standard deployment that serves its overflow")
            return self._pay_as_you_go(key, cost_center, target.model or model, target)
        if capacity:
            return Resolution(cost_center, model, deployment_type, None, None, "",
                              provisioned_currency=capacity[0].currency)
        if is_provisioned_type(deployment.deployment_type):
            return unpriced(Unpriced.NO_CAPACITY, f"provisioned deployment {key.deployment!r} has no capacity "
                            f"row in force on {key.day} (provisioned-capacity file)", tier="")
        return self._pay_as_you_go(key, cost_center, model, deployment)

    def _pay_as_you_go(self, key: UsageKey, cost_center: str, model: str, priced_by: Deployment) -> Resolution:
        """Priced per token at `priced_by`'s deployment type and region, at the key's tier."""
        deployment_type, tier = priced_by.deployment_type, key.service_tier
        price = self.catalog.find(model, deployment_type, priced_by.region, key.day, tier)
        spilled = f", spilled over to {priced_by.name!r}" if key.spillover else ""
        where = (f"{model} ({deployment_type}, region {priced_by.region or '*'}"
                 f"{'' if tier == STANDARD else f', service tier {tier}'}{spilled}) on {key.day}")
        if price is None:
            return Resolution(cost_center, model, deployment_type, None, Unpriced.NO_PRICE, f"no price for {where}",
                              service_tier=tier, spillover=key.spillover)
        if not price.prices_audio(bool(key.audio & AUDIO_PROMPT), bool(key.audio & AUDIO_COMPLETION)):
            missing = [column for column, bit, value in (("audio_input_per_1m", AUDIO_PROMPT, price.audio_input_per_1m),
                                                         ("audio_output_per_1m", AUDIO_COMPLETION,
                                                          price.audio_output_per_1m))
                       if key.audio & bit and value is None]
            return Resolution(cost_center, model, deployment_type, None, Unpriced.NO_PRICE,
                              f"no audio price for {where}: the request has audio tokens and "
                              f"{price.origin or 'its catalog row'} has no {' or '.join(missing)}",
                              service_tier=tier, spillover=key.spillover)
        return Resolution(cost_center, model, deployment_type, price, None, "", self.catalog.version,
                          service_tier=tier, spillover=key.spillover)


class PeriodMemo:
    """Resolutions kept per reference period: the days between two effective-date boundaries
    resolve a key alike, so a month of daily groups costs one resolution per key and period.
    A resolution whose detail names the day (no price, no capacity) is computed for each day."""

    def __init__(self, boundaries: Iterable[date]) -> None:
        self.boundaries = sorted(set(boundaries))
        self._kept: dict[tuple[object, ...], Resolution] = {}
        # The parts Reference._resolve makes a resolution of, per period (pipeline.domain.costing).
        self.centers: dict[tuple[object, ...], str] = {}
        self.rests: dict[tuple[object, ...], Resolution] = {}
        self.wholes: dict[tuple[str, int], Resolution] = {}

    def get(self, key: UsageKey, resolve: Callable[[UsageKey, int], Resolution]) -> Resolution:
        """The key's resolution, from `resolve(key, number of the key's period)` the first time."""
        number = bisect_right(self.boundaries, key.day)
        period = (number, key.subscription_id, key.cost_center_sent, key.deployment, key.model, key.state,
                  key.service_tier, key.spillover, key.audio)
        kept = self._kept.get(period)
        if kept is not None:
            return kept
        resolved = resolve(key, number)
        if not names_day(resolved):
            self._kept[period] = resolved
        return resolved


DAY_IN_DETAIL = frozenset({Unpriced.NO_PRICE, Unpriced.NO_CAPACITY})


def names_day(resolution: Resolution) -> bool:
    """Whether the resolution (or the one it corrects) has a detail that names the key's day."""
    uncorrected = resolution.uncorrected
    return resolution.unpriced in DAY_IN_DETAIL or (uncorrected is not None and uncorrected.unpriced in DAY_IN_DETAIL)


@dataclass(frozen=True, slots=True)
class CostLine:
    """Priced (or explicitly unpriced) usage of one resolution key."""

    key: UsageKey
    resolution: Resolution
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    audio_prompt_tokens: int = 0  # of prompt_tokens
    audio_completion_tokens: int = 0  # of completion_tokens
    # the cost, computed once on first use (a report reads it for its monthly and its daily rows)
    _cost: tuple[Decimal | None] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cost(self) -> Decimal | None:
        kept = self._cost
        if kept is None:
            kept = (self._compute_cost(),)
            object.__setattr__(self, "_cost", kept)
        return kept[0]

    def _compute_cost(self) -> Decimal | None:
        price = self.resolution.price
        if price is None:
            return Decimal(0) if self.resolution.provisioned else None
        return price.cost(self.prompt_tokens, self.cached_tokens, self.completion_tokens, self.audio_prompt_tokens,
                          self.audio_completion_tokens)
