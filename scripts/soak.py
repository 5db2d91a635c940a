"""Soak: the ingest path at volume on loopback, through the real adapters (Cosmos DB ledger on the
stand-in, Redis counters on redis-server), with concurrent consumers and duplicate deliveries.
Bounded in count (--events) and in time (--minutes); exact totals checked at the end; RSS sampled;
throughput printed. Not part of `make test`: run `make soak` (or `.venv/bin/python scripts/soak.py`).

    python scripts/soak.py --events 100000 --minutes 10 --consumers 2 --duplicates 0.01

It starts its own redis-server and Cosmos DB stand-in on free 127.0.0.1 ports (stopped by PID at
the end), so the servers of `make test` are never loaded with soak data. The stand-in answers with
`Connection: close` by default; `--stand-in-keepalive` (the default here) starts it with keep-alive,
as real Cosmos DB keeps connections, because a new TLS connection per create costs the Python
client ~30 ms of CPU (the CA bundle is loaded for each one) and would measure that instead.

Consumer k of n ingests the events numbered k, k+n, k+2n, ... (its partition) in batches, and
redelivers a `--duplicates` share of deliveries: an earlier event of its own partition or of
another (as after a rebalance), so consumers race over the same eventIds. When time runs out the
consumers stop after their current batch; the expected totals are those of what was delivered.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.fault_tools import RedisServer, start_cosmos_stand_in, stop_process  # noqa: E402

MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_SECONDS = 31 * 86_400
DEPLOYMENTS = (("chat-gpt4o", "gpt-4o", "global"), ("chat-mini", "gpt-4o-mini", "global"),
               ("chat-41", "gpt-4.1-mini", "datazone"))
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="  # public
MEASURES = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
            "spend_micros", "unpriced_requests")


@dataclass(frozen=True)
class Plan:
    events: int
    consumers: int
    duplicates: float
    batch: int
    deadline: float  # time.time() after which consumers stop
    run: str
    ledger_url: str
    cosmos_key: str
    redis_url: str
    home: str
    seed: int


def fields(n: int) -> tuple[str, str, int, int, int, datetime]:
    """Subscription, deployment, prompt, completion and cached tokens, and timestamp of event n."""
    deployment = DEPLOYMENTS[n % 3][0]
    prompt = 50 + (n * 7919) % 4000
    completion = (n * 104_729) % 900
    cached = prompt // 4 if n % 5 == 0 else 0
    moment = MONTH_START + timedelta(seconds=(n * 2_654_435_761) % MONTH_SECONDS)
    return f"sub-{n % 7}", deployment, prompt, completion, cached, moment


def body(run: str, n: int) -> bytes:
    sub, deployment, prompt, completion, cached, moment = fields(n)
    return (f'{{"schemaVersion":1,"eventId":"soak-{run}-{n:09d}","timestamp":"{moment:%Y-%m-%dT%H:%M:%S}Z",'
            f'"subscriptionId":"{sub}","productId":"p","apiId":"azure-openai","operationId":"chat",'
            f'"callerAppId":"app-{n % 11}","deployment":"{deployment}","model":null,"region":"West Europe",'
            f'"stream":false,"statusCode":200,"durationMs":{n % 5000},"usage":{{"promptTokens":{prompt},'
            f'"completionTokens":{completion},"totalTokens":{prompt + completion},"cachedTokens":{cached},'
            f'"reasoningTokens":0}},"usageSource":"response","tags":null}}').encode()


def consume(plan: Plan, index: int, reports: multiprocessing.Queue[object]) -> None:
    """One consumer process: its partition's events in batches through ingest_batch."""
    from pipeline.adapters.azure.cosmos_ledger import open_cosmos_ledger
    from pipeline.adapters.azure.redis_counters import open_redis_counters
    from pipeline.adapters.embedded.local_store import LocalObjectStore
    from pipeline.domain.decode import RawMessage
    from pipeline.domain.live import Budgets, LivePricer
    from pipeline.inputs.reference import load_reference
    from pipeline.lake.dead_letters import DeadLetterFiles
    from pipeline.stages.ingest import IngestResult, ingest_batch

    home = Path(plan.home)
    ledger = open_cosmos_ledger(plan.ledger_url, key=plan.cosmos_key, settle_seconds=0)
    counters = open_redis_counters(plan.redis_url, Budgets())
    dead_letters = DeadLetterFiles(LocalObjectStore(home / f"dead-letters-{index}"))
    pricer = LivePricer(load_reference(None, home / "deployments.csv", None))
    chance = random.Random(plan.seed * 1000 + index)
    own = range(index, plan.events, plan.consumers)
    total, redelivered, last, position = IngestResult(), [], -1, 0
    reported = time.monotonic()
    while position < len(own) and time.time() < plan.deadline:
        batch: list[RawMessage] = []
        while len(batch) < plan.batch and position < len(own):
            if last >= plan.consumers and chance.random() < plan.duplicates:
                n = max(0, last - chance.randrange(1, 2000))  # a recent event, of any partition
                redelivered.append(n)
            else:
                n = last = own[position]
                position += 1
            batch.append(RawMessage(body(plan.run, n), f"soak:{index}", str(n)))
        result = ingest_batch(batch, ledger, counters, dead_letters, pricer)
        if result.counters_degraded:
            raise RuntimeError(f"consumer {index}: counters degraded: {result.counters_error}")
        total.add(result)
        if time.monotonic() - reported > 2:
            reports.put(("progress", index, total.received, total.ingested, total.duplicates))
            reported = time.monotonic()
    ledger.close()
    counters.close()
    reports.put(("done", index, total.received, total.ingested, total.duplicates, total.dead_lettered, last,
                 redelivered, psutil.Process().memory_info().rss // 2**20))  # its RSS at the end, in MiB


def expected_totals(plan: Plan, events: set[int]) -> dict[str, list[int]]:
    """Month-to-date per subscription when each delivered event counts once."""
    from pipeline.domain.events import Usage, UsageEvent
    from pipeline.domain.live import LivePricer
    from pipeline.inputs.reference import load_reference

    pricer = LivePricer(load_reference(None, Path(plan.home) / "deployments.csv", None))
    totals: dict[str, list[int]] = defaultdict(lambda: [0] * len(MEASURES))
    for n in sorted(events):
        sub, deployment, prompt, completion, cached, moment = fields(n)
        charge = pricer.charge(UsageEvent(1, f"e{n}", moment, sub, deployment, False, 200, 0, "response",
                                          Usage(prompt, completion, prompt + completion, cached, 0)))
        row = totals[sub]
        for i, value in enumerate((1, prompt, cached, completion, 0, prompt + completion, charge.micros,
                                   0 if charge.priced else 1)):
            row[i] += value
    return dict(totals)


@dataclass
class Sampler:
    processes: dict[str, psutil.Process]
    rows: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def sample(self, elapsed: float) -> dict[str, int]:
        rss = {}
        for name, process in self.processes.items():
            try:
                rss[name] = process.memory_info().rss // 2**20
            except psutil.Error:
                rss[name] = -1
        self.rows.append((elapsed, rss))
        return rss


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="distinct events (default 100,000)")
    parser.add_argument("--minutes", type=float, default=10.0, help="time bound for ingest (default 10)")
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--duplicates", type=float, default=0.01, help="share of deliveries that are redeliveries")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (host.json maxEventBatchSize)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-stand-in-keepalive", dest="keepalive", action="store_false",
                        help="run the stand-in as `make test` does: a new connection per request")
    args = parser.parse_args()
    if args.events < 1 or args.consumers < 1 or not 0 <= args.duplicates < 1:
        parser.error("--events and --consumers must be positive, --duplicates in [0, 1)")
    os.environ.setdefault("PYTHONWARNINGS", "ignore:Unverified HTTPS request")  # the stand-in's own cert
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")

    folder = Path(tempfile.mkdtemp(prefix="chargeback-soak-"))
    (folder / "deployments.csv").write_text("deployment,model,deployment_type,region\n" + "".join(
        f"{name},{model},{kind},\n" for name, model, kind in DEPLOYMENTS))
    redis_server = RedisServer(folder / "redis")
    redis_server.start()
    stand_in, port = start_cosmos_stand_in(folder, args.keepalive)
    try:
        from pipeline.adapters.azure.cosmos_ledger import open_cosmos_ledger

        url = f"cosmos://127.0.0.1:{port}/soak/ledger"
        open_cosmos_ledger(url, key=EMULATOR_KEY, create=True, settle_seconds=0).close()
        plan = Plan(args.events, args.consumers, args.duplicates, args.batch, time.time() + args.minutes * 60,
                    uuid.uuid4().hex[:8], url, EMULATOR_KEY, redis_server.url, str(folder), args.seed)
        print(f"soak: {args.events:,} events, {args.consumers} consumers, {args.duplicates:.1%} redeliveries, "
              f"batches of {args.batch}, at most {args.minutes:g} min; stand-in keep-alive {args.keepalive}; "
              f"working in {folder}", flush=True)
        return run(plan, stand_in, redis_server)
    finally:
        stop_process(stand_in)
        redis_server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def run(plan: Plan, stand_in: subprocess.Popen[bytes], redis_server: RedisServer) -> int:
    context = multiprocessing.get_context("spawn")
    reports: multiprocessing.Queue[object] = context.Queue()
    workers = [context.Process(target=consume, args=(plan, index, reports), name=f"consumer-{index}")
               for index in range(plan.consumers)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    assert redis_server.process is not None
    sampler = Sampler({**{w.name: psutil.Process(w.pid) for w in workers if w.pid},
                       "cosmos stand-in": psutil.Process(stand_in.pid),
                       "redis-server": psutil.Process(redis_server.process.pid)})
    progress: dict[int, int] = {}
    finished: dict[int, tuple[Any, ...]] = {}
    last_print = 0.0
    while len(finished) < len(workers):
        try:
            message: Any = reports.get(timeout=1)
        except queue.Empty:
            message = None
            if not any(worker.is_alive() for worker in workers):
                print("soak: a consumer died", file=sys.stderr)
                return 1
        if message is not None:
            progress[message[1]] = message[2]
            if message[0] == "done":
                finished[message[1]] = message
        elapsed = time.monotonic() - started
        if elapsed - last_print >= 15:
            rss = sampler.sample(elapsed)
            received = sum(progress.values())
            print(f"  {elapsed:6.0f} s  received {received:>10,}  {received / elapsed:8,.0f}/s  RSS MiB "
                  + "  ".join(f"{name} {mib}" for name, mib in rss.items()), flush=True)
            last_print = elapsed
    elapsed = time.monotonic() - started
    final_rss = sampler.sample(elapsed) | {f"consumer-{index}": int(done[8]) for index, done in finished.items()}
    for worker in workers:
        worker.join()
    return verify(plan, finished, elapsed, sampler, final_rss)


FULL_COUNT_LIMIT = 20_000  # the stand-in's cross-partition queries slow down quadratically past this
SAMPLE = 1_000


def check_ledger(plan: Plan, events: set[int]) -> list[str]:
    """The ledger holds exactly the delivered events. Up to FULL_COUNT_LIMIT items it counts them
    (COUNT(1)); past that the stand-in takes minutes per query (COUNT over 40,000 items: 35 s, its
    read feed as slow), so each create's own outcome is the count (ingested == distinct events,
    checked by the caller) and a sample is read back by id: delivered events present with their
    tokens, others absent."""
    from azure.cosmos import CosmosClient
    from azure.cosmos.exceptions import CosmosHttpResponseError

    from pipeline.adapters.azure.cosmos_ledger import open_cosmos_ledger

    if len(events) <= FULL_COUNT_LIMIT:
        ledger = open_cosmos_ledger(plan.ledger_url, key=plan.cosmos_key, settle_seconds=0)
        try:
            count = ledger.count()
        finally:
            ledger.close()
        print(f"soak: ledger COUNT(1) = {count:,}")
        return [] if count == len(events) else [f"ledger holds {count:,}, expected {len(events):,}"]
    host = plan.ledger_url.removeprefix("cosmos://").split("/")[0]
    client = CosmosClient(f"https://{host}/", credential=plan.cosmos_key)
    container = client.get_database_client("soak").get_container_client("ledger")
    chance = random.Random(plan.seed)
    present = chance.sample(sorted(events), SAMPLE)
    absent = [chance.randrange(plan.events, plan.events * 2) for _ in range(SAMPLE // 10)]
    failures = []
    try:
        for n in present:
            item = container.read_item(f"soak-{plan.run}-{n:09d}", partition_key=f"soak-{plan.run}-{n:09d}")
            if item["usage"]["promptTokens"] != fields(n)[2]:
                failures.append(f"event {n}: the ledger has {item['usage']}")
        for n in absent:
            try:
                container.read_item(f"soak-{plan.run}-{n:09d}", partition_key=f"soak-{plan.run}-{n:09d}")
                failures.append(f"event {n} was never delivered but is in the ledger")
            except CosmosHttpResponseError as error:  # 404; the stand-in answers a missing item with 500
                if error.status_code not in (404, 500):
                    raise
    finally:
        client.close()
    print(f"soak: ledger read back by id: {len(present):,} delivered events present with their tokens, "
          f"{len(absent)} others absent (no full COUNT past {FULL_COUNT_LIMIT:,} items on the stand-in)")
    return failures


def verify(plan: Plan, finished: dict[int, tuple[Any, ...]], elapsed: float, sampler: Sampler,
           final_rss: dict[str, int]) -> int:
    from pipeline.adapters.azure.redis_counters import open_redis_counters
    from pipeline.domain.live import Budgets

    received, ingested, duplicates, dead = (sum(int(done[i]) for done in finished.values()) for i in (2, 3, 4, 5))
    events: set[int] = set()
    for index, done in finished.items():
        events.update(range(index, int(done[6]) + 1, plan.consumers))  # its own partition up to the last
        events.update(done[7])  # and the redeliveries, which may be of the other partition
    print(f"soak: {received:,} deliveries in {elapsed:,.1f} s = {received / elapsed:,.0f} events/s "
          f"({len(events):,} distinct events, {received - len(events):,} redeliveries)", flush=True)
    failures = []
    if received != ingested + duplicates + dead:
        failures.append(f"received {received} != ingested {ingested} + duplicates {duplicates} + dead {dead}")
    if ingested != len(events) or dead:
        failures.append(f"ingested {ingested:,} (dead-lettered {dead}), expected {len(events):,}")
    failures += check_ledger(plan, events)
    counters = open_redis_counters(plan.redis_url, Budgets())
    try:
        got = {row.subscription_id: [int(getattr(row, m)) for m in MEASURES]
               for row in counters.month_to_date("2026-10")}
    finally:
        counters.close()
    want = expected_totals(plan, events)
    if got != want:
        failures.append(f"counters month_to_date differ: got {got}, expected {want}")
    consumers = [name for name in sampler.processes if name.startswith("consumer")]
    quarter = next((rss for at, rss in sampler.rows if at >= elapsed / 4), sampler.rows[0][1])
    growth = {name: final_rss[name] - quarter[name] for name in consumers}
    print("soak: RSS MiB at 1/4 of the run -> end: " + ", ".join(
        f"{name} {quarter[name]} -> {final_rss[name]}" for name in sampler.processes))
    if any(mib > 64 for mib in growth.values()):
        failures.append(f"consumer memory grew after warm-up: {growth} MiB")
    if failures:
        print("soak: FAILED\n  " + "\n  ".join(failures))
        return 1
    print(f"soak: exact: {ingested:,} created = {len(events):,} distinct events; counters = expected for "
          f"{len(got)} subscriptions x {len(MEASURES)} measures; consumer RSS growth after warm-up {growth} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
