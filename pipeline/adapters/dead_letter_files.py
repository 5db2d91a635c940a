"""Dead letters as JSON-lines objects in an object store, one object per rejecting batch.

Each line keeps the raw bytes exactly (as text when they are UTF-8, else base64), the reason,
and where the event came from, so that ops can fix the cause and replay it.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from pipeline.domain.decode import Rejection
from pipeline.ports import ObjectStore


class DeadLetterRecord(msgspec.Struct, rename="camel", omit_defaults=True):
    received_at: datetime
    source: str
    position: str
    code: str
    reason: str
    body: str | None = None
    body_base64: str | None = None


class DeadLetterFiles:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def put(self, rejections: Sequence[Rejection]) -> str | None:
        if not rejections:
            return None
        now = datetime.now(UTC)
        lines = [msgspec.json.encode(_record(rejection, now)) for rejection in rejections]
        key = f"date={now:%Y-%m-%d}/{now:%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"
        self.store.put(key, b"\n".join(lines) + b"\n", overwrite=False)
        return f"{self.store.url}/{key}"

    def read(self) -> list[DeadLetterRecord]:
        decoder = msgspec.json.Decoder(DeadLetterRecord)
        return [
            decoder.decode(line)
            for key in self.store.list("")
            for line in (self.store.get(key) or b"").splitlines()
            if line.strip()
        ]


def _record(rejection: Rejection, now: datetime) -> DeadLetterRecord:
    message = rejection.message
    record = DeadLetterRecord(now, message.source, message.position, rejection.code, rejection.reason)
    try:
        record.body = message.body.decode("utf-8")
    except UnicodeDecodeError:
        record.body_base64 = base64.b64encode(message.body).decode("ascii")
    return record


def raw_body(record: DeadLetterRecord) -> bytes:
    """The exact bytes that were rejected."""
    if record.body_base64 is not None:
        return base64.b64decode(record.body_base64)
    return (record.body or "").encode("utf-8")
