"""The ports: what the stages need from storage, and the one error hierarchy.

Embedded adapters ship in `pipeline.adapters.embedded`, the Azure ones in
`pipeline.adapters.azure`; both implement these protocols, and only `pipeline.app` picks one.

Errors: every error raised on purpose derives from `ChargebackError`. `UserError`: a mistake the
user can fix (a setting, a file, an option), told in one line. `BackendUnavailable`: a backend
cannot be reached or refuses now (an outage, throttling past the retry budget); adapters raise
it in the terms of their port (`LedgerUnavailable`, `CountersUnavailable`, `StoreUnavailable`),
so no stage ever looks at which driver failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from pipeline.domain.counters import HourlyRow
from pipeline.domain.errors import ChargebackError, UserError
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import BudgetAlert, LiveCharge, SubscriptionMonth

if TYPE_CHECKING:  # the decoder is loaded by what decodes: a report or a query never does
    import pyarrow as pa
    import pyarrow.fs as pafs

    from pipeline.domain.decode import RawMessage, Rejection

__all__ = [
    "AccessRefused", "AppendResult", "BackendUnavailable", "Changes", "ChargebackError", "CountResult", "Counters",
    "CountersUnavailable", "DeadLetters", "HourlyRow", "Ledger", "LedgerUnavailable", "MissingResource", "ObjectStore",
    "Pending",
    "SourceError", "StoreUnavailable", "UserError",
]


class BackendUnavailable(ChargebackError):
    """A backend cannot be reached, or keeps refusing, now: try again later (nothing was lost)."""


class LedgerUnavailable(BackendUnavailable):
    """The ledger kept refusing (throttling, transient errors) past its retry budget."""


class CountersUnavailable(BackendUnavailable):
    """The live counters' store is unreachable, timed out, read-only or locked."""


class StoreUnavailable(BackendUnavailable):
    """The object store cannot be reached or refuses now."""


class SourceError(UserError):
    """A source of events that cannot be read, with which one and why."""


class MissingResource(UserError):
    """A database, container or index the settings name is not there (a setup step to do)."""


class AccessRefused(UserError):
    """A backend refused the credentials (a wrong key, no Entra ID credential, a missing role)."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    new: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Pending:
    """Events the ledger holds that its change feed does not return yet (Cosmos DB: younger than
    its settle window): how many, and when the newest of them can be read."""

    events: int = 0
    until: datetime | None = None


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

    def pending(self) -> Pending:
        """The events `changes` does not return yet, whatever the cursor (none for a ledger whose
        change feed returns every committed event at once)."""
        ...

    def count(self) -> int: ...

    def probe(self) -> None:
        """Write something no reader sees, read it back and remove it: proves the identity in use
        may write. A refusal raises AccessRefused; an outage, LedgerUnavailable."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CountResult:
    new: int  # events counted now (not counted before)
    alerts: list[BudgetAlert]  # budget thresholds first reached by this call


class Counters(Protocol):
    """Live view: requests and tokens per subscription x deployment x hour; requests, tokens and
    spend per subscription x month and per cost center x month; budget alerts. `add` is
    idempotent by eventId on its own, so a redelivered batch never counts twice. An outage of
    the store raises CountersUnavailable."""

    def add(self, events: Sequence[UsageEvent], charges: Sequence[LiveCharge]) -> CountResult:
        """Count the events not counted before (charges[i] belongs to events[i])."""
        ...

    def month_to_date(self, month: str) -> list[SubscriptionMonth]:
        """Every subscription's totals for the month (YYYY-MM), by subscription id."""
        ...

    def cost_center_spend(self, month: str) -> dict[str, int]:
        """Month-to-date spend in micro-units per cost center."""
        ...

    def hourly(self, subscription_id: str, hour_prefix: str = "") -> list[HourlyRow]:
        """The subscription's hourly rows whose hour (`YYYY-MM-DDTHH`) starts with hour_prefix,
        by deployment and hour."""
        ...

    def alerts(self, month: str) -> list[BudgetAlert]: ...

    def clear_month(self, month: str) -> None:
        """Remove the month's sums (hourly, subscription, cost center); marks and alerts stay.
        Reconcile calls it before counting the month again from the ledger."""
        ...

    def forget(self, event_ids: Sequence[str]) -> None:
        """Remove the dedupe marks of these events, so that `add` counts them again."""
        ...

    def probe(self) -> None:
        """Write a key no reader sees, read it back and remove it: proves the identity in use may
        write. A refusal raises AccessRefused; an outage, CountersUnavailable."""
        ...

    def close(self) -> None: ...


class DeadLetters(Protocol):
    def put(self, rejections: Sequence[Rejection]) -> str | None:
        """Store rejected events durably; returns where, or None when there were none."""
        ...


class MessageBatch(Protocol):
    """Messages not read yet (lines of a file, Capture files' bytes): what a process that decodes
    ahead is sent, to read them there (pipeline.stages.decode_ahead). Picklable."""

    def messages(self) -> list[RawMessage]: ...


@runtime_checkable
class BatchedMessages(Protocol):
    """A source whose messages can be taken in batches read elsewhere: `batches(size)` gives,
    in order, the messages that iterating it gives (as MessageBatch, or as lists read here)."""

    def batches(self, size: int) -> Iterator[MessageBatch | list[RawMessage]]: ...


class ObjectStore(Protocol):
    """Files by key under one root (a local folder, or a Blob container). Writes are atomic:
    readers see a whole object or none."""

    url: str
    # The folder the objects are files in, when they are on this machine (None: remote), so that
    # DuckDB may read them itself.
    local_root: Path | None

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        """Write atomically. With overwrite=False an existing object is kept and False returned."""
        ...

    def get(self, key: str) -> bytes | None: ...

    def exists(self, key: str) -> bool:
        """Whether there is an object at `key`, without reading it (a folder is not one)."""
        ...

    def open(self, key: str) -> BinaryIO | None:
        """The object as a readable, seekable stream (a local file is streamed, not read whole);
        None when there is no such object."""
        ...

    def list(self, prefix: str, starting: str = "") -> list[str]:
        """The keys under the folder `prefix` ("" for all), sorted, relative to the root; with
        `starting`, only those whose name in that folder starts with it (one request for a
        thousand numbered manifests on Blob Storage, instead of a listing of all of them)."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the object; False when there was none (another writer removed it first)."""
        ...

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        """(pyarrow filesystem, base path): the object of `key` is at `f"{base}/{key}"` in it, so
        that pyarrow.dataset and DuckDB read Parquet where it is, with no copy."""
        ...
