"""The ports: what the stages need from storage. Embedded adapters ship in `pipeline.adapters`;
the Azure ones implement the same protocols."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from pipeline.domain.decode import Rejection
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import BudgetAlert, LiveCharge, SubscriptionMonth


@dataclass(frozen=True, slots=True)
class AppendResult:
    new: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Changes:
    """Events appended after a cursor, in the snapshot schema, and the cursor to continue from."""

    table: pa.Table
    cursor: str | None


class Ledger(Protocol):
    """The durable record: append-only, idempotent by eventId, readable as a change feed."""

    def append(self, events: Sequence[UsageEvent]) -> AppendResult:
        """Insert the events whose eventId is new; the first copy of an eventId wins."""
        ...

    def changes(self, cursor: str | None, max_rows: int) -> Changes:
        """Up to max_rows events appended after `cursor` (None: from the beginning). An empty
        table means nothing new; the returned cursor is then the one given. Reading again from
        a cursor returns every event appended after it (possibly more than the first time)."""
        ...

    def existing(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these eventIds the ledger holds (a read: nothing is written). Any number of
        ids; repeats and unknown ids are fine."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CountResult:
    new: int  # events counted now (not counted before)
    alerts: list[BudgetAlert]  # budget thresholds first reached by this call


class Counters(Protocol):
    """Live view: requests and tokens per subscription x deployment x hour; requests, tokens and
    spend per subscription x month and per cost center x month; budget alerts. `add` is
    idempotent by eventId on its own, so a redelivered batch never counts twice."""

    def add(self, events: Sequence[UsageEvent], charges: Sequence[LiveCharge]) -> CountResult:
        """Count the events not counted before (charges[i] belongs to events[i])."""
        ...

    def month_to_date(self, month: str) -> list[SubscriptionMonth]:
        """Every subscription's totals for the month (YYYY-MM), by subscription id."""
        ...

    def cost_center_spend(self, month: str) -> dict[str, int]:
        """Month-to-date spend in micro-units per cost center."""
        ...

    def hourly(self, subscription_id: str, hour_prefix: str = "") -> list[dict[str, object]]:
        """Hourly rows (subscription_id, deployment, hour `YYYY-MM-DDTHH`, measures) whose hour
        starts with hour_prefix."""
        ...

    def alerts(self, month: str) -> list[BudgetAlert]: ...

    def clear_month(self, month: str) -> None:
        """Remove the month's sums (hourly, subscription, cost center); marks and alerts stay.
        Reconcile calls it before counting the month again from the ledger."""
        ...

    def forget(self, event_ids: Sequence[str]) -> None:
        """Remove the dedupe marks of these events, so that `add` counts them again."""
        ...

    def close(self) -> None: ...


class DeadLetters(Protocol):
    def put(self, rejections: Sequence[Rejection]) -> str | None:
        """Store rejected events durably; returns where, or None when there were none."""
        ...


class ObjectStore(Protocol):
    """Files by key under one root (a local folder, or a Blob container). Writes are atomic:
    readers see a whole object or none."""

    url: str

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        """Write atomically. With overwrite=False an existing object is kept and False returned."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def list(self, prefix: str) -> list[str]: ...
