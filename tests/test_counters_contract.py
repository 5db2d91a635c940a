"""One contract for the live counters, run against the embedded SQLite adapter and real Redis
(CHARGEBACK_TEST_REDIS_URL, see tests/servers.py), plus Redis-only checks: concurrent consumers,
TTLs, one round trip per batch, NOSCRIPT recovery and Entra ID credentials."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import msgspec
import pytest
import redis
from azure.core.credentials import AccessToken

from pipeline.adapters.azure.entra import EntraIdCredentialProvider
from pipeline.adapters.azure.redis_counters import CHUNK, SCRIPT, RedisCounters, open_redis_counters
from pipeline.adapters.embedded.counters import SqliteCounters
from pipeline.domain.counters import HourlyRow
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import Budget, BudgetAlert, Budgets, BudgetScope, LiveCharge, SubscriptionMonth
from pipeline.ports import AccessRefused, Counters, CountResult
from tests.factories import event, line, usage

pytest_plugins = ["tests.servers"]

Make = Callable[..., Counters]
SUB_A = BudgetScope.SUBSCRIPTION


def ev(n: int | str, sub: str = "sub-a", dep: str = "dep-1", ts: str = "2026-10-15T12:30:00Z",
       tokens: tuple[int, int, int, int] | None = (100, 10, 20, 5)) -> UsageEvent:
    """An event: tokens are (prompt, cached, completion, reasoning); None means no usage."""
    body = event(eventId=f"e-{n}", subscriptionId=sub, deployment=dep, timestamp=ts,
                 usage=usage(tokens[0], tokens[2], tokens[1], tokens[3]) if tokens else None,
                 usageSource="response" if tokens else "none")
    return msgspec.json.decode(line(body), type=UsageEvent)


def ch(micros: int = 1000, cc: str = "CC-A", priced: bool = True) -> LiveCharge:
    return LiveCharge(cc, micros, "USD" if priced else "", priced)


def add(counters: Counters, *pairs: tuple[UsageEvent, LiveCharge]) -> CountResult:
    return counters.add([e for e, _ in pairs], [c for _, c in pairs])


def seen(alerts: list[BudgetAlert]) -> list[tuple[object, ...]]:
    """Alerts without raised_at (a clock reading), sorted."""
    return sorted((a.scope, a.key, a.month, a.threshold, a.spend_micros, a.budget_micros, a.currency)
                  for a in alerts)


@pytest.fixture
def redis_make(redis_url: str) -> Iterator[Callable[..., RedisCounters]]:
    """RedisCounters on a key prefix of this test only; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    opened: list[RedisCounters] = []

    def build(budgets: Budgets | None = None, **options: Any) -> RedisCounters:
        client = options.pop("client", None) or redis.Redis.from_url(redis_url)
        opened.append(RedisCounters(client, budgets or Budgets(), prefix=prefix, **options))
        return opened[-1]
    yield build
    for counters in opened:
        counters.close()
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(params=["sqlite", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Make]:
    if request.param == "redis":
        yield request.getfixturevalue("redis_make")
        return
    opened: list[SqliteCounters] = []

    def build(budgets: Budgets | None = None) -> Counters:
        opened.append(SqliteCounters(tmp_path / "c.sqlite3", budgets or Budgets()))
        return opened[-1]
    yield build
    for counters in opened:
        counters.close()


def hour_row(dep: str, hour: str, *measures: int, sub: str = "sub-a") -> HourlyRow:
    return HourlyRow(sub, dep, hour, *measures)


def test_exact_totals_for_a_hand_built_batch(make: Make) -> None:
    counters = make()
    result = add(counters,
                 (ev(1), ch(1000)),
                 (ev(2, ts="2026-10-15T12:59:59Z", tokens=(200, 0, 40, 0)), ch(2000)),
                 (ev(3, dep="dep-2", ts="2026-10-15T13:00:00Z", tokens=(300, 30, 60, 10)), ch(3000)),
                 (ev(4, sub="sub-b", ts="2026-10-15T12:00:00Z", tokens=None), ch(0, "CC-B", priced=False)),
                 (ev(5, ts="2026-11-01T00:10:00Z"), ch(500)))
    assert result == CountResult(5, [])
    oct_12 = hour_row("dep-1", "2026-10-15T12", 2, 300, 10, 60, 5, 360)
    oct_13 = hour_row("dep-2", "2026-10-15T13", 1, 300, 30, 60, 10, 360)
    assert counters.hourly("sub-a") == [oct_12, hour_row("dep-1", "2026-11-01T00", 1, 100, 10, 20, 5, 120), oct_13]
    assert counters.hourly("sub-a", "2026-10-15") == [oct_12, oct_13]
    assert counters.hourly("sub-a", "2026-10-15T13") == [oct_13]
    assert counters.hourly("sub-b") == [hour_row("dep-1", "2026-10-15T12", 1, 0, 0, 0, 0, 0, sub="sub-b")]
    assert counters.hourly("sub-z") == []
    assert counters.month_to_date("2026-10") == [
        SubscriptionMonth("sub-a", "2026-10", 3, 600, 40, 120, 15, 720, 6000, 0),
        SubscriptionMonth("sub-b", "2026-10", 1, 0, 0, 0, 0, 0, 0, 1)]
    assert counters.month_to_date("2026-11") == [SubscriptionMonth("sub-a", "2026-11", 1, 100, 10, 20, 5, 120, 500, 0)]
    assert counters.month_to_date("2026-09") == []
    assert counters.cost_center_spend("2026-10") == {"CC-A": 6000, "CC-B": 0}
    assert counters.cost_center_spend("2026-11") == {"CC-A": 500}
    assert counters.alerts("2026-10") == []


def test_redelivered_and_overlapping_batches_count_only_new_events(make: Make) -> None:
    counters = make()
    first = [(ev(i), ch(10)) for i in range(10)]
    assert add(counters, *first).new == 10
    assert add(counters, *first).new == 0  # the same batch again
    assert add(counters, *[(ev(i), ch(10)) for i in range(5, 15)]).new == 5  # overlaps the first
    assert make().add([], []) == CountResult(0, [])  # a second instance on the same storage
    assert counters.month_to_date("2026-10") == [SubscriptionMonth("sub-a", "2026-10", 15, 1500, 150, 300, 75,
                                                                   1800, 150, 0)]
    assert counters.hourly("sub-a") == [hour_row("dep-1", "2026-10-15T12", 15, 1500, 150, 300, 75, 1800)]


def test_conflicting_duplicates_keep_the_first_copy(make: Make) -> None:
    counters = make()
    batch = [(ev(i), ch(1)) for i in range(1200)]  # more than one Redis script chunk
    batch[700] = (ev(0, sub="sub-x", tokens=(9, 9, 9, 9)), ch(999, "CC-X"))  # eventId e-0 again, other values
    batch.append((ev(5, sub="sub-y"), ch(7, "CC-Y")))
    assert add(counters, *batch).new == 1199
    assert [m.subscription_id for m in counters.month_to_date("2026-10")] == ["sub-a"]
    assert counters.month_to_date("2026-10")[0].requests == 1199
    assert counters.cost_center_spend("2026-10") == {"CC-A": 1199}


def test_unpriced_charges_count_requests_without_spend(make: Make) -> None:
    counters = make()
    add(counters, (ev(1), ch(0, "unassigned", priced=False)), (ev(2, ts="2026-10-15T12:00:00Z"), ch(40)))
    assert counters.month_to_date("2026-10") == [SubscriptionMonth("sub-a", "2026-10", 2, 200, 20, 40, 10, 240, 40, 1)]
    assert counters.cost_center_spend("2026-10") == {"CC-A": 40, "unassigned": 0}


def test_subscription_budget_raises_each_threshold_once(make: Make) -> None:
    budget = Budget(SUB_A, "sub-a", 1_000_001, "USD")  # odd: 50% is reached at 500,001, not 500,000
    counters = make(Budgets([budget, Budget(SUB_A, "sub-b", 10**12, "USD")]))

    def alert(threshold: int, spend: int) -> tuple[object, ...]:
        return (SUB_A, "sub-a", "2026-10", threshold, spend, 1_000_001, "USD")
    assert add(counters, (ev(1), ch(500_000)), (ev(2, sub="sub-b"), ch(5))).alerts == []
    assert seen(add(counters, (ev(3), ch(1))).alerts) == [alert(50, 500_001)]
    assert seen(add(counters, (ev(4), ch(600_000)), (ev(5, sub="sub-b"), ch(5))).alerts) == [
        alert(80, 1_100_001), alert(100, 1_100_001)]
    assert add(counters, (ev(6), ch(10))).alerts == []  # more spend: nothing new
    again = add(counters, *[(ev(i), ch(500_000)) for i in range(1, 7)])  # a redelivery: nothing
    assert again == CountResult(0, [])
    listed = counters.alerts("2026-10")
    assert seen(listed) == [alert(50, 500_001), alert(80, 1_100_001), alert(100, 1_100_001)]
    assert [a.threshold for a in listed] == [50, 80, 100]
    assert all(a.raised_at.tzinfo is not None for a in listed)
    assert make(Budgets([budget])).alerts("2026-11") == []


def test_cost_center_budget(make: Make) -> None:
    counters = make(Budgets([Budget(BudgetScope.COST_CENTER, "CC-X", 1000, "EUR")]))
    result = add(counters, (ev(1), ch(300, "CC-X")), (ev(2, sub="sub-b"), ch(300, "CC-X")), (ev(3), ch(999)))
    cc = (BudgetScope.COST_CENTER, "CC-X", "2026-10")
    assert seen(result.alerts) == [(*cc, 50, 600, 1000, "EUR")]
    assert seen(add(counters, (ev(4, sub="sub-c"), ch(400, "CC-X"))).alerts) == [
        (*cc, 80, 1000, 1000, "EUR"), (*cc, 100, 1000, 1000, "EUR")]
    assert add(counters, (ev(5), ch(1, "CC-X"))).alerts == []
    assert [a.threshold for a in counters.alerts("2026-10")] == [50, 80, 100]
    assert counters.cost_center_spend("2026-10") == {"CC-A": 999, "CC-X": 1001}


def test_ids_with_separators_and_unicode(make: Make) -> None:
    sub, dep, cc = "sub:ü|1", "dep|2:x", "CC|1:ü"
    counters = make(Budgets([Budget(BudgetScope.COST_CENTER, cc, 10, "USD")]))
    result = add(counters, (ev(1, sub=sub, dep=dep), ch(10, cc)), (ev(2, sub="sub"), ch(1, "CC")))
    assert seen(result.alerts) == [(BudgetScope.COST_CENTER, cc, "2026-10", t, 10, 10, "USD") for t in (50, 80, 100)]
    assert counters.hourly(sub) == [hour_row(dep, "2026-10-15T12", 1, 100, 10, 20, 5, 120, sub=sub)]
    assert [m.subscription_id for m in counters.month_to_date("2026-10")] == ["sub", sub]
    assert counters.cost_center_spend("2026-10") == {"CC": 1, cc: 10}


def test_the_write_probe_leaves_nothing_a_reader_sees(make: Make) -> None:
    counters = make()
    add(counters, (ev(1), ch(10)))
    before = counters.month_to_date("2026-10")
    counters.probe()
    assert counters.month_to_date("2026-10") == before and counters.alerts("2026-10") == []
    assert add(counters, (ev(2), ch(10))).new == 1  # still writable


# ------------------------------------------------------------------------------------------ Redis only

def test_a_redis_user_that_may_only_read_fails_the_probe(redis_url: str,
                                                         redis_make: Callable[..., RedisCounters]) -> None:
    user, password = f"reader-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                      commands=["+@read", "+@connection", "-@write"])
    try:
        host, port = redis_url.split("//")[1].split("/")[0].split(":")
        counters = redis_make(client=redis.Redis(host=host, port=int(port), username=user, password=password))
        assert counters.month_to_date("2026-10") == []  # it may read
        with pytest.raises(AccessRefused, match=r"Redis refused a command \(.*no permissions to run the 'set' "
                                                r"command\): assign the identity an access policy that may write"):
            counters.probe()
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_the_redis_probe_removes_its_key(redis_url: str, redis_make: Callable[..., RedisCounters]) -> None:
    counters = redis_make()
    counters.probe()
    with redis.Redis.from_url(redis_url) as client:
        assert list(client.scan_iter(match="*:probe:*", count=1000)) == []


def test_concurrent_consumers_over_overlapping_batches(redis_make: Callable[..., RedisCounters]) -> None:
    budgets = Budgets([Budget(SUB_A, "sub-a", 900_000, "USD"), Budget(BudgetScope.COST_CENTER, "CC-A", 900_000, "USD")])
    events = [(ev(i, dep=f"dep-{i % 5}", ts=f"2026-10-15T{i % 24:02d}:00:00Z"), ch(100)) for i in range(9000)]
    ranges = [events[0:6000], events[3000:9000]]
    barrier = threading.Barrier(2)
    results: list[list[CountResult]] = [[], []]

    def consume(index: int) -> None:
        counters = redis_make(budgets)
        chunks = [ranges[index][i:i + 1500] for i in range(0, 6000, 1500)]
        random.Random(index).shuffle(chunks)
        barrier.wait()
        results[index] = [add(counters, *chunk) for chunk in chunks]
    threads = [threading.Thread(target=consume, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = results[0] + results[1]
    assert sum(result.new for result in everything) == 9000
    raised = [(a.scope, a.threshold) for result in everything for a in result.alerts]
    assert sorted(raised) == sorted((scope, t) for scope in (SUB_A, BudgetScope.COST_CENTER) for t in (50, 80, 100))
    counters = redis_make(budgets)
    assert counters.month_to_date("2026-10") == [SubscriptionMonth("sub-a", "2026-10", 9000, 900_000, 90_000,
                                                                   180_000, 45_000, 1_080_000, 900_000, 0)]
    assert counters.cost_center_spend("2026-10") == {"CC-A": 900_000}
    rows = counters.hourly("sub-a")
    assert len(rows) == 120 and sum(row.requests for row in rows) == 9000
    assert len(counters.alerts("2026-10")) == 6


def test_every_key_expires(redis_make: Callable[..., RedisCounters]) -> None:
    counters = redis_make(Budgets([Budget(SUB_A, "sub-a", 1, "USD")]), mark_ttl_seconds=1000,
                          hourly_ttl_seconds=2000, monthly_ttl_seconds=3000)
    assert len(add(counters, (ev(1), ch(5)), (ev(2, sub="sub-b"), ch(5, "CC-B"))).alerts) == 3
    client = counters._client
    prefix = counters._key("")
    kinds: dict[str, list[int]] = {}
    for key in client.scan_iter(match=f"{prefix}*"):
        kinds.setdefault(key.decode()[len(prefix):].split(":")[0], []).append(int(client.ttl(key)))
    assert sorted(kinds) == ["a", "c", "ci", "e", "h", "hi", "s", "si"]
    expected = {"e": 1000, "h": 2000, "hi": 2000}
    for kind, ttls in kinds.items():
        assert all(expected.get(kind, 3000) - 5 < ttl <= expected.get(kind, 3000) for ttl in ttls), (kind, ttls)


def test_the_hour_index_is_trimmed_when_a_new_hour_is_added(redis_make: Callable[..., RedisCounters]) -> None:
    counters = redis_make(hourly_ttl_seconds=3600)
    client, index = counters._client, counters._key("hi", "sub-a")

    def hours() -> list[str]:
        return [member.decode() for member in cast(list[bytes], client.zrange(index, 0, -1))]

    add(counters, (ev(1, ts="2026-10-15T12:30:00Z"), ch()))
    client.zadd(index, {"2026-08-01T00": 1})  # last written in 1970: far older than the hourly TTL

    add(counters, (ev(2, ts="2026-10-15T12:45:00Z"), ch()))  # an hour the index has: no trim yet
    assert hours() == ["2026-08-01T00", "2026-10-15T12"]
    add(counters, (ev(3, ts="2026-10-15T13:05:00Z"), ch()))  # a new hour: older ones are trimmed

    assert hours() == ["2026-10-15T12", "2026-10-15T13"]
    assert [(row.hour, row.requests) for row in counters.hourly("sub-a")] == [("2026-10-15T12", 2),
                                                                                  ("2026-10-15T13", 1)]


def test_zero_sums_are_not_written_and_read_as_zero(redis_make: Callable[..., RedisCounters]) -> None:
    counters = redis_make()
    add(counters, (ev(1, tokens=(100, 0, 20, 0)), ch(0, priced=False)), (ev(2, tokens=None), ch(0, priced=False)))
    fields = {f.decode() for f in cast(list[bytes], counters._client.hkeys(counters._key("s", "2026-10", "sub-a")))}
    assert fields == {"requests", "prompt_tokens", "completion_tokens", "total_tokens", "spend_micros",
                      "unpriced_requests"}  # no cached or reasoning tokens: their sums were 0
    assert counters.month_to_date("2026-10") == [SubscriptionMonth("sub-a", "2026-10", 2, 100, 0, 20, 0, 120, 0, 2)]
    assert counters.hourly("sub-a") == [hour_row("dep-1", "2026-10-15T12", 2, 100, 0, 20, 0, 120)]
    assert counters.cost_center_spend("2026-10") == {"CC-A": 0}


class CountingConnection(redis.Connection):
    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]  # untyped in redis-py


def test_one_round_trip_per_batch_and_noscript_recovery(redis_make: Callable[..., RedisCounters],
                                                        redis_url: str) -> None:
    counters = redis_make(client=redis.Redis.from_url(redis_url, connection_class=CountingConnection))
    # A script text this server has never seen, as after a restart or a failover.
    counters._script = SCRIPT + f"\n-- {uuid.uuid4().hex}\n"
    counters._sha = hashlib.sha1(counters._script.encode()).hexdigest()
    add(counters, (ev("warm-up"), ch()))  # connects
    CountingConnection.sent = 0
    first = 2 * CHUNK + 200
    assert add(counters, *[(ev(i), ch()) for i in range(first)]).new == first  # 3 chunks, loaded already
    assert CountingConnection.sent == 1
    counters._client.script_flush()
    CountingConnection.sent = 0
    assert add(counters, *[(ev(i), ch()) for i in range(first - 200, first + 800)]).new == 800  # NOSCRIPT, load, retry
    assert CountingConnection.sent == 3
    assert counters.month_to_date("2026-10")[0].requests == 1 + first + 800


def test_a_script_the_server_never_keeps_is_sent_as_eval(redis_make: Callable[..., RedisCounters], redis_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """As behind a proxy that sends SCRIPT LOAD to one shard and EVALSHA to another: the second
    NOSCRIPT must not fail the batch (under the Functions' unbounded retries it would stall the
    partition): the chunks go as EVAL with the script text, and count exactly once."""
    counters = redis_make(client=redis.Redis.from_url(redis_url, connection_class=CountingConnection))
    counters._script = SCRIPT + f"\n-- {uuid.uuid4().hex}\n"
    counters._sha = hashlib.sha1(counters._script.encode()).hexdigest()
    monkeypatch.setattr(counters._client, "script_load", lambda script: None)  # the load reaches another shard
    add(counters, (ev("warm-up"), ch()))  # connects
    counters._client.script_flush()  # a real server keeps what it EVALs: forget it, as the proxy's shard did
    CountingConnection.sent = 0
    assert add(counters, *[(ev(i), ch()) for i in range(CHUNK + 10)]).new == CHUNK + 10
    assert CountingConnection.sent == 3  # EVALSHA, EVALSHA again, then EVAL
    assert add(counters, *[(ev(i), ch()) for i in range(CHUNK + 10)]).new == 0  # a redelivery counts nothing
    assert counters.month_to_date("2026-10")[0].requests == 1 + CHUNK + 10


class FakeCredential:
    def __init__(self, token: str, expires_on: int) -> None:
        self.token, self.expires_on, self.calls = token, expires_on, 0

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        assert scopes == ("https://redis.azure.com/.default",)
        self.calls += 1
        return AccessToken(self.token, self.expires_on)


def test_entra_id_credentials() -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"oid": "object-1"}).encode()).decode().rstrip("=")
    credential = FakeCredential(f"header.{claims}.signature", int(time.time()) + 3600)
    provider = EntraIdCredentialProvider(credential)
    assert provider.get_credentials() == ("object-1", credential.token)  # the token's oid
    assert not provider.renew_due() and provider.renew_due(now=time.time() + 3400)
    named = EntraIdCredentialProvider(credential, username="object-2")  # CHARGEBACK_REDIS_USERNAME
    assert named.get_credentials() == ("object-2", credential.token)
    opened = open_redis_counters("rediss://cache.example.invalid:6380/0", Budgets(), username="object-3")
    chosen = opened._client.connection_pool.connection_kwargs["credential_provider"]
    assert isinstance(chosen, EntraIdCredentialProvider) and chosen._username == "object-3"
    opened.close()


def test_open_redis_counters_on_a_local_url(redis_url: str) -> None:
    local = open_redis_counters(redis_url, Budgets())
    assert local.month_to_date("1999-01") == [] and local.alerts("1999-01") == []
    local.close()
