"""One benchmark stage per process: `python -m benchmarks.stages STAGE [options]`.

Each stage runs the pipeline's own code and its bare baseline in the same process, alternating
them (stage, baseline, baseline, stage, ...) so that load from other processes falls on both
alike, and writes every run to `--out` (JSON). `benchmarks.run` starts one process per stage
(one per run for the report, whose peak RSS is that of a whole report process).

Stages and baselines:
  decode    pipeline.domain.decode.decode_batch over RawMessage batches of 5,000 as the Event Hub
            trigger calls it (check_duplicate_keys=False: the production hot path)
            vs msgspec.json.Decoder(UsageEvent).decode in a bare loop over the same bytes;
            also shown: decode_batch with the duplicate-key check (files, stdin, replays)
  redis     LivePricer charges + RedisCounters.add per batch of 5,000 decoded events
            vs a bare Lua script per 500 events (SET NX EX + 4 HINCRBY each), 10 per pipeline;
            also shown: the same in batches of 500, as the Functions app receives them
  cosmos    CosmosLedger.append of the events in batches of 500 (the Functions batch) into a fresh
            container of the Cosmos DB stand-in as scripts/services.sh runs it (its own CLI answers
            `Connection: close`, so every create opens a TLS connection), through the ledger's
            session (TLS contexts built once) vs the same through a plain requests session (a
            context and the CA bundle loaded per connection, as before); also the same batches
            redelivered into a container that holds them all (every create a 409, resolved by
            one lookup query per 256 ids), and the consumer's CPU per event for both
  ingest    pipeline.stages.ingest.ingest into SqliteLedger + SqliteCounters + dead-letter files
            (absolute events/s, target 100k/s; with --time-cap, a run stops taking batches after
            that many seconds and its rate is over the events it ingested)
  snapshot  pipeline.stages.snapshot.snapshot from a filled SQLite ledger (--ledger, else one
            is filled) to a local folder
            vs pyarrow.parquet.write_table of the same rows (zstd, 1M-row groups)
  report    open_warehouse + build_report over a month of Parquet snapshots (one run per process)
            vs one hand-written DuckDB SQL over the same files computing the same totals
  prepare   generate the report's month of snapshots (cached under WORK/data)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from benchmarks.measure import Result, measure, peak_mib
from benchmarks.world import World, make_world, write_reference

if TYPE_CHECKING:
    from pipeline.stages.ingest import IngestResult

NOW = datetime(2026, 11, 2, tzinfo=UTC)  # "now" for the decoder: the events are of 2026-10
MONTH = "2026-10"
DAY = date(2026, 10, 15)  # the day of the events that ingest-side stages take in
BATCH = 5_000  # events per batch of the in-memory ingest stage (files and replays use ingest.DEFAULT_BATCH)
LUA_CHUNK = 500
FUNCTIONS_BATCH = 500  # host.json eventHubs.maxEventBatchSize


def _world() -> World:
    return make_world(MONTH)


def _reference(work: Path) -> tuple[Any, Any, dict[str, Path]]:
    from pipeline.inputs.maps import load_budgets
    from pipeline.inputs.reference import load_reference

    files = write_reference(_world(), work / "reference")
    reference = load_reference(None, files["deployments"], files["cost_centers"])
    return reference, load_budgets(files["budgets"]), files


def _messages(bodies: Sequence[bytes]) -> list[Any]:
    from pipeline.domain.decode import RawMessage

    return [RawMessage(body, "eventhub:evhns-chargeback/apim-usage", f"partition 0, sequence {n}", "0", n)
            for n, body in enumerate(bodies)]


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _alternate(args: argparse.Namespace, pairs: Sequence[tuple[Result, Callable[[], object]]],
               after: Callable[[Result, object], None] | None = None) -> None:
    """Each repeat runs every variant once; the order flips every repeat. Past the time budget
    (--budget seconds), no new repeat starts once --min-repeats are done."""
    began = time.monotonic()
    for repeat in range(args.repeats):
        if repeat >= args.min_repeats and args.budget and time.monotonic() - began > args.budget:
            for result, _ in pairs:
                result.extra["budget_stop"] = f"{repeat} of {args.repeats} runs (time budget {args.budget:g} s)"
            print(f"  time budget of {args.budget:g} s used: {repeat} of {args.repeats} runs", file=sys.stderr)
            break
        for result, run in (pairs if repeat % 2 == 0 else list(reversed(pairs))):
            sample, value = measure(run)
            result.runs.append(sample)
            if after is not None:
                after(result, value)
            print(f"  {result.stage:8s} {result.variant:34s} {sample.seconds:8.3f} s  {sample.peak_mib:7.0f} MiB",
                  file=sys.stderr, flush=True)


def _profile(path: Path | None, run: Callable[[], object]) -> None:
    """Run once more under pyinstrument and write its text report (after the measurements)."""
    if path is None:
        return
    try:
        from pyinstrument import Profiler
    except ImportError:
        path.write_text("pyinstrument is not installed (make bench installs benchmarks/requirements.txt)\n")
        return
    profiler = Profiler(interval=0.001)
    profiler.start()
    run()
    profiler.stop()
    path.write_text(profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False))


# ------------------------------------------------------------------------------------------ decode

def stage_decode(args: argparse.Namespace) -> list[Result]:
    import msgspec

    from benchmarks.data import json_events
    from pipeline.domain.decode import decode_batch
    from pipeline.domain.events import UsageEvent

    bodies = json_events(_world(), args.events, seed=11, day=DAY)
    messages = _messages(bodies)
    batches = list(_batches(messages, BATCH))
    decode = msgspec.json.Decoder(UsageEvent).decode
    errors = (msgspec.DecodeError, msgspec.ValidationError)

    def pipeline() -> int:
        """The Event Hub trigger's call: its producer, the APIM policy, cannot repeat a key."""
        return sum(len(decode_batch(batch, NOW, check_duplicate_keys=False).events) for batch in batches)

    def checked() -> int:
        """Files, stdin and replays: every event's keys are checked for duplicates."""
        return sum(len(decode_batch(batch, NOW).events) for batch in batches)

    def bare() -> int:
        good = 0
        for body in bodies:
            try:
                decode(body)
            except errors:
                continue
            good += 1
        return good

    def kept() -> int:
        """The bare decode keeping each batch's events, as any consumer must: the ceiling of a
        batch decoder (allocation and cache misses that the bare loop's reuse avoids)."""
        good = 0
        for start in range(0, len(bodies), BATCH):
            events = []
            for body in bodies[start:start + BATCH]:
                try:
                    events.append(decode(body))
                except errors:
                    continue
            good += len(events)
        return good

    mean_bytes = sum(map(len, bodies)) / len(bodies)
    stage = Result("decode", "decode_batch, Event Hub (trusted)", "stage", len(bodies), extra={"bytes": mean_bytes})
    base = Result("decode", "bare msgspec typed decode", "baseline", len(bodies), extra={"bytes": mean_bytes})
    files = Result("decode", "  decode_batch + duplicate-key check", "info", len(bodies))
    keep = Result("decode", "  bare decode, batch of 5,000 kept", "info", len(bodies))
    _alternate(args, [(stage, pipeline), (base, bare), (files, checked), (keep, kept)])
    _profile(args.profile, pipeline)
    return [stage, base, files, keep]


# ------------------------------------------------------------------------------------------ redis

_BARE_LUA = """
local ttl, new, a = ARGV[1], 0, 2
for i = 1, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    new = new + 1
    local hourly, monthly, deployment = ARGV[a], ARGV[a + 1], ARGV[a + 2]
    redis.call('HINCRBY', hourly, 'requests|' .. deployment, 1)
    redis.call('HINCRBY', hourly, 'total_tokens|' .. deployment, ARGV[a + 3])
    redis.call('HINCRBY', monthly, 'requests', 1)
    redis.call('HINCRBY', monthly, 'spend_micros', ARGV[a + 4])
  end
  a = a + 5
end
return new
"""


def _redis_url(args: argparse.Namespace) -> str | None:
    import os

    return args.redis_url or os.environ.get("CHARGEBACK_BENCH_REDIS_URL") or os.environ.get(
        "CHARGEBACK_TEST_REDIS_URL")


def stage_redis(args: argparse.Namespace) -> list[Result]:
    import redis

    from benchmarks.data import json_events
    from pipeline.adapters.azure.redis_counters import MARK_TTL, RedisCounters
    from pipeline.domain.counters import hour_key
    from pipeline.domain.decode import decode_batch
    from pipeline.domain.live import LivePricer

    url = _redis_url(args)
    stage = Result("redis", "LivePricer + RedisCounters.add", "stage", args.events)
    base = Result("redis", "bare Lua per 500 (SET NX + 4 HINCRBY)", "baseline", args.events)
    small = Result("redis", "  the same, batches of 500 (Functions)", "info", args.events)
    if not url:
        for result in (stage, base, small):
            result.extra["skipped"] = "no Redis: set CHARGEBACK_BENCH_REDIS_URL"
        return [stage, base, small]
    client = redis.Redis.from_url(url, socket_timeout=120)
    if client.dbsize():
        raise SystemExit(f"{url}: the database is not empty; the benchmark needs a Redis database of its own "
                         "(it flushes it between runs)")
    reference, budgets, _ = _reference(args.work)
    decoded = decode_batch(_messages(json_events(_world(), args.events, seed=12, day=DAY)), NOW)
    events = decoded.events
    batches = list(_batches(events, BATCH))
    charges = LivePricer(reference).charges(events)
    rows = [(event.event_id, hour_key(event), event.subscription_id, event.deployment,
             event.usage.total_tokens if event.usage else 0, charge.micros)
            for event, charge in zip(events, charges, strict=True)]
    sha = client.script_load(_BARE_LUA)

    def pipeline() -> int:
        counters = RedisCounters(client, budgets, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        pricer = LivePricer(reference)
        return sum(counters.add(batch, pricer.charges(batch)).new for batch in batches)

    def functions() -> int:
        """Batches of 500, the Functions app's maxEventBatchSize (host.json): one script call each."""
        counters = RedisCounters(client, budgets, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        pricer = LivePricer(reference)
        return sum(counters.add(batch, pricer.charges(batch)).new for batch in _batches(events, FUNCTIONS_BATCH))

    def bare() -> int:
        tag = "{bare-" + uuid.uuid4().hex[:8] + "}"
        new = 0
        for batch in _batches(rows, BATCH):
            pipe = client.pipeline(transaction=False)
            for chunk in _batches(batch, LUA_CHUNK):
                keys = [f"{tag}:e:{row[0]}" for row in chunk]
                argv: list[str | int] = [MARK_TTL]
                for _, hour, sub, deployment, tokens, micros in chunk:
                    argv += [f"{tag}:h:{hour}:{sub}", f"{tag}:s:{hour[:7]}:{sub}", deployment, tokens, micros]
                pipe.evalsha(sha, len(keys), *keys, *argv)
            new += sum(pipe.execute())
        return new

    def server_seconds() -> float:
        """Seconds the server spent running scripts since the last reset (INFO commandstats)."""
        stats = client.info("commandstats")
        return sum(float(value["usec"]) for name, value in stats.items() if name.startswith("cmdstat_eval")) / 1e6

    def check(result: Result, new: object) -> None:
        result.extra["new"] = new
        result.extra.setdefault("unique", len({event.event_id for event in events}))
        result.extra.setdefault("server_seconds", []).append(round(server_seconds(), 4))
        result.extra.setdefault("used_memory", []).append(int(client.info("memory")["used_memory"]))
        client.flushdb()
        client.config_resetstat()

    client.config_resetstat()
    empty = int(client.info("memory")["used_memory"])
    stage.extra["used_memory_empty"] = base.extra["used_memory_empty"] = small.extra["used_memory_empty"] = empty
    try:
        _alternate(args, [(stage, pipeline), (base, bare), (small, functions)], after=check)
        _profile(args.profile, pipeline)
    finally:
        client.flushdb()
    return [stage, base, small]


# ------------------------------------------------------------------------------------------ Cosmos DB ledger

def stage_cosmos(args: argparse.Namespace) -> list[Result]:
    """Against the stand-in as scripts/services.sh runs it (closing every connection: the 3x
    target of TLS contexts built once) and against one this stage starts with keep-alive, as
    real Cosmos DB keeps connections (the consumer's CPU per create and the redelivery target)."""
    import os

    from azure.core.pipeline.transport import RequestsTransport
    from azure.cosmos import CosmosClient
    from requests import Session
    from requests.adapters import HTTPAdapter

    from benchmarks.data import json_events
    from pipeline.adapters.azure.cosmos_ledger import CosmosLedger
    from pipeline.domain.decode import decode_batch
    from tests.fault_tools import start_cosmos_stand_in, stop_process

    url, key = (args.cosmos_url or os.environ.get("CHARGEBACK_TEST_COSMOS_URL"),
                args.cosmos_key or os.environ.get("CHARGEBACK_TEST_COSMOS_KEY"))
    stage = Result("cosmos", "CosmosLedger.append, contexts once", "stage", args.events)
    plain = Result("cosmos", "  the same, plain requests session", "info", args.events)
    again = Result("cosmos", "  the same batches redelivered", "redelivered", args.events)
    kept = Result("cosmos", "CosmosLedger.append, keep-alive", "keepalive", args.events)
    kept_again = Result("cosmos", "  keep-alive, batches redelivered", "keepalive-redelivered", args.events)
    results = [stage, plain, again, kept, kept_again]
    if not url or not key:
        for result in results:
            result.extra["skipped"] = "no Cosmos DB stand-in: set --cosmos-url and --cosmos-key"
        return results
    events = decode_batch(_messages(json_events(_world(), args.events, seed=14, day=DAY)), NOW).events
    distinct = len({event.event_id for event in events})

    def old_session() -> Session:
        session = Session()
        session.mount("https://", HTTPAdapter(pool_maxsize=16))
        return session

    def check(result: Result, new: object) -> None:
        if new != distinct:
            raise SystemExit(f"cosmos: {new} events created, expected every one of {len(events)}")
        result.extra["created"] = new

    keepalive, keepalive_port = start_cosmos_stand_in(_fresh(args.work / "cosmos-keepalive"), keepalive=True)
    try:
        with _CosmosBench(url, key, events) as closing, \
                _CosmosBench(f"https://127.0.0.1:{keepalive_port}", key, events) as open_:
            def plain_run() -> int:
                client = CosmosClient(url, credential=key,
                                      transport=RequestsTransport(session=old_session(), session_owner=True))
                return closing.run(lambda name: CosmosLedger(
                    client.get_database_client("bench").get_container_client(name), settle_seconds=0, client=client))

            _alternate(args, [(stage, closing.run), (plain, plain_run), (again, closing.redeliver),
                              (kept, open_.run), (kept_again, open_.redeliver)], after=lambda result, value: (
                check(result, value) if result in (stage, plain, kept) else None))
            _profile(args.profile, open_.run)
    finally:
        stop_process(keepalive)
    return results


class _CosmosBench:
    """The stage's runs on one stand-in: appends into a fresh container, and redeliveries of
    every batch into a container that holds them all (each create a 409)."""

    def __init__(self, url: str, key: str, events: list[Any]) -> None:
        from azure.cosmos import CosmosClient

        self._url, self._key, self._events = url, key, events
        self._admin = CosmosClient(url, credential=key)
        self._database = self._admin.create_database_if_not_exists("bench")
        filled = f"ledger-{uuid.uuid4().hex[:8]}"
        self._container(filled)
        self._filled = self._open(filled)
        for batch in _batches(events, FUNCTIONS_BATCH):
            self._filled.append(batch)

    def __enter__(self) -> _CosmosBench:
        return self

    def __exit__(self, *args: object) -> None:
        self._filled.close()
        self._admin.delete_database("bench")
        self._admin.close()

    def _container(self, name: str) -> None:
        from azure.cosmos import PartitionKey

        from pipeline.adapters.azure.cosmos_ledger import INDEXING_POLICY

        self._database.create_container(name, partition_key=PartitionKey("/id"), indexing_policy=INDEXING_POLICY)

    def _open(self, name: str) -> Any:
        from pipeline.adapters.azure.cosmos_ledger import open_cosmos_ledger

        host = self._url.removeprefix("https://").rstrip("/")
        return open_cosmos_ledger(f"cosmos://{host}/bench/{name}", key=self._key, settle_seconds=0)

    def run(self, ledger_for: Callable[[str], Any] | None = None) -> int:
        name = f"ledger-{uuid.uuid4().hex[:8]}"
        self._container(name)
        ledger = (ledger_for or self._open)(name)
        try:
            return sum(ledger.append(batch).new for batch in _batches(self._events, FUNCTIONS_BATCH))
        finally:
            ledger.close()
            self._database.delete_container(name)

    def redeliver(self) -> int:
        duplicates = sum(self._filled.append(batch).duplicates for batch in _batches(self._events, FUNCTIONS_BATCH))
        if duplicates != len(self._events):
            raise SystemExit(f"cosmos: {duplicates} of {len(self._events)} redelivered events refused as duplicates")
        return len({event.event_id for event in self._events})


# ------------------------------------------------------------------------------------------ embedded ingest

def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def stage_ingest(args: argparse.Namespace) -> list[Result]:
    from benchmarks.data import json_events
    from pipeline.adapters.embedded.counters import SqliteCounters
    from pipeline.adapters.embedded.ledger import SqliteLedger
    from pipeline.adapters.embedded.local_store import LocalObjectStore
    from pipeline.domain.live import LivePricer
    from pipeline.lake.dead_letters import DeadLetterFiles
    from pipeline.stages.ingest import ingest

    reference, budgets, _ = _reference(args.work)
    messages = _messages(json_events(_world(), args.events, seed=13, day=DAY))
    home = args.work / "ingest"
    runs = 0

    def feed() -> Iterator[Any]:
        """The messages, batch after batch, until --time-cap seconds have passed (then the rate
        is over the batches ingested: a slow machine still finishes in time)."""
        stop = time.monotonic() + args.time_cap if args.time_cap else None
        for batch in _batches(messages, BATCH):
            if stop is not None and time.monotonic() > stop:
                return
            yield from batch

    def pipeline(folder: Path | None = None) -> object:
        nonlocal runs
        runs += 1
        target = _fresh(folder or home / f"run-{runs}")
        ledger = SqliteLedger(target / "ledger.sqlite")
        counters = SqliteCounters(target / "counters.sqlite", budgets)
        try:
            result = ingest(feed(), ledger, counters, DeadLetterFiles(LocalObjectStore(target / "dead-letters")),
                            LivePricer(reference), batch_size=BATCH, now=NOW)
        finally:
            ledger.close()
            counters.close()
        return result, target

    stage = Result("ingest", "ingest: decode + SQLite ledger + counters", "stage", len(messages))
    kept: list[Path] = []

    def after(result: Result, value: object) -> None:
        outcome, target = cast("tuple[IngestResult, Path]", value)
        result.runs[-1].events = outcome.received
        result.extra.update(ingested=outcome.ingested, duplicates=outcome.duplicates,
                            dead_lettered=outcome.dead_lettered)
        if outcome.received < len(messages):
            result.extra["time_cap"] = f"runs stop after {args.time_cap:g} s: rate over the events ingested by then"
        kept.append(target)

    _alternate(args, [(stage, pipeline)], after=after)
    for folder in kept[:-1]:
        shutil.rmtree(folder, ignore_errors=True)
    if kept:  # the snapshot stage reads the last run's ledger
        stage.extra["ledger"] = str(kept[-1] / "ledger.sqlite")
    if args.profile:
        _profile(args.profile, lambda: pipeline(home / "profile"))
        shutil.rmtree(home / "profile", ignore_errors=True)
    return [stage]


# ------------------------------------------------------------------------------------------ snapshot

def stage_snapshot(args: argparse.Namespace) -> list[Result]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.data import json_events
    from pipeline.adapters.embedded.ledger import SqliteLedger
    from pipeline.adapters.embedded.local_store import LocalObjectStore
    from pipeline.domain.decode import decode_batch
    from pipeline.stages.snapshot import ROW_GROUP_ROWS, snapshot

    path = Path(args.ledger) if args.ledger else args.work / "snapshot-ledger" / "ledger.sqlite"
    ledger = SqliteLedger(path)
    if ledger.count() == 0:
        print(f"  filling {path} ...", file=sys.stderr, flush=True)
        for batch in _batches(_messages(json_events(_world(), args.events, seed=13, day=DAY)), BATCH):
            ledger.append(decode_batch(batch, NOW).events)
    rows = ledger.count()
    out = args.work / "snapshot-out"
    runs = 0

    def pipeline() -> object:
        nonlocal runs
        runs += 1
        return snapshot(ledger, LocalObjectStore(_fresh(out / f"store-{runs}")))

    def changes() -> object:
        return ledger.changes(None, rows).table

    # The baseline's rows: the same Arrow table, kept in a file and memory-mapped for each run
    # (zero-copy), so that the snapshot's runs do not carry it in their peak RSS.
    source = _fresh(args.work / "snapshot-rows") / "rows.arrow"
    table = ledger.changes(None, rows).table
    with pa.OSFile(str(source), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    del table

    def bare() -> object:
        target = _fresh(out / "bare") / "usage.parquet"
        with pa.memory_map(str(source)) as mapped:
            pq.write_table(pa.ipc.open_file(mapped).read_all(), target, compression="zstd",
                           row_group_size=ROW_GROUP_ROWS)
        return target.stat().st_size

    stage = Result("snapshot", "snapshot (ledger -> Parquet files)", "stage", rows)
    base = Result("snapshot", "bare pq.write_table, same rows", "baseline", rows)
    part = Result("snapshot", "  part of it: ledger.changes (SQLite -> Arrow)", "info", rows)

    def after(result: Result, value: object) -> None:
        if result is stage:
            result.extra["files"] = len(value.files)  # type: ignore[attr-defined]
        elif result is base:
            result.extra["bytes"] = value
        shutil.rmtree(out, ignore_errors=True)

    began = time.monotonic()
    _alternate(args, [(stage, pipeline), (base, bare)], after=after)
    if args.repeats and (not args.budget or time.monotonic() - began < args.budget):
        # Once, when time is left: where the snapshot's time goes, without a profiler's overhead.
        _alternate(argparse.Namespace(repeats=1, min_repeats=1, budget=0), [(part, changes)])
    _profile(args.profile, pipeline)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(source.parent, ignore_errors=True)
    ledger.close()
    return [stage, base, part]


# ------------------------------------------------------------------------------------------ report

def snapshot_root(work: Path, events: int, files_per_day: int = 1) -> Path:
    from benchmarks.data import GENERATOR_VERSION

    shape = "" if files_per_day == 1 else f"-{files_per_day}-a-day"
    return work / "data" / f"snapshot-{events}{shape}-v{GENERATOR_VERSION}"


def stage_prepare(args: argparse.Namespace) -> list[Result]:
    """The month's snapshot files, one a day; or, with --files-per-day 96, as the Functions app
    leaves them (a file a day at every 15-minute run, each settled day then given one day rollup)."""
    from benchmarks.data import write_snapshot

    root = snapshot_root(args.work, args.events, args.files_per_day)
    done = root / ".complete"
    result = Result("prepare", f"generate {args.events:,}-event snapshot, {args.files_per_day} file(s) a day", "info",
                    args.events)
    if done.exists():
        result.extra["cached"] = str(root)
        return [result]
    shutil.rmtree(root, ignore_errors=True)
    sample, manifest = measure(lambda: write_snapshot(_world(), args.events, root, files_per_day=args.files_per_day))
    if args.files_per_day > 1:
        from pipeline.adapters.embedded.local_store import LocalObjectStore
        from pipeline.stages.day_rollups import roll_up_days

        roll_up_days(LocalObjectStore(root), date.fromisoformat(f"{MONTH}-01") + timedelta(days=40))
    done.write_text("ok\n")
    result.runs.append(sample)
    result.extra.update(files=len(manifest.files),  # type: ignore[attr-defined]
                        bytes=sum(p.stat().st_size for p in root.rglob("*.parquet")))
    return [result]




def _report_pipeline(root: Path, files: dict[str, Path], costs_view: bool, rollups: bool = True) -> list[list[Any]]:
    from pipeline.adapters.embedded.local_store import LocalObjectStore
    from pipeline.domain.periods import month_bounds
    from pipeline.inputs.reference import load_reference
    from pipeline.lake.warehouse import open_warehouse
    from pipeline.stages.report.build import build_report

    reference = load_reference(None, files["deployments"], files["cost_centers"])
    warehouse = open_warehouse(LocalObjectStore(root), reference if costs_view else None, month_bounds(MONTH),
                               rollups=rollups)
    report = build_report(warehouse, reference, MONTH)
    return [[row.cost_center, row.subscription_id, row.model, row.deployment_type, row.currency, row.requests,
             row.prompt_tokens, row.cached_tokens, row.completion_tokens, None if row.cost is None else str(row.cost)]
            for row in report.rows]


def _report_duckdb(root: Path, files: dict[str, Path]) -> list[list[Any]]:
    from benchmarks.report_sql import month_rows
    from pipeline.inputs.catalog import shipped_catalog_path

    return month_rows(root, MONTH, files["deployments"], files["cost_centers"], shipped_catalog_path())


def stage_report(args: argparse.Namespace) -> list[Result]:
    """ONE run of one variant (a report is a process of its own), its rows to --rows-out."""
    root = snapshot_root(args.work, args.events)
    if not (root / ".complete").exists():
        raise SystemExit(f"{root}: no generated snapshot; run the prepare stage first")
    files = write_reference(_world(), args.work / "reference")
    runs = {
        # What `chargeback report` and the daily timer run (bootstrap.period_report): no `costs` view.
        "pipeline": ("report: open_warehouse + build_report", "stage",
                     lambda: _report_pipeline(root, files, costs_view=False)),
        "events": ("  same, summing the files' events (their rollups not read)", "info",
                   lambda: _report_pipeline(root, files, costs_view=False, rollups=False)),
        "with-costs-view": ("  same, warehouse also with the `costs` view (as `query`)", "info",
                            lambda: _report_pipeline(root, files, costs_view=True)),
        "duckdb": ("hand-written DuckDB SQL, same totals", "baseline", lambda: _report_duckdb(root, files)),
    }
    name, role, run = runs[args.variant]
    result = Result("report", name, role, args.events)
    sample, rows = measure(run)
    # The whole process's peak (imports included): what a report process needs.
    sample.peak_mib = max(sample.peak_mib, peak_mib())
    result.runs.append(sample)
    result.extra["variant"] = args.variant
    if args.rows_out:
        Path(args.rows_out).write_text(json.dumps(rows))
    if args.profile:
        _profile(args.profile, run)
    return [result]


STAGES: dict[str, Callable[[argparse.Namespace], list[Result]]] = {
    "decode": stage_decode, "redis": stage_redis, "cosmos": stage_cosmos, "ingest": stage_ingest,
    "snapshot": stage_snapshot, "report": stage_report, "prepare": stage_prepare,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-repeats", type=int, default=2, help="runs done even past the time budget")
    parser.add_argument("--budget", type=float, default=0, help="seconds; 0: no budget")
    parser.add_argument("--time-cap", type=float, default=0, help="ingest: seconds per run at most; 0: no cap")
    parser.add_argument("--work", type=Path, default=Path(".bench"))
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    parser.add_argument("--profile", type=Path, help="profile one more run with pyinstrument, text to this file")
    parser.add_argument("--redis-url")
    parser.add_argument("--cosmos-url", help="cosmos: the stand-in's https://HOST:PORT")
    parser.add_argument("--cosmos-key", help="cosmos: the stand-in's (public emulator) key")
    parser.add_argument("--ledger", help="snapshot: a filled SQLite ledger (else one is filled)")
    parser.add_argument("--variant", default="pipeline", help="report: pipeline, events, with-costs-view or duckdb")
    parser.add_argument("--rows-out", help="report: write the report rows here (JSON)")
    parser.add_argument("--files-per-day", type=int, default=1,
                        help="prepare: snapshot files a day (96: 15-minute runs)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results = STAGES[args.stage](args)
    payload = json.dumps([result.as_dict() for result in results], indent=1)
    if args.out:
        args.out.write_text(payload)
    else:
        print(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
