"""A first run against freshly started servers, as a new user meets it: nothing created yet, a
wrong key, a server that is not there. Every mistake ends in one line naming the resource and the
fix, with the documented exit code (1: to fix, 4: unavailable now), never a traceback; then, with
CHARGEBACK_CREATE_RESOURCES=1, the same commands give exact totals."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from pipeline.adapters.azure.blob_store import open_blob_store
from pipeline.adapters.azure.cosmos_ledger import open_cosmos_ledger
from pipeline.adapters.azure.redis_counters import open_redis_counters
from pipeline.domain.live import Budgets
from pipeline.entrypoints.cli import main
from pipeline.ports import AccessRefused, CountersUnavailable, LedgerUnavailable, MissingResource, StoreUnavailable
from tests.conftest import SETTINGS_VARIABLES
from tests.factories import event, jsonl, usage
from tests.fault_tools import free_port
from tests.servers import CosmosEndpoint

DEPLOYMENTS = "deployment,model,deployment_type,region\nchat-gpt4o,gpt-4o,global,\n"
COST_CENTERS = "subscription_id,cost_center,effective_from,effective_to\nsub-a,CC-A,2026-01-01,\n"
EVENTS = [event(eventId=f"first-{n}", subscriptionId="sub-a", deployment="chat-gpt4o", model=None,
                timestamp=f"2026-10-{1 + n:02d}T10:00:00Z", usage=usage(1000, 100)) for n in range(10)]
# gpt-4o global in the shipped catalog: 2.50 input, 10.00 output per 1M tokens.
TOTAL = Decimal(10) * (Decimal(1000) * Decimal("2.50") + Decimal(100) * Decimal("10.00")) / Decimal(1_000_000)


def one_line_error(result: Result, code: int) -> str:
    """The single `Error: ...` line of a failed command (and nothing else, no traceback)."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.strip().splitlines() if "InsecureRequestWarning" not in line]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture
def fresh(tmp_path: Path, redis_url: str, azurite_connection_string: str, cosmos_endpoint: CosmosEndpoint,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Settings naming a database, container and Blob container that do not exist yet."""
    name = f"t{uuid.uuid4().hex[:12]}"
    database = redis_url.rsplit("/", 1)[0] + "/8"
    redis.Redis.from_url(database).flushdb()
    host = cosmos_endpoint.url.removeprefix("https://").rstrip("/")
    env = {
        "CHARGEBACK_HOME": str(tmp_path / "home"),
        "CHARGEBACK_LEDGER": f"cosmos://{host}/{name}/ledger",
        "CHARGEBACK_COSMOS_KEY": cosmos_endpoint.key,
        "CHARGEBACK_COSMOS_SETTLE_SECONDS": "0",
        "CHARGEBACK_COUNTERS": database,
        "CHARGEBACK_STORE": f"az://{name}/chargeback",
        "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string,
    }
    for variable in SETTINGS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    home = Path(env["CHARGEBACK_HOME"])
    home.mkdir()
    (home / "deployments.csv").write_text(DEPLOYMENTS)
    (home / "cost-centers.csv").write_text(COST_CENTERS)
    (tmp_path / "events.jsonl").write_bytes(jsonl(EVENTS))
    env["events"] = str(tmp_path / "events.jsonl")
    yield env
    redis.Redis.from_url(database).flushdb()


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def test_nothing_created_then_created_on_request_gives_exact_totals(fresh: dict[str, str]) -> None:
    store = fresh["CHARGEBACK_STORE"]
    container = store.removeprefix("az://").split("/")[0]
    missing = one_line_error(run("ingest", fresh["events"]), 1)
    assert missing == (f"Error: {store}/dead-letters: Blob container {container!r} does not exist in storage account "
                       "'devstoreaccount1': create it (terraform apply does), or set CHARGEBACK_CREATE_RESOURCES=1 for "
                       "the local emulator")
    for command in (("snapshot",), ("report", "--month", "2026-10"), ("query", "SELECT 1"), ("corrections",)):
        assert "does not exist" in one_line_error(run(*command), 1), command
    # The store exists now; the Cosmos DB database does not.
    open_blob_store(store, account_url=None, connection_string=fresh["AZURE_STORAGE_CONNECTION_STRING"],
                    create_container=True)
    database = fresh["CHARGEBACK_LEDGER"].split("/")[3]
    assert one_line_error(run("ingest", fresh["events"]), 1) == (
        f"Error: {fresh['CHARGEBACK_LEDGER']}: Cosmos DB database {database!r} does not exist: create it (terraform "
        "apply does), or set CHARGEBACK_CREATE_RESOURCES=1 for the local emulator")
    created = run("ingest", fresh["events"], env={"CHARGEBACK_CREATE_RESOURCES": "1"})
    assert created.exit_code == 0, created.output
    assert "ingested 10" in " ".join(created.output.split())
    report = run("report", "--month", "2026-10", "--format", "csv")
    assert report.exit_code == 0, report.output
    assert f"Total {TOTAL.quantize(Decimal('0.01'))} USD over 10 requests" in " ".join(report.output.split())
    assert run("ingest", fresh["events"]).exit_code == 0  # created once: no setting needed any more


def test_a_missing_cosmos_container_names_the_container(fresh: dict[str, str], cosmos_endpoint: CosmosEndpoint) -> None:
    host = cosmos_endpoint.url.removeprefix("https://").rstrip("/")
    database = fresh["CHARGEBACK_LEDGER"].split("/")[3]
    open_cosmos_ledger(f"cosmos://{host}/{database}/other", key=cosmos_endpoint.key, create=True).close()
    with pytest.raises(MissingResource, match=f"Cosmos DB container 'ledger' does not exist in '{database}'"):
        open_cosmos_ledger(fresh["CHARGEBACK_LEDGER"], key=cosmos_endpoint.key)


def test_an_unreachable_backend_is_one_line_and_exit_4(fresh: dict[str, str]) -> None:
    nowhere = f"cosmos://127.0.0.1:{free_port()}/db/ledger"
    with pytest.raises(LedgerUnavailable, match="cannot reach Cosmos DB"):
        open_cosmos_ledger(nowhere, key=fresh["CHARGEBACK_COSMOS_KEY"])
    assert one_line_error(run("snapshot", env={"CHARGEBACK_COSMOS_KEY": "not a key",
                                               "CHARGEBACK_CREATE_RESOURCES": "1"}), 1) == (
        "Error: CHARGEBACK_COSMOS_KEY is not a Cosmos DB account key (base64 text): copy the emulator's key, or "
        "unset it to sign in with the managed identity")
    line = one_line_error(run("ingest", fresh["events"], env={"CHARGEBACK_LEDGER": nowhere,
                                                             "CHARGEBACK_CREATE_RESOURCES": "1"}), 4)
    assert line.startswith(f"Error: {nowhere}: cannot reach Cosmos DB (") and "check the account in " \
        "CHARGEBACK_LEDGER" in line
    counters = open_redis_counters(f"redis://127.0.0.1:{free_port()}/0", Budgets())
    with pytest.raises(CountersUnavailable, match="Redis is unavailable"):
        counters.month_to_date("2026-10")
    usage_line = one_line_error(run("usage", env={"CHARGEBACK_COUNTERS": f"redis://127.0.0.1:{free_port()}/0"}), 4)
    assert "Redis is unavailable (ConnectionError" in usage_line


def test_an_unreachable_blob_account_is_one_line_and_exit_4(fresh: dict[str, str]) -> None:
    dead = fresh["AZURE_STORAGE_CONNECTION_STRING"].replace(":10000/", f":{free_port()}/")
    with pytest.raises(StoreUnavailable, match="cannot reach Blob Storage account 'devstoreaccount1'"):
        open_blob_store("az://anything-here/x", account_url=None, connection_string=dead)


def test_refused_credentials_name_the_setting_to_check(fresh: dict[str, str]) -> None:
    wrong = fresh["AZURE_STORAGE_CONNECTION_STRING"].replace("AccountKey=Eby8", "AccountKey=Xby8")
    line = one_line_error(run("ingest", fresh["events"], env={"AZURE_STORAGE_CONNECTION_STRING": wrong}), 1)
    assert line.endswith("refused the request (403 AuthorizationFailure): the account key was refused: check "
                         "AZURE_STORAGE_CONNECTION_STRING")
    host_port = fresh["CHARGEBACK_COUNTERS"].removeprefix("redis://")
    refused = open_redis_counters(f"redis://nobody:wrong@{host_port}", Budgets())
    with pytest.raises(AccessRefused, match="Redis refused the credentials"):
        refused.month_to_date("2026-10")
    # The Cosmos DB stand-in accepts any key, so a wrong Cosmos key cannot be shown refused here:
    # real Cosmos DB answers 401, which the ledger reports as "refused the credentials (401)".


def test_snapshots_say_what_waits_out_the_settle_window_and_wait_for_it(fresh: dict[str, str]) -> None:
    settle = {"CHARGEBACK_CREATE_RESOURCES": "1", "CHARGEBACK_COSMOS_SETTLE_SECONDS": "3"}
    assert run("ingest", fresh["events"], env=settle).exit_code == 0
    waiting = run("snapshot", env=settle)
    output = " ".join(waiting.output.split())
    assert waiting.exit_code == 0 and "snapshot: nothing new yet" in output, waiting.output
    assert "10 event(s) in the ledger are not taken yet: they settle until 20" in output
    assert "`chargeback snapshot --wait` waits for them" in output
    report = run("report", "--month", "2026-10", "--format", "csv", env=settle)
    flat = " ".join(report.output.split())
    assert "warning: 10 event(s) in the ledger are not taken yet" in flat  # said, next to the empty total
    assert "Total nothing priced" in flat
    waited = run("snapshot", "--wait", env=settle)
    assert waited.exit_code == 0 and "snapshot: 10 events -> 10 new Parquet file(s)" in " ".join(waited.output.split())
    report = run("report", "--month", "2026-10", "--format", "csv", env=settle)
    assert f"Total {TOTAL.quantize(Decimal('0.01'))} USD over 10 requests" in " ".join(report.output.split())
    assert "warning" not in report.output


def test_doctor_names_what_is_missing_then_passes_once_created(fresh: dict[str, str]) -> None:
    missing = run("doctor")
    assert missing.exit_code == 1, missing.output
    assert "Traceback" not in missing.output
    ledger = next(line for line in missing.output.splitlines() if line.startswith("FAIL  ledger"))
    assert f"Cosmos DB database '{fresh['CHARGEBACK_LEDGER'].split('/')[3]}' does not exist" in ledger
    store = next(line for line in missing.output.splitlines() if line.startswith("FAIL  store"))
    assert f"Blob container '{fresh['CHARGEBACK_STORE'].split('/')[2]}'" in store
    assert "snapshots" not in missing.output  # not checked without a store
    assert run("ingest", fresh["events"], env={"CHARGEBACK_CREATE_RESOURCES": "1"}).exit_code == 0
    assert run("snapshot").exit_code == 0
    ready = run("doctor", "--strict")
    assert ready.exit_code == 0, ready.output
    assert ready.output.strip().endswith("9 ok, 0 warning(s), 0 failed")
    assert f"ok    ledger     {fresh['CHARGEBACK_LEDGER']}: 10 events; wrote and read a probe item" \
        in ready.output.splitlines()
