"""The whole pipeline on the real local servers: Cosmos DB stand-in (ledger), redis-server
(counters) and Azurite (snapshots, dead letters), chosen by the settings' URLs exactly as in
production. Two consumers race over overlapping batches; every CLI command gives the same
results as on the embedded defaults."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from pipeline.app import open_pipeline
from pipeline.domain.decode import RawMessage
from pipeline.entrypoints.cli import main
from pipeline.settings import Settings
from pipeline.stages.ingest import ingest_batch
from tests.conftest import SETTINGS_VARIABLES
from tests.factories import event, jsonl, line, usage
from tests.servers import CosmosEndpoint

DEPLOYMENTS = "deployment,model,deployment_type,region\nchat-gpt4o,gpt-4o,global,\n"
TOTAL = 400
COST_CENTERS = "subscription_id,cost_center,effective_from,effective_to\nsub-a,CC-A,2026-01-01,\n"


@pytest.fixture
def azure_env(tmp_path: Path, redis_url: str, azurite_connection_string: str, cosmos_endpoint: CosmosEndpoint,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment variables that point every backend at a fresh place on the real servers."""
    name = f"t{uuid.uuid4().hex[:12]}"
    database = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(database).flushdb()
    host = cosmos_endpoint.url.removeprefix("https://").rstrip("/")
    env = {
        "CHARGEBACK_HOME": str(tmp_path / "home"),
        "CHARGEBACK_LEDGER": f"cosmos://{host}/{name}/ledger",
        "CHARGEBACK_COSMOS_KEY": cosmos_endpoint.key,
        "CHARGEBACK_COSMOS_SETTLE_SECONDS": "0",  # one writer at a time in these tests
        "CHARGEBACK_COUNTERS": database,
        "CHARGEBACK_STORE": f"az://{name}/chargeback",
        "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string,
        "CHARGEBACK_CREATE_RESOURCES": "1",
    }
    for variable in SETTINGS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    home = Path(env["CHARGEBACK_HOME"])
    home.mkdir()
    (home / "deployments.csv").write_text(DEPLOYMENTS)
    (home / "cost-centers.csv").write_text(COST_CENTERS)
    yield env
    redis.Redis.from_url(database).flushdb()


def _events(count: int) -> list[dict[str, Any]]:
    return [event(eventId=f"race-{n:05d}", subscriptionId=f"sub-{'ab'[n % 2]}", deployment="chat-gpt4o",
                  timestamp=f"2026-10-{1 + n % 28:02d}T{n % 24:02d}:15:00Z", usage=usage(100 + n, 10 + n % 7))
            for n in range(count)]


def test_two_consumers_over_overlapping_batches_count_every_event_once(azure_env: dict[str, str]) -> None:
    events = _events(TOTAL)
    messages = [RawMessage(line(body), "eventhub:test/usage", f"sequence {n}") for n, body in enumerate(events)]
    # Consumer A sees events 0-249 in batches of 50; B sees 150-399 in batches of 75 (the last
    # one shorter): the overlap lands in both, as after a partition rebalance.
    plans = [[messages[i:i + 50] for i in range(0, 250, 50)],
             [messages[i:min(i + 75, TOTAL)] for i in range(150, TOTAL, 75)]]
    pipelines = [open_pipeline(Settings.from_env()) for _ in plans]
    ingested = [0, 0]
    start = threading.Barrier(len(plans))

    def consume(index: int) -> None:
        start.wait()
        for batch in plans[index]:
            result = ingest_batch(batch, pipelines[index].ledger, pipelines[index].counters,
                                  pipelines[index].dead_letters, pipelines[index].pricer)
            ingested[index] += result.ingested

    threads = [threading.Thread(target=consume, args=(index,)) for index in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        ledger, counters = pipelines[0].ledger, pipelines[0].counters
        assert sum(ingested) == ledger.count() == TOTAL
        totals = {row.subscription_id: (row.requests, row.prompt_tokens, row.completion_tokens, row.spend_micros)
                  for row in counters.month_to_date("2026-10")}
        for subscription, parity in (("sub-a", 0), ("sub-b", 1)):
            mine = [n for n in range(TOTAL) if n % 2 == parity]
            prompt = sum(100 + n for n in mine)
            completion = sum(10 + n % 7 for n in mine)
            # gpt-4o global: 2.50 per 1M input, 10.00 per 1M output; per event, in micro-USD
            spend = sum(round((100 + n) * 2.5 + (10 + n % 7) * 10) for n in mine)
            assert totals[subscription] == (TOTAL // 2, prompt, completion, spend)
    finally:
        for opened in pipelines:
            opened.close()


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_works_on_the_real_servers_as_on_the_embedded_defaults(
        azure_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [*_events(60), event(eventId="race-00001"), event(statusCode=429, usage=None, usageSource="none")]
    source = tmp_path / "events.jsonl"
    source.write_bytes(jsonl(bodies) + b"not json\n")

    def pipeline_run(out: Path) -> tuple[str, str, str, str]:
        ingested = run("ingest", str(source))
        run("snapshot")
        run("report", "--month", "2026-10", "--out", str(out), "--format", "csv,parquet,focus")
        queried = run("query", "SELECT cost_center, sum(cost) AS cost, count(*) AS n FROM costs "
                               "WHERE month = '2026-10' GROUP BY ALL ORDER BY ALL", "--format", "csv")
        focus = run("query", "SELECT x_CostCenter, SkuMeter, sum(BilledCost) AS billed FROM focus "
                             "GROUP BY ALL ORDER BY ALL", "--format", "csv")
        return ingested, queried, run("usage", "--month", "2026-10"), focus

    on_azure = pipeline_run(tmp_path / "azure")
    for variable in azure_env:
        if variable != "CHARGEBACK_HOME":
            monkeypatch.delenv(variable)
    monkeypatch.setenv("CHARGEBACK_HOME", str(tmp_path / "embedded"))
    (tmp_path / "embedded").mkdir()
    for name in ("deployments.csv", "cost-centers.csv"):
        (tmp_path / "embedded" / name).write_text((Path(azure_env["CHARGEBACK_HOME"]) / name).read_text())
    embedded = pipeline_run(tmp_path / "embedded-out")

    assert "ingested 61, duplicates 1, dead-lettered 1" in on_azure[0].replace("\n", " ")
    assert on_azure[1] == embedded[1]  # same query result
    assert on_azure[2] == embedded[2]  # same live usage
    assert on_azure[3] == embedded[3] and "Input Tokens" in on_azure[3]  # the focus view over Blob and a folder
    for name in ("chargeback-2026-10.csv", "chargeback-2026-10-unpriced.csv", "chargeback-2026-10-focus.csv"):
        assert (tmp_path / "azure" / name).read_bytes() == (tmp_path / "embedded-out" / name).read_bytes()
    assert "CC-A" in on_azure[1]


def test_the_snapshot_timer_rolls_up_earlier_files_on_blob_storage(azure_env: dict[str, str]) -> None:
    """The Functions path of the backfill on Azurite: manifests rewritten as before rollups, one
    rollup deleted besides; one timer backfill lists the rollups' folder on Blob Storage, rolls
    up every file and notes it; the next reads that note only."""
    import msgspec

    from pipeline.app import open_store
    from pipeline.entrypoints.functions import timers
    from pipeline.lake.areas import SNAPSHOTS
    from pipeline.lake.manifests import MANIFEST_PREFIX, published_files
    from pipeline.lake.rollups import ROLLUP_LAYOUT, rolled_up_note_key

    settings = Settings.from_env()
    source = Path(azure_env["CHARGEBACK_HOME"]) / "days.jsonl"
    source.write_bytes(jsonl([event(timestamp=f"2026-10-0{day}T10:00:00Z") for day in (1, 2, 3, 4)]))
    run("ingest", str(source))
    assert timers.snapshot_ledger(settings).rows == 4
    store = open_store(settings, SNAPSHOTS)
    files = published_files(store)
    assert len(files) == 4 and all(file.rollup_layout == ROLLUP_LAYOUT for file in files)
    for key in store.list(MANIFEST_PREFIX):
        written = msgspec.json.decode(store.get(key) or b"")
        for file in written["files"][:3]:  # three as before rollups; the fourth's rollup deleted
            file.update(rollup=None, rollup_layout=0)
        store.put(key, msgspec.json.encode(written), overwrite=True)
    assert store.delete(files[3].rollup or "")
    assert store.delete(rolled_up_note_key())  # the snapshot that began the store wrote it: as before rollups

    done = timers.backfill_snapshots(settings)
    assert done is not None and (done.files, done.left, done.skipped) == (4, 0, False)
    assert all(store.exists(file.rollup or "") for file in published_files(store))
    assert store.exists(rolled_up_note_key())
    again = timers.backfill_snapshots(settings)
    assert again is not None and (again.skipped, again.files) == (True, 0)


def test_the_snapshot_timer_compacts_a_day_on_blob_storage(azure_env: dict[str, str]) -> None:
    """Ten 15-minute snapshot runs of a settled day on Azurite: the timer's compaction lists,
    reads and writes Blob Storage; `query` reads the one file as it read the ten, and a run a week
    later deletes the ten."""
    from datetime import UTC, datetime, timedelta

    from pipeline.app import open_store
    from pipeline.entrypoints.functions import timers
    from pipeline.lake.areas import SNAPSHOTS
    from pipeline.lake.manifests import published_files

    settings = Settings.from_env()
    day = datetime.now(UTC).date() - timedelta(days=3)
    source = Path(azure_env["CHARGEBACK_HOME"]) / "run.jsonl"
    for run_number in range(10):
        source.write_bytes(jsonl([event(timestamp=f"{day.isoformat()}T{run_number:02d}:{minute}:00Z")
                                  for minute in (10, 40)]))
        run("ingest", str(source))
        assert timers.snapshot_ledger(settings).rows == 2
    store = open_store(settings, SNAPSHOTS)
    replaced = published_files(store)
    counted = run("query", "SELECT count(*) AS n, sum(total_tokens) AS t FROM usage", "--format", "csv")
    assert len(replaced) == 10 and counted.split() == ["n,t", "20,24000"]

    done = timers.compact_settled_days(settings)

    assert done is not None and (done.days, done.replaced, done.written, done.rows) == (1, 10, 1, 20)
    assert len(published_files(store)) == 1
    assert run("query", "SELECT count(*) AS n, sum(total_tokens) AS t FROM usage", "--format", "csv") == counted
    later = timers.compact_settled_days(settings, datetime.now(UTC) + timedelta(days=8))
    assert later is not None and later.deleted == 10
    assert not any(store.exists(file.key) for file in replaced) and store.list("_compacted") == []
    assert run("query", "SELECT count(*) AS n, sum(total_tokens) AS t FROM usage", "--format", "csv") == counted


def test_llm_usage_compaction_on_blob_storage(azure_env: dict[str, str]) -> None:
    """The LLM-usage area on Azurite: ten host batches of a settled day compacted into one with
    its note, `query` of `llm_usage` the same before and after, and the ten deleted a week on."""
    from datetime import UTC, datetime, timedelta

    from pipeline.app import open_store
    from pipeline.domain.llm_logs import LlmUsage
    from pipeline.lake.areas import LLM_USAGE
    from pipeline.lake.llm_usage import batch_files, llm_usage_keys
    from pipeline.stages.llm_compaction import compact_llm_days

    store = open_store(Settings.from_env(), LLM_USAGE)
    start = datetime(2026, 10, 15, 8, tzinfo=UTC)
    for batch in range(10):
        records = [LlmUsage(join_id=f"req-{batch}-{n}", time=start + timedelta(minutes=batch, seconds=n),
                            prompt_tokens=100, completion_tokens=20, total_tokens=120, cached_tokens=None)
                   for n in range(3)]
        for key, data in batch_files(records).items():
            assert store.put(key, data, overwrite=False)
    sql = "SELECT count(*) AS n, sum(total_tokens) AS t FROM llm_usage"
    counted = run("query", sql, "--format", "csv")
    assert counted.split() == ["n,t", "30,3600"] and len(llm_usage_keys(store)) == 10

    done = compact_llm_days(store, start.date() + timedelta(days=2))

    assert (done.days, done.replaced, done.written) == (1, 10, 1)
    assert len(llm_usage_keys(store)) == 1 and run("query", sql, "--format", "csv") == counted
    later = compact_llm_days(store, start.date() + timedelta(days=2), now=datetime.now(UTC) + timedelta(days=8))
    assert later.deleted == 10 and len(store.list("")) == 2  # the compacted file and its note
    assert run("query", sql, "--format", "csv") == counted
