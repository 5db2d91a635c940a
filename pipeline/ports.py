"""The ports: what the stages need from storage. Embedded adapters ship in `pipeline.adapters`;
the Azure ones implement the same protocols."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from pipeline.domain.decode import Rejection
from pipeline.domain.events import UsageEvent


@dataclass(frozen=True, slots=True)
class AppendResult:
    new: int
    duplicates: int


class Ledger(Protocol):
    """The durable record: append-only, idempotent by eventId, readable in append order."""

    def append(self, events: Sequence[UsageEvent]) -> AppendResult: ...

    def head(self) -> int:
        """The cursor of the latest appended event (0 when empty)."""
        ...

    def read(self, after: int, upto: int, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Events with cursor in (after, upto], in the snapshot schema, in cursor order."""
        ...

    def count(self) -> int: ...


class Counters(Protocol):
    """Live view: requests and tokens per subscription x deployment x hour and per subscription x
    month. `add` is idempotent by eventId on its own, so a redelivered batch never counts twice."""

    def add(self, events: Sequence[UsageEvent]) -> int:
        """Count the events not counted before; returns how many were new."""
        ...

    def monthly(self, month: str) -> list[dict[str, object]]: ...


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
