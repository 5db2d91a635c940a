"""What the live counters count: the measures per subscription x deployment x hour, per
subscription x month and per cost center x month, and the UTC hour an event counts in. Every
Counters adapter (pipeline.ports) stores these and reads them back as these rows."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import msgspec

from pipeline.domain.events import UsageEvent
from pipeline.domain.live import LiveCharge

TOKENS = ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")
HOURLY = ("requests", *TOKENS)
MONTHLY = ("requests", *TOKENS, "spend_micros", "unpriced_requests")
COST_CENTER_MEASURES = ("requests", "spend_micros")


class HourlyRow(msgspec.Struct, frozen=True, gc=False):
    """One subscription's requests and tokens on one deployment in one UTC hour (`YYYY-MM-DDTHH`).
    (A struct rather than a frozen dataclass: `reconcile` reads one per counted hour, hundreds of
    thousands in a month, and a frozen dataclass's __init__ sets each field through Python.)"""

    subscription_id: str
    deployment: str
    hour: str
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0

    def measures(self) -> dict[str, int]:
        """{measure: value} for the names of HOURLY."""
        return {name: int(getattr(self, name)) for name in HOURLY}


Key = tuple[str, ...]


class SumRows(NamedTuple):
    """Sums as rows to add to the counters' tables: (subscription, deployment, hour, *HOURLY),
    (subscription, month, *MONTHLY) and (cost center, month, *COST_CENTER_MEASURES)."""

    hourly: list[tuple[Any, ...]]
    monthly: list[tuple[Any, ...]]
    cost_centers: list[tuple[Any, ...]]


def _hourly_sums() -> list[int]:
    return [0] * len(HOURLY)


def _monthly_sums() -> list[int]:
    return [0] * len(MONTHLY)


def _cost_center_sums() -> list[int]:
    return [0] * len(COST_CENTER_MEASURES)


@dataclass(slots=True)
class Tally:
    """The sums of some events, as the counters keep them: HOURLY per (subscription, deployment,
    hour), MONTHLY per (subscription, month), COST_CENTER_MEASURES per (cost center, month)."""

    hourly: dict[Key, list[int]] = field(default_factory=lambda: defaultdict(_hourly_sums))
    monthly: dict[Key, list[int]] = field(default_factory=lambda: defaultdict(_monthly_sums))
    cost_centers: dict[Key, list[int]] = field(default_factory=lambda: defaultdict(_cost_center_sums))

    def rows(self) -> SumRows:
        return SumRows([(*k, *v) for k, v in self.hourly.items()], [(*k, *v) for k, v in self.monthly.items()],
                       [(*k, *v) for k, v in self.cost_centers.items()])

    def add(self, pairs: Iterable[tuple[UsageEvent, LiveCharge]]) -> None:
        """Add each event with its live charge (every event counts: dedupe is the caller's)."""
        hourly, monthly, cost_centers = self.hourly, self.monthly, self.cost_centers
        for event, charge in pairs:
            hour = hour_key(event)
            month = hour[:7]
            usage = event.usage
            h = hourly.get((event.subscription_id, event.deployment, hour))
            if h is None:  # a new key keeps one copy of its names, however many keys share them
                h = hourly[(sys.intern(event.subscription_id), sys.intern(event.deployment), hour)]
            m = monthly[(event.subscription_id, month)]
            c = cost_centers[(charge.cost_center, month)]
            h[0] += 1
            m[0] += 1
            c[0] += 1
            c[1] += charge.micros
            m[6] += charge.micros
            if not charge.priced:
                m[7] += 1
            if usage is not None:
                for total in (h, m):  # HOURLY and MONTHLY share the order requests, *TOKENS
                    total[1] += usage.prompt_tokens
                    total[2] += usage.cached_tokens
                    total[3] += usage.completion_tokens
                    total[4] += usage.reasoning_tokens
                    total[5] += usage.total_tokens


def hour_key(event: UsageEvent) -> str:
    """`YYYY-MM-DDTHH` of the event's UTC timestamp."""
    return hour_text(int(event.timestamp.timestamp()) // 3600)


@lru_cache(maxsize=4096)  # a batch spans few hours
def hour_text(number: int) -> str:
    """`YYYY-MM-DDTHH` of the UTC hour `number` hours after 1970-01-01T00."""
    return datetime.fromtimestamp(number * 3600, UTC).strftime("%Y-%m-%dT%H")
