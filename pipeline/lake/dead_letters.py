"""The `dead-letters` area: JSON-lines objects `date=YYYY-MM-DD/HHMMSS-<id>.jsonl`, one per
rejecting batch, written by `DeadLetterFiles` (the DeadLetters port) and read back for replays.

Each line keeps the raw bytes exactly (as text when they are UTF-8, else base64), the reason,
and where the event came from, so that ops can fix the cause and replay it.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from pipeline.domain.decode import RawMessage, Rejection
from pipeline.domain.periods import ALL_TIME, TimeRange
from pipeline.ports import ObjectStore, SourceError

_POSITION = re.compile(r"partition (?P<partition>[^,]+), sequence (?P<sequence>\d+)")
_DEAD_LETTER_DAY = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/")


class DeadLetterRecord(msgspec.Struct, rename="camel", omit_defaults=True):
    received_at: datetime
    source: str
    position: str
    code: str
    reason: str
    body: str | None = None
    body_base64: str | None = None


_DECODER = msgspec.json.Decoder(DeadLetterRecord)


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
        return [
            _DECODER.decode(line)
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


def dead_letter_messages(store: ObjectStore, when: TimeRange = ALL_TIME) -> Iterator[RawMessage]:
    """The dead letters received within `when`: their exact raw bytes, with their original source
    and position (and partition and sequence number, when the position names them). The objects
    are listed now, so dead letters written while these are replayed are not read again."""
    keys = []
    for key in store.list(""):
        day = _DEAD_LETTER_DAY.search(key)
        start = datetime.fromisoformat(day.group(1)).replace(tzinfo=UTC) if day else None
        if start is None or when.overlaps(start, start + timedelta(days=1)):
            keys.append(key)
    return _dead_letters(store, keys, when)


def _dead_letters(store: ObjectStore, keys: list[str], when: TimeRange) -> Iterator[RawMessage]:
    for key in keys:
        for number, line in enumerate((store.get(key) or b"").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = _DECODER.decode(line)
            except msgspec.DecodeError as error:
                raise SourceError(f"{store.url}/{key} line {number}: not a dead-letter record ({error})") from None
            if record.received_at not in when:
                continue
            origin = _POSITION.fullmatch(record.position)
            yield RawMessage(raw_body(record), record.source, record.position,
                             partition=origin["partition"] if origin else None,
                             sequence_number=int(origin["sequence"]) if origin else None)

