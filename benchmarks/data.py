"""Benchmark data, generated with numpy (vectorised; the generator is never the bottleneck):

- `json_events`: raw apim-usage v1 events as the APIM policy sends them (~560-620 bytes), in
  time order, with ~1% redeliveries (byte-identical copies of recent events) and a few
  malformed events, like the demo traffic but for an enterprise of `benchmarks.world`.
- `write_snapshot`: a month of usage written DIRECTLY as the snapshot stage would publish it:
  Parquet files in USAGE_SCHEMA (zstd, 1M-row groups) under `usage/date=YYYY-MM-DD/`, committed
  by `_manifests/00000001.json` (pipeline.stages.snapshot.Manifest). Nothing is ingested.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.world import DEPLOYMENTS, ENVS, REGIONS, TENANT, World
from pipeline.lake.manifests import MANIFEST_PREFIX, SNAPSHOT_LAYOUT, USAGE_PREFIX, Manifest, PublishedFile
from pipeline.lake.rollups import ROLLUP_LAYOUT, RollupMaker, rollup_key
from pipeline.lake.usage import USAGE_SCHEMA
from pipeline.stages.snapshot import ROW_GROUP_ROWS

GENERATOR_VERSION = "6"  # bump when the data changes: cached snapshots are regenerated (6: rollups/v1/)
DAY_US = 86_400_000_000
STATUS = np.array([200, 429, 500, 400], dtype=np.int16)
STATUS_P = np.array([0.965, 0.02, 0.01, 0.005])
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_KIND = np.array([{"chat": 0, "reasoning": 1, "embedding": 2}[d.kind] for d in DEPLOYMENTS], dtype=np.int8)


def _uuid_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random version-4 UUIDs as an (n, 36) uint8 array of their text."""
    digits = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    digits[:, 12] = 4  # version
    digits[:, 16] = 8 + (digits[:, 16] & 3)  # variant
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, stop, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        text[:, at:at + stop - start] = _HEX[digits[:, start:stop]]
    return text


def draw(world: World, n: int, rng: np.random.Generator, start_us: int, end_us: int) -> dict[str, np.ndarray]:
    """The columns of n events in [start_us, end_us) (microseconds since the epoch), time-sorted."""
    weights = np.array([s.weight for s in world.subscriptions])
    sub = rng.choice(len(weights), size=n, p=weights / weights.sum()).astype(np.int32)
    # Each subscription's own deployment mix: cumulative weights per subscription, one draw each.
    mix = np.zeros((len(world.subscriptions), len(DEPLOYMENTS)))
    for number, s in enumerate(world.subscriptions):
        mix[number, list(s.deployments)] = s.deployment_weights
    cumulative = np.cumsum(mix / mix.sum(axis=1, keepdims=True), axis=1)
    dep = np.argmax(cumulative[sub] > (rng.random(n) * (1 - 1e-9))[:, None], axis=1).astype(np.int32)
    kind = _KIND[dep]
    status = STATUS[rng.choice(4, size=n, p=STATUS_P)]
    stream = (kind != 2) & (rng.random(n) < 0.3)
    ok = status == 200
    has_usage = ok & ~(stream & (rng.random(n) < 0.1))
    prompt = (rng.lognormal(6.5, 1.0, n).astype(np.int64) + 1).clip(max=400_000)
    completion = np.where(kind == 2, 0, (rng.lognormal(5.0, 1.0, n).astype(np.int64) + 1).clip(max=100_000))
    cached = np.where((kind != 2) & (prompt >= 1024) & (rng.random(n) < 0.4), (prompt // 1024) * 1024, 0)
    reasoning = np.where(kind == 1, (completion * rng.uniform(0.3, 0.8, n)).astype(np.int64), 0)
    return {
        "event_id": _uuid_bytes(rng, n),
        "ts": np.sort(rng.integers(start_us, end_us, size=n, dtype=np.int64)),
        "sub": sub, "dep": dep, "status": status, "stream": stream, "ok": ok, "has_usage": has_usage,
        "prompt": prompt, "completion": completion, "cached": cached, "reasoning": reasoning,
        "duration": rng.integers(80, 30_000, size=n, dtype=np.int64),
        "region": rng.integers(0, len(REGIONS), size=n, dtype=np.int8),
        "tagged": rng.random(n) < 0.5,
        "user": np.where(rng.random(n) < 0.6, rng.integers(0, world.user_pool, size=n), -1),
        "partition": rng.integers(0, 32, size=n, dtype=np.int16),
        "lag_us": rng.integers(50_000, 3_000_000, size=n, dtype=np.int64),
    }


def _user_id(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


@cache
def _user_ids(count: int) -> list[str]:
    return [_user_id(number) for number in range(count)]


def _month_us(world: World) -> tuple[int, int]:
    days = world.days()
    start = datetime.combine(days[0], datetime.min.time(), UTC)
    return int(start.timestamp()) * 1_000_000, int(start.timestamp()) * 1_000_000 + len(days) * DAY_US


# ------------------------------------------------------------------------------------------ JSON events

_MALFORMED = (
    b"this is not json",
    b'{"schemaVersion":1,"eventId":"truncated-',
    b'{"schemaVersion":1,"eventId":"sum-1","timestamp":"2026-10-02T09:00:00Z","subscriptionId":"sub-x",'
    b'"deployment":"gpt41-global","stream":false,"statusCode":200,"durationMs":120,"usageSource":"response",'
    b'"usage":{"promptTokens":10,"completionTokens":5,"totalTokens":99}}',
    b"",
)


def json_events(world: World, n: int, seed: int = 1, duplicates: float = 0.01, malformed: int = 10,
                day: date | None = None) -> list[bytes]:
    """n raw events in time order, of one day (what a partition delivers: a day of an enterprise's
    traffic is about 1M events) or of the whole month; ~`duplicates` of them are redeliveries of a
    recent event and `malformed` are bad (not JSON, truncated, inconsistent, empty)."""
    rng = np.random.default_rng(seed)
    if day is None:
        start, end = _month_us(world)
    else:
        start = int(datetime.combine(day, datetime.min.time(), UTC).timestamp()) * 1_000_000
        end = start + DAY_US
    c = draw(world, n, rng, start, end)
    stamps = np.datetime_as_string(c["ts"].astype("datetime64[us]"), unit="us").tolist()
    ids = c["event_id"].view("S36").ravel().tolist()
    subs = [
        (f'"subscriptionId":"{s.subscription_id}","productId":"{s.product_id}","apiId":"azure-openai",'
         f'"callerAppId":"{s.app_id}","callerTenantId":"{TENANT}",'
         f'"costCenter":{json.dumps(s.header)}').encode()
        for s in world.subscriptions
    ]
    envs = [f'{{"env":"{ENVS[number // 20 % len(ENVS)]}"}}'.encode() for number in range(len(world.subscriptions))]
    deps = [
        (f'"deployment":"{d.name}","operationId":"{"embeddings" if d.kind == "embedding" else "chat-completions"}"',
         f'"{d.event_model}"'.encode())
        for d in DEPLOYMENTS
    ]
    regions = [f'"{r}"'.encode() for r in REGIONS]
    lines: list[bytes] = []
    columns = zip(ids, stamps, c["sub"].tolist(), c["dep"].tolist(), c["status"].tolist(), c["stream"].tolist(),
                  c["ok"].tolist(), c["has_usage"].tolist(), c["prompt"].tolist(), c["completion"].tolist(),
                  c["cached"].tolist(), c["reasoning"].tolist(), c["duration"].tolist(), c["region"].tolist(),
                  c["tagged"].tolist(), c["user"].tolist(), strict=True)
    for (event_id, stamp, sub, dep, status, stream, ok, has_usage, prompt, completion, cached, reasoning,
         duration, region, tagged, user) in columns:
        name, model = deps[dep]
        usage = (b'{"promptTokens":%d,"completionTokens":%d,"totalTokens":%d,"cachedTokens":%d,'
                 b'"reasoningTokens":%d}' % (prompt, completion, prompt + completion, cached, reasoning)
                 if has_usage else b"null")
        source = b"none" if not ok else (b"stream" if stream else b"response")
        lines.append(
            b'{"schemaVersion":1,"eventId":"%s","timestamp":"%sZ",%s,%s,"model":%s,"region":%s,"stream":%s,'
            b'"statusCode":%d,"durationMs":%d,"usage":%s,"usageSource":"%s","callerObjectId":%s,"tags":%s}' % (
                event_id, stamp.encode(), subs[sub], name.encode(), model if ok else b"null", regions[region],
                b"true" if stream else b"false", status, duration, usage, source,
                b'"%s"' % _user_id(user).encode() if user >= 0 else b"null", envs[sub] if tagged else b"null"))
    # Redeliveries: a copy of an event up to ~1000 places earlier replaces an event.
    copies = np.flatnonzero(rng.random(n) < duplicates)
    copies = copies[copies > 0]
    for index, back in zip(copies.tolist(), rng.integers(1, 1000, size=copies.size).tolist(), strict=True):
        lines[index] = lines[max(0, index - back)]
    for index, bad in zip(rng.choice(n, size=min(malformed, n), replace=False).tolist(),
                          (_MALFORMED * (malformed // len(_MALFORMED) + 1))[:malformed], strict=False):
        lines[index] = bad
    return lines


# ------------------------------------------------------------------------------------------ Parquet snapshot

def _strings(values: list[str], indices: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    array = pc.take(pa.array(values, pa.string()), pa.array(indices))
    return array if valid is None else pc.if_else(pa.array(valid), array, pa.scalar(None, pa.string()))


def _fixed_strings(text: np.ndarray) -> pa.Array:
    """An (n, width) uint8 array of text as a string array."""
    n, width = text.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(text)))


def _optional(values: np.ndarray, valid: np.ndarray, kind: pa.DataType) -> pa.Array:
    return pa.array(values, kind, mask=~valid)


def day_table(world: World, n: int, rng: np.random.Generator, day: date) -> pa.Table:
    """n events of one UTC day as a USAGE_SCHEMA table."""
    start = int(datetime.combine(day, datetime.min.time(), UTC).timestamp()) * 1_000_000
    c = draw(world, n, rng, start, start + DAY_US)
    subs, deps = world.subscriptions, DEPLOYMENTS
    sub, dep, u = c["sub"], c["dep"], c["has_usage"]
    timestamp = pa.array(c["ts"], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    sequence = pa.array(np.arange(n, dtype=np.int64) * 7 + 1_000_000)
    partition = c["partition"].astype(np.int64)
    enqueued = c["ts"] + c["lag_us"]
    user_ids = _user_ids(world.user_pool)
    tags_offsets = np.zeros(n + 1, dtype=np.int32)
    tags_offsets[1:] = np.cumsum(c["tagged"])
    env_of = np.array([number // 20 % len(ENVS) for number in range(len(subs))])
    tagged_subs = sub[c["tagged"]]
    tags = pa.MapArray.from_arrays(
        pa.array(tags_offsets), pa.array(["env"] * int(c["tagged"].sum()), pa.string()),
        _strings(list(ENVS), env_of[tagged_subs]),
        mask=pa.array(~c["tagged"]),
    )
    headers = [s.header or "" for s in subs]
    has_header = np.array([s.header is not None for s in subs])[sub]
    source = np.where(~c["ok"], 2, np.where(c["stream"], 1, 0))
    columns = {
        "event_id": _fixed_strings(c["event_id"]),
        "timestamp": timestamp,
        "subscription_id": _strings([s.subscription_id for s in subs], sub),
        "product_id": _strings([s.product_id for s in subs], sub),
        "api_id": _strings(["azure-openai"], np.zeros(n, dtype=np.int8)),
        "operation_id": _strings(["chat-completions", "embeddings"], (_KIND[dep] == 2).astype(np.int8)),
        "caller_app_id": _strings([s.app_id for s in subs], sub),
        "caller_tenant_id": _strings([TENANT], np.zeros(n, dtype=np.int8)),
        "caller_object_id": _strings(user_ids, np.maximum(c["user"], 0), c["user"] >= 0),
        "cost_center": _strings(headers, sub, has_header),
        "deployment": _strings([d.name for d in deps], dep),
        "model": _strings([d.event_model for d in deps], dep, c["ok"]),
        "region": _strings(list(REGIONS), c["region"]),
        "stream": pa.array(c["stream"]),
        "status_code": pa.array(c["status"], pa.int16()),
        "duration_ms": pa.array(c["duration"], pa.int64()),
        "usage_source": _strings(["response", "stream", "none"], source),
        "prompt_tokens": _optional(c["prompt"], u, pa.int64()),
        "completion_tokens": _optional(c["completion"], u, pa.int64()),
        "total_tokens": _optional(c["prompt"] + c["completion"], u, pa.int64()),
        "cached_tokens": _optional(c["cached"], u, pa.int64()),
        "reasoning_tokens": _optional(c["reasoning"], u, pa.int64()),
        "tags": tags,
        "extra": pa.nulls(n, pa.string()),
        "source": _strings(["eventhub:evhns-chargeback/apim-usage"], np.zeros(n, dtype=np.int8)),
        "source_position": pc.binary_join_element_wise(
            "partition ", pc.cast(pa.array(partition), pa.string()), ", sequence ", pc.cast(sequence, pa.string()),
            ""),
        "eventhub_partition": pc.cast(pa.array(partition), pa.string()),
        "eventhub_sequence_number": sequence,
        "eventhub_offset": pc.cast(pc.multiply(sequence, 640), pa.string()),
        "eventhub_enqueued_time": pa.array(enqueued, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "schema_version": pa.array(np.ones(n, dtype=np.int8)),
        "ledger_seq": pa.nulls(n, pa.int64()),  # the Cosmos DB ledger has no sequence
        "ingested_at": pa.array(enqueued + 900_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        **{name: pa.nulls(n, USAGE_SCHEMA.field(name).type)  # the fields added to v1: not drawn here
           for name in ("service_tier", "service_tier_source", "spillover", "audio_prompt_tokens",
                        "audio_completion_tokens")},
        "gateway_timeout": pa.array(np.zeros(n, dtype=bool)),  # the world's tags never say a gateway timed out
    }
    return pa.Table.from_pydict(columns, schema=USAGE_SCHEMA)


def day_counts(world: World, n: int, rng: np.random.Generator) -> list[int]:
    """n events spread over the month's days, weekends at 40% of a weekday."""
    days = world.days()
    weights = np.array([0.4 if day.weekday() >= 5 else 1.0 for day in days])
    return [int(count) for count in rng.multinomial(n, weights / weights.sum())]


def write_snapshot(world: World, n: int, root: Path, seed: int = 2, files_per_day: int = 1) -> Manifest:
    """n events of the world's month as published snapshot files under `root`, committed by
    manifest 1. Returns the manifest."""
    rng = np.random.default_rng(seed)
    files: list[PublishedFile] = []
    run = f"bench{seed:04d}"
    rollups = RollupMaker()  # each file with its rollup, as pipeline.stages.snapshot writes them
    for day, count in zip(world.days(), day_counts(world, n, rng), strict=True):
        table = day_table(world, count, rng, day)
        for part, rows in enumerate(np.array_split(np.arange(count), files_per_day)):
            if rows.size == 0:
                continue
            key = f"{USAGE_PREFIX}/date={day.isoformat()}/part-{part + 1:08d}-{run}.parquet"
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            chunk = table.slice(int(rows[0]), int(rows.size)).replace_schema_metadata(USAGE_SCHEMA.metadata)
            pq.write_table(chunk, path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            rollup = rollups.rollup(chunk)
            if rollup is None:
                files.append(PublishedFile(key, day, int(rows.size), SNAPSHOT_LAYOUT))
                continue
            (root / rollup_key(key)).parent.mkdir(parents=True, exist_ok=True)
            (root / rollup_key(key)).write_bytes(rollup)
            files.append(PublishedFile(key, day, int(rows.size), SNAPSHOT_LAYOUT, rollup_key(key), ROLLUP_LAYOUT))
    rollups.close()
    manifest = Manifest(1, f"bench-{n}", files, datetime.now(UTC))
    (root / MANIFEST_PREFIX).mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_PREFIX / "00000001.json").write_bytes(msgspec.json.encode(manifest))
    return manifest
