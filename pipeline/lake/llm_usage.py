"""The `llm-usage` area: the token counts of APIM's LLM logs as Parquet files
`date=YYYY-MM-DD/<hash>.parquet` (written by pipeline.stages.llm_usage, read back and
deduplicated by the warehouse)."""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.domain.llm_logs import LlmUsage
from pipeline.lake.usage import TIMESTAMP
from pipeline.ports import ObjectStore

LLM_USAGE_SCHEMA = pa.schema([
    pa.field("join_id", pa.string(), nullable=False), pa.field("time", TIMESTAMP, nullable=False),
    pa.field("prompt_tokens", pa.int64(), nullable=False), pa.field("completion_tokens", pa.int64(), nullable=False),
    pa.field("total_tokens", pa.int64(), nullable=False), pa.field("cached_tokens", pa.int64()),
    pa.field("deployment", pa.string()), pa.field("model", pa.string()), pa.field("operation", pa.string()),
    pa.field("is_stream", pa.bool_()), pa.field("region", pa.string()), pa.field("sequence_number", pa.int64()),
    pa.field("request_id", pa.string()),
], metadata={"chargeback.table": "llm_usage", "chargeback.schema_version": "1"})


def batch_files(records: Iterable[LlmUsage]) -> dict[str, bytes]:
    """{`date=YYYY-MM-DD/<sha256 of the day's records>.parquet`: Parquet bytes}."""
    by_day: dict[date, list[LlmUsage]] = defaultdict(list)
    for record in records:
        by_day[record.time.date()].append(record)
    files = {}
    for day, day_records in sorted(by_day.items()):
        encoded = sorted(msgspec.json.encode(record) for record in day_records)
        digest = hashlib.sha256(b"\n".join(encoded)).hexdigest()[:32]
        table = pa.Table.from_pylist([msgspec.structs.asdict(r) for r in day_records], schema=LLM_USAGE_SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        files[f"date={day.isoformat()}/{digest}.parquet"] = sink.getvalue()
    return files


COMPACT_PREFIX = "compact-"  # `date=D/compact-<hash>.parquet` and its note `.json` (pipeline.stages.llm_compaction)


class CompactionNote(msgspec.Struct, frozen=True):
    """The files a compacted file holds every record of: readers that list both leave them out."""

    replaces: list[str]
    created: datetime


_decode_note = msgspec.json.Decoder(CompactionNote).decode


def read_note(store: ObjectStore, key: str) -> CompactionNote | None:
    """A compaction's note; None when it is gone or not one (its files are then read as well)."""
    data = store.get(key)
    try:
        return None if data is None else _decode_note(data)
    except msgspec.DecodeError:
        return None


def llm_usage_keys(store: ObjectStore, days: tuple[date, date] | None = None) -> list[str]:
    """The stored files, optionally of the days in [start - 1, end + 1) only: a request's log
    record and its event both carry the request's start, but two clocks may put them either side
    of midnight. The files a compacted file listed with its note holds are left out."""
    keys, notes = [], []
    for key in store.list(""):
        day = file_day(key)
        if day is None or (days is not None and not days[0] - timedelta(days=1) <= day < days[1] + timedelta(days=1)):
            continue
        if key.endswith(".parquet"):
            keys.append(key)
        elif key.endswith(".json") and key.rsplit("/", 1)[-1].startswith(COMPACT_PREFIX):
            notes.append(key)
    present = set(keys)
    covered = {source for key in notes if key.removesuffix(".json") + ".parquet" in present
               and (note := read_note(store, key)) is not None for source in note.replaces}
    return [key for key in keys if key not in covered]


def file_day(key: str) -> date | None:
    """The UTC day of a stored file, from its key (`date=YYYY-MM-DD/...`); None for another key."""
    try:
        return date.fromisoformat(key.split("/", 1)[0].removeprefix("date="))
    except ValueError:
        return None


def latest_record_time(store: ObjectStore) -> datetime | None:
    """The time of the newest stored record (the request time it logs), read from the files of
    the latest day only; None when nothing is stored."""
    days = {key: day for key in store.list("") if key.endswith(".parquet") and (day := file_day(key)) is not None}
    if not days:
        return None
    last = max(days.values())
    times: list[datetime] = [moment for key, day in days.items() if day == last and (data := store.get(key)) is not None
                             for moment in pq.read_table(pa.BufferReader(data), columns=["time"])["time"].to_pylist()]
    return max(times).astimezone(UTC) if times else None
