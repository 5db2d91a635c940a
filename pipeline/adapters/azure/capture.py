"""Event Hubs Capture files as a source of raw events for replays, each message with its
partition, sequence number, offset and enqueued time.

Event Hubs Capture (https://learn.microsoft.com/azure/event-hubs/event-hubs-capture-overview and
explore-captured-avro-files): one Avro file per partition and window, named by default
`{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}` (zero-padded)
plus `.avro`, records `Microsoft.ServiceBus.Messaging.EventData` (SequenceNumber long, Offset
string, EnqueuedTimeUtc string, SystemProperties and Properties maps, Body null|bytes). Capture
writes empty files when there is no traffic. Microsoft documents EnqueuedTimeUtc only as a
`string`; real Capture files hold .NET's invariant `M/d/yyyy h:mm:ss tt` (`11/16/2016 4:44:11 PM`,
whole seconds, UTC), and IoT Hub's Avro routing writes the same field in ISO 8601
(`2018-06-11T00:00:08.2250000Z`): `enqueued_time` reads both, and a 24-hour clock.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import fastavro

from pipeline.domain.decode import RawMessage
from pipeline.domain.periods import ALL_TIME, TimeRange
from pipeline.ports import ObjectStore, SourceError

CAPTURE_RECORD = "Microsoft.ServiceBus.Messaging.EventData"
CAPTURE_FIELDS = frozenset({"SequenceNumber", "Offset", "EnqueuedTimeUtc", "Body"})
# Capture names a file for the start of its window (Microsoft's Event Grid sample: 19/11/45.avro
# holds events enqueued 19:12:14-19:12:44), and a window lasts at most 900 s. Files are skipped
# by that name only when it is further than this outside --from/--to, so that a late or
# back-filled file is still read; records are then selected exactly by EnqueuedTimeUtc.
MAX_WINDOW = timedelta(seconds=900)
WINDOW_SLACK = timedelta(hours=1)
_CAPTURE_KEY = re.compile(
    r"(?:^|/)(?P<namespace>[^/]+)/(?P<hub>[^/]+)/(?P<partition>[^/]+)/(?P<year>\d{4})/(?P<month>\d{2})/"
    r"(?P<day>\d{2})/(?P<hour>\d{2})/(?P<minute>\d{2})/(?P<second>\d{2})(?:\.avro|/[^/]+\.avro)?$")
_DOTNET_TIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?(?: ?([AaPp][Mm]))?")
_WINDOW_PARTS = ("year", "month", "day", "hour", "minute", "second")


@dataclass(frozen=True, slots=True)
class CaptureFile:
    key: str
    namespace: str
    hub: str
    partition: str
    window: datetime  # the time in its name: when its capture window began


def capture_files(store: ObjectStore, partitions: Collection[str] = (),
                  when: TimeRange = ALL_TIME) -> list[CaptureFile]:
    """The Capture files under the store's root (the folder or container/prefix above
    {Namespace}) of the given partitions (all when empty) whose window may hold events of `when`,
    in name order: per hub and partition, oldest window first. Names not ending in .avro are not
    Capture files; an .avro name outside the default layout is an error."""
    found = []
    for key in store.list(""):
        match = _CAPTURE_KEY.search(key)
        if match is None:
            if key.endswith(".avro"):
                raise SourceError(f"{store.url}/{key}: not in Capture's layout {{Namespace}}/{{EventHub}}/"
                                  "{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}: replay the folder "
                                  "or prefix above the namespace")
            continue
        parts = match.groupdict()
        try:
            year, month, day, hour, minute, second = (int(parts[name]) for name in _WINDOW_PARTS)
            window = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError as error:
            raise SourceError(f"{store.url}/{key}: no valid time in its name ({error})") from None
        if partitions and parts["partition"] not in partitions:
            continue
        if when.overlaps(window - WINDOW_SLACK, window + MAX_WINDOW + WINDOW_SLACK):
            found.append(CaptureFile(key, parts["namespace"], parts["hub"], parts["partition"], window))
    return found


# Bytes of Capture files per batch handed to a worker: about one event per KiB (the body and
# Capture's envelope), so a batch of 25,000 events is about 25 MiB of files.
BYTES_PER_EVENT = 1024


def capture_messages(store: ObjectStore, files: list[CaptureFile], when: TimeRange = ALL_TIME) -> CaptureMessages:
    """The records of the files enqueued within `when`, with their partition, sequence number,
    offset and enqueued time. A null Body becomes an empty message (dead-lettered as empty)."""
    return CaptureMessages(store, files, when)


@dataclass(frozen=True, slots=True)
class CaptureMessages:
    """The messages of some Capture files: iterate them (read here, a record at a time), or take
    them in batches of whole files whose records a worker process reads (`batches`)."""

    store: ObjectStore
    files: list[CaptureFile]
    when: TimeRange = ALL_TIME

    def __iter__(self) -> Iterator[RawMessage]:
        for file in self.files:
            with _open(self.store, file.key) as data:
                yield from _messages(data, file, f"{self.store.url}/{file.key}", self.when)

    def batches(self, size: int) -> Iterator[CaptureBatch | list[RawMessage]]:
        """The files in batches of about `size` events (by their bytes), in order. A file larger
        than two such batches is read here instead, in lists of `size` messages, so a worker never
        holds more than about two batches. Files on this machine go as paths, read where the
        batch is decoded; a remote store's are read here and go as bytes."""
        limit = size * BYTES_PER_EVENT
        pending: list[tuple[CaptureFile, str, bytes | Path]] = []
        held = 0
        for file in self.files:
            where = f"{self.store.url}/{file.key}"
            content, length = self._content(file, where, 2 * limit)
            if length > 2 * limit:
                if pending:
                    yield CaptureBatch(pending, self.when)
                    pending, held = [], 0
                with _open(self.store, file.key) as data:
                    stream = _messages(data, file, where, self.when)
                    while messages := list(islice(stream, size)):
                        yield messages
                continue
            pending.append((file, where, content))
            held += length
            if held >= limit:
                yield CaptureBatch(pending, self.when)
                pending, held = [], 0
        if pending:
            yield CaptureBatch(pending, self.when)

    def _content(self, file: CaptureFile, where: str, most: int) -> tuple[bytes | Path, int]:
        """The file's path (on this machine) or bytes (remote), and its size: of a remote file
        over `most` bytes, only the first `most` + 1 are read (it is streamed afterwards)."""
        if self.store.local_root is not None:
            path = self.store.local_root / file.key
            try:
                return path, path.stat().st_size
            except FileNotFoundError:
                raise _gone(where) from None
        with _open(self.store, file.key) as data:
            content = data.read(most + 1)
        return content, len(content)


@dataclass(frozen=True, slots=True)
class CaptureBatch:
    """Whole Capture files, as bytes or as paths on this machine, read where `messages` is
    called (a worker process)."""

    files: list[tuple[CaptureFile, str, bytes | Path]]  # the file, where it is read from, its bytes or path
    when: TimeRange = ALL_TIME

    def messages(self) -> list[RawMessage]:
        return [message for file, where, content in self.files
                for message in _messages(io.BytesIO(_read(content, where)), file, where, self.when)]


def _read(content: bytes | Path, where: str) -> bytes:
    if isinstance(content, bytes):
        return content
    try:
        return content.read_bytes()
    except FileNotFoundError:
        raise _gone(where) from None


def _messages(data: BinaryIO, file: CaptureFile, where: str, when: TimeRange) -> Iterator[RawMessage]:
    source = f"capture:{file.namespace}/{file.hub}"
    for record in _capture_records(data, where):
        enqueued = enqueued_time(record["EnqueuedTimeUtc"], where)
        if enqueued not in when:
            continue
        sequence = int(record["SequenceNumber"])
        yield RawMessage(record["Body"] or b"", source, f"partition {file.partition}, sequence {sequence}",
                         partition=file.partition, sequence_number=sequence, offset=str(record["Offset"]),
                         enqueued_time=enqueued)


def _capture_records(data: BinaryIO, where: str) -> Iterator[dict[str, Any]]:
    if not data.read(1):
        return  # a zero-byte object holds no records
    data.seek(0)
    try:
        reader = fastavro.reader(data)
    except Exception as error:  # whatever fastavro raises on a header it cannot read
        raise SourceError(f"{where}: not a readable Avro file ({error})") from None
    schema = reader.writer_schema
    names = {field.get("name") for field in schema.get("fields", [])} if isinstance(schema, dict) else set()
    if not isinstance(schema, dict) or schema.get("name") != CAPTURE_RECORD or not names >= CAPTURE_FIELDS:
        raise SourceError(f"{where}: an Avro file, but not of Event Hubs Capture's {CAPTURE_RECORD} records")
    records = iter(reader)
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as error:  # a damaged or truncated block
            raise SourceError(f"{where}: unreadable Avro data after the header ({error!r})") from None
        if not isinstance(record, dict):
            raise SourceError(f"{where}: an Avro record that is not a record")
        yield record


def _open(store: ObjectStore, key: str) -> BinaryIO:
    data = store.open(key)  # a local file is streamed: Capture files can be hundreds of MB
    if data is None:
        raise _gone(f"{store.url}/{key}")
    return data


def _gone(where: str) -> SourceError:
    return SourceError(f"{where}: gone while reading")


def enqueued_time(text: str, where: str = "") -> datetime:
    """EnqueuedTimeUtc as an aware UTC datetime: `11/26/2026 5:40:32 AM` (Capture), the same on a
    24-hour clock, or ISO 8601 (`2026-11-26T05:40:32.1234567Z`; no offset means UTC)."""
    try:
        return _parsed_time(text)
    except ValueError as error:
        raise SourceError(f"{where + ': ' if where else ''}EnqueuedTimeUtc {text!r} is in no known format ({error})") \
            from None


@functools.lru_cache(maxsize=4096)  # Capture's times are whole seconds: a busy file repeats each one
def _parsed_time(text: str) -> datetime:
    match = _DOTNET_TIME.fullmatch(text.strip())
    if match:
        month, day, year, hour, minute, second, fraction, half = match.groups()
        hour_of_day = int(hour)
        if half is not None:
            if not 1 <= hour_of_day <= 12:
                raise ValueError(f"hour {hour_of_day} on a 12-hour clock")
            hour_of_day = hour_of_day % 12 + (12 if half.lower() == "pm" else 0)
        micros = int((fraction or "0").ljust(6, "0")[:6])
        return datetime(int(year), int(month), int(day), hour_of_day, int(minute), int(second), micros, tzinfo=UTC)
    moment = datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
