"""Live counters on Redis (Azure Cache for Redis in production), with SqliteCounters' contract.

Dedupe, increment and budget check are ONE Lua script call per chunk of at most 2,000 events;
the chunks of a batch go out in one pipeline (one round trip). For each event the script creates
its mark with `SET NX EX`; only an event whose mark is new adds to the sums. After the increments
it compares each touched budgeted scope's month-to-date spend with the thresholds and records an
alert with `HSETNX`: the first script to see a threshold reached raises it, and only that one.
A script runs atomically, so two consumers over overlapping batches count every event once and
raise every alert once; a redelivered batch changes nothing. An alert's spend_micros is the
month-to-date spend right after the chunk that reached it (SqliteCounters: after the whole batch;
the same for batches of up to 2,000 events).

A chunk is sent as its keys (every key the script touches, as cluster mode requires) and ONE
argument: the rest packed with msgpack, which the script unpacks with `cmsgpack`. redis-py packs
every argument in Python, so one packed argument instead of ten per event is most of the
client's time saved. The script writes each key once per chunk: the sums of the chunk's events
per hash field (a field whose sum is 0 is not written: absent reads as 0, except spend_micros,
which budgets read back), one EXPIRE per key, one SADD per index set; the hour index is trimmed
of hours older than the hourly TTL when a new hour is added to it, so about once an hour.

Keys (T is the hash tag `{PREFIX}`, default `{cb}`; see docs/redis-keys.md for the reasons):

    T:e:EVENT_ID           string "1"  dedupe mark of one eventId              TTL mark_ttl (8 d)
    T:h:HOUR:SUBSCRIPTION  hash        MEASURE|DEPLOYMENT -> int, HOUR = YYYY-MM-DDTHH (UTC)
                                       MEASURE in requests, prompt/cached/completion/reasoning/
                                       total_tokens                            TTL hourly_ttl (40 d)
    T:hi:SUBSCRIPTION      zset        HOURs with a T:h hash, scored by last write;  TTL hourly_ttl
                                       hours older than hourly_ttl are trimmed when a new hour is added
    T:s:MONTH:SUBSCRIPTION hash        requests, *_tokens, spend_micros, unpriced_requests
                                                                               TTL monthly_ttl (400 d)
    T:si:MONTH             set         subscription ids with a T:s hash        TTL monthly_ttl
    T:c:MONTH:COST_CENTER  hash        requests, spend_micros                  TTL monthly_ttl
    T:ci:MONTH             set         cost centers with a T:c hash            TTL monthly_ttl
    T:a:MONTH              hash        SCOPE|THRESHOLD|KEY -> alert as a JSON array
                                       [scope, key, month, threshold, spend, budget, currency,
                                       raised_at]; HSETNX makes each alert raise-once  TTL monthly_ttl

Marks outlive the Event Hub's retention (Standard tier: 7 days at most): a redelivery comes from
the hub (checkpoint replay, rebalance, crash), so it always finds its mark. Raise mark_ttl with a
longer retention (Premium/Dedicated). A replay older than the marks (say, a file re-ingested a
month later) would count again: the ledger stays exact, and the counters are rebuilt from it.
Every TTL is renewed on each write. Every key carries the same hash tag, so all of them live in
one cluster slot: a script may only touch keys of one slot in cluster mode.

Authentication (`open_redis_counters`): `redis://HOST:PORT/DB` (no auth, or a password in the
URL) for local servers; `rediss://HOST:PORT/DB` without a password uses Microsoft Entra ID: a token
from DefaultAzureCredential for https://redis.azure.com/.default on every (re)connect, the
username being the identity's object id from CHARGEBACK_REDIS_USERNAME (else the token's `oid`).
Connections are re-opened before the token they authenticated with expires.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import msgspec
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, NoScriptError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.adapters.azure.entra import USERNAME_VARIABLE, EntraIdCredentialProvider
from pipeline.domain.counters import COST_CENTER_MEASURES, HOURLY, MONTHLY, HourlyRow, hour_key
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import THRESHOLDS, BudgetAlert, Budgets, BudgetScope, LiveCharge, SubscriptionMonth
from pipeline.domain.urls import without_password
from pipeline.ports import AccessRefused, CountersUnavailable, CountResult, UserError

DAY = 86_400
MARK_TTL = 8 * DAY  # > Event Hubs Standard retention (7 d): a redelivery comes from the hub, within retention
HOURLY_TTL = 40 * DAY  # the current and the previous month of hourly dashboards
MONTHLY_TTL = 400 * DAY  # a year of month-to-date history and budget alerts
CHUNK = 2_000  # events per script call: about 10-20 ms of server time, so other clients are never blocked long
EXACT = 2**53  # Lua numbers are doubles: a chunk's sums stay below this to be exact
EVENT_WIDTH = 10  # per event in the packed chunk: h, s, c, 5 token counts, micros, unpriced (0/1)

_LUA = (Path(__file__).parent / "counters.lua").read_text(encoding="utf-8")


def _lua_list(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


SCRIPT = (_LUA.replace("@HOURLY@", _lua_list(HOURLY)).replace("@MONTHLY@", _lua_list(MONTHLY))
          .replace("@COST_CENTER@", _lua_list(COST_CENTER_MEASURES)).replace("@WIDTH@", str(EVENT_WIDTH)))

# Outages: refused, reset, loading after a restart (BusyLoadingError is a ConnectionError),
# timed out, or a read-only replica during a failover.
OUTAGES = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
Pair = tuple[UsageEvent, LiveCharge]
Call = tuple[list[str], list[bytes]]
_pack = msgspec.msgpack.Encoder().encode


Method = TypeVar("Method", bound=Callable[..., Any])


def _translated(method: Method) -> Method:
    """Run a RedisCounters method inside its `_errors()`."""
    @functools.wraps(method)
    def run(self: RedisCounters, *args: Any, **kwargs: Any) -> Any:
        with self._errors():
            return method(self, *args, **kwargs)
    return cast(Method, run)


class RedisCounters:
    def __init__(self, client: redis.Redis, budgets: Budgets | None = None, *, prefix: str = "cb",
                 mark_ttl_seconds: int = MARK_TTL, hourly_ttl_seconds: int = HOURLY_TTL,
                 monthly_ttl_seconds: int = MONTHLY_TTL) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"Redis key prefix {prefix!r}: must be non-empty, without braces")
        if min(mark_ttl_seconds, hourly_ttl_seconds, monthly_ttl_seconds) < 1:
            raise ValueError("Redis counter TTLs must be at least one second")
        self._client = client
        self.budgets = budgets or Budgets()
        self._tag = "{" + prefix + "}"
        self._ttls = (mark_ttl_seconds, hourly_ttl_seconds, monthly_ttl_seconds)
        self._script = SCRIPT
        self._sha = hashlib.sha1(SCRIPT.encode()).hexdigest()  # Redis names scripts by SHA-1
        kwargs = client.connection_pool.connection_kwargs
        self.url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"  # no secret
        provider = kwargs.get("credential_provider")
        self._entra = provider if isinstance(provider, EntraIdCredentialProvider) else None

    def _key(self, *parts: str) -> str:
        return ":".join((self._tag, *parts))

    def add(self, events: Sequence[UsageEvent], charges: Sequence[LiveCharge]) -> CountResult:
        unique: dict[str, Pair] = {}
        for event, charge in zip(events, charges, strict=True):  # the first copy wins, as in the ledger
            unique.setdefault(event.event_id, (event, charge))
        if not unique:
            return CountResult(0, [])
        now = datetime.now(UTC).isoformat()
        calls = [self._call(chunk, now) for chunk in _chunks(list(unique.values()))]
        with self._errors():
            self._renew_auth()
            replies = self._run(calls)
        return CountResult(sum(int(reply[0]) for reply in replies),
                           [_alert(record) for reply in replies for record in reply[1]])

    def _run(self, calls: list[Call]) -> list[Any]:
        """All chunks in one pipeline of EVALSHA. A server without the script (restart, failover,
        SCRIPT FLUSH) answers NOSCRIPT without running it: load it and send those chunks again.
        Should the script still be unknown (a proxy that sends SCRIPT LOAD to another shard than
        EVALSHA, as clustered Azure Managed Redis may), the rest go as EVAL with the script text."""
        replies: dict[int, Any] = {}
        for attempt in range(3):
            pipe = self._client.pipeline(transaction=False)
            waiting = [index for index in range(len(calls)) if index not in replies]
            for index in waiting:
                keys, argv = calls[index]
                if attempt < 2:
                    pipe.evalsha(self._sha, len(keys), *keys, *argv)
                else:
                    pipe.eval(self._script, len(keys), *keys, *argv)
            for index, reply in zip(waiting, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, NoScriptError) and attempt < 2:
                    continue
                if isinstance(reply, Exception):
                    raise reply
                replies[index] = reply
            if len(replies) == len(calls):
                break
            if attempt == 0:
                self._client.script_load(self._script)
        return [replies[index] for index in range(len(calls))]

    def _call(self, pairs: list[Pair], now: str) -> Call:
        """KEYS and the packed ARGV of one script call (the layout the Lua code above reads)."""
        mark = self._key("e", "")
        keys = [mark + event.event_id for event, _ in pairs]
        slots: dict[str, int] = {}

        def key(*parts: str) -> int:
            name = self._key(*parts)
            slot = slots.get(name)
            if slot is None:
                keys.append(name)
                slot = slots[name] = len(keys)
            return slot

        hours: dict[tuple[str, str, str], int] = {}
        subs: dict[tuple[str, str], int] = {}
        ccs: dict[tuple[str, str], int] = {}
        hourly: list[tuple[int, str, int, str]] = []
        monthly: list[tuple[int, int, str]] = []
        centers: list[tuple[int, int, str]] = []

        def targets(sub: str, deployment: str, hour: str, center: str) -> tuple[int, int, int]:
            """The numbers of the event's hourly, subscription and cost-center targets."""
            month = hour[:7]
            h = hours.get((sub, deployment, hour))
            if h is None:
                h = hours[(sub, deployment, hour)] = len(hours) + 1
                hourly.append((key("h", hour, sub), deployment, key("hi", sub), hour))
            s = subs.get((sub, month))
            if s is None:
                s = subs[(sub, month)] = len(subs) + 1
                monthly.append((key("s", month, sub), key("si", month), sub))
            c = ccs.get((center, month))
            if c is None:
                c = ccs[(center, month)] = len(ccs) + 1
                centers.append((key("c", month, center), key("ci", month), center))
            return h, s, c

        seen: dict[tuple[str, str, int, str], tuple[int, int, int]] = {}  # one lookup per event
        numbers: list[int] = []
        for event, charge in pairs:
            hour = int(event.timestamp.timestamp()) // 3600
            at = (event.subscription_id, event.deployment, hour, charge.cost_center)
            target = seen.get(at)
            if target is None:
                target = seen[at] = targets(event.subscription_id, event.deployment, hour_key(event),
                                            charge.cost_center)
            usage = event.usage
            if usage is None:
                numbers += (*target, 0, 0, 0, 0, 0, charge.micros, 0 if charge.priced else 1)
            else:
                numbers += (*target, usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens,
                            usage.reasoning_tokens, usage.total_tokens, charge.micros, 0 if charge.priced else 1)
        budgets: list[tuple[object, ...]] = []
        for scope, kind, numbered in ((BudgetScope.SUBSCRIPTION, "s", subs), (BudgetScope.COST_CENTER, "c", ccs)):
            for (name, month), number in numbered.items():
                budget = self.budgets.get(scope, name)
                if budget is not None:
                    # spend * 100 >= t * budget  <=>  spend >= ceil(t * budget / 100)
                    limits = [(str(t), -(-t * budget.monthly_micros // 100)) for t in THRESHOLDS]
                    budgets.append((kind, number, key("a", month), scope.value, name, month,
                                    str(budget.monthly_micros), budget.currency, limits))
        mark_ttl, hourly_ttl, monthly_ttl = self._ttls
        return keys, [_pack((now, str(mark_ttl), str(hourly_ttl), str(monthly_ttl), len(pairs), hourly, monthly,
                             centers, budgets, numbers))]

    @_translated
    def month_to_date(self, month: str) -> list[SubscriptionMonth]:
        self._renew_auth()
        subs = sorted(_text(member) for member in cast(set[Any], self._client.smembers(self._key("si", month))))
        pipe = self._client.pipeline(transaction=False)
        for sub in subs:
            pipe.hmget(self._key("s", month, sub), list(MONTHLY))
        return [SubscriptionMonth(sub, month, *(int(value or 0) for value in values))
                for sub, values in zip(subs, pipe.execute(), strict=True) if any(v is not None for v in values)]

    @_translated
    def cost_center_spend(self, month: str) -> dict[str, int]:
        self._renew_auth()
        names = sorted(_text(member) for member in cast(set[Any], self._client.smembers(self._key("ci", month))))
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self._key("c", month, name), "spend_micros")
        return {name: int(spend) for name, spend in zip(names, pipe.execute(), strict=True) if spend is not None}

    @_translated
    def hourly(self, subscription_id: str, hour_prefix: str = "") -> list[HourlyRow]:
        self._renew_auth()
        members = cast(list[Any], self._client.zrange(self._key("hi", subscription_id), 0, -1))
        hours = [hour for hour in map(_text, members) if hour.startswith(hour_prefix)]
        pipe = self._client.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(self._key("h", hour, subscription_id))
        rows: dict[tuple[str, str], dict[str, int]] = {}
        for hour, fields in zip(hours, pipe.execute(), strict=True):
            for field, value in fields.items():
                measure, _, deployment = _text(field).partition("|")
                rows.setdefault((deployment, hour), dict.fromkeys(HOURLY, 0))[measure] = int(value)
        return [HourlyRow(subscription_id, deployment, hour, **rows[(deployment, hour)])
                for deployment, hour in sorted(rows)]

    @_translated
    def alerts(self, month: str) -> list[BudgetAlert]:
        self._renew_auth()
        alerts = [_alert(record) for record in cast(list[Any], self._client.hvals(self._key("a", month)))]
        return sorted(alerts, key=lambda a: (a.raised_at.isoformat(), a.scope.value, a.key, a.threshold))

    @_translated
    def clear_month(self, month: str) -> None:
        self._renew_auth()
        subs = [_text(m) for m in cast(set[Any], self._client.smembers(self._key("si", month)))]
        centers = [_text(m) for m in cast(set[Any], self._client.smembers(self._key("ci", month)))]
        hours = {sub: [hour for hour in map(_text, cast(list[Any], self._client.zrange(self._key("hi", sub), 0, -1)))
                       if hour.startswith(month)] for sub in subs}
        pipe = self._client.pipeline(transaction=True)
        for sub in subs:
            pipe.delete(self._key("s", month, sub))
            for hour in hours[sub]:
                pipe.delete(self._key("h", hour, sub))
            if hours[sub]:
                pipe.zrem(self._key("hi", sub), *hours[sub])
        for center in centers:
            pipe.delete(self._key("c", month, center))
        pipe.delete(self._key("si", month), self._key("ci", month))
        pipe.execute()

    @_translated
    def forget(self, event_ids: Sequence[str]) -> None:
        self._renew_auth()
        pipe = self._client.pipeline(transaction=False)
        for start in range(0, len(event_ids), CHUNK):
            pipe.delete(*(self._key("e", event_id) for event_id in event_ids[start:start + CHUNK]))
        pipe.execute()

    @_translated
    def probe(self) -> None:
        self._renew_auth()
        key, value = self._key("probe", secrets.token_hex(8)), secrets.token_hex(8)
        pipe = self._client.pipeline(transaction=False)
        pipe.set(key, value, ex=60)
        pipe.get(key)
        pipe.delete(key)
        _, read, _ = pipe.execute()
        if read is None or _text(read) != value:
            raise CountersUnavailable(f"{self.url}: wrote a probe key but read back {read!r}")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Redis' errors in the terms of the port: refused credentials are the user's to fix; an
        unreachable, loading, timing out or read-only server is an outage (CountersUnavailable)."""
        try:
            yield
        except AuthenticationError as error:  # a ConnectionError too: tested first
            raise AccessRefused(f"{self.url}: Redis refused the credentials ({error}): check the password in the "
                                "URL, or CHARGEBACK_REDIS_USERNAME and the identity's access policy") from None
        except NoPermissionError as error:
            raise AccessRefused(f"{self.url}: Redis refused a command ({_reason(error)}): assign the identity an "
                                "access policy that may write (terraform/modules/access assigns the database's default "
                                "policy)") from None
        except OUTAGES as error:
            raise CountersUnavailable(f"{self.url}: Redis is unavailable ({type(error).__name__}: {error})") from error

    def _renew_auth(self) -> None:
        """With Entra ID, re-open the connections before their token expires (they reconnect, and
        so authenticate with a fresh token, on the next command)."""
        if self._entra is not None and self._entra.renew_due():
            self._entra.forget()
            self._client.connection_pool.disconnect()

    def close(self) -> None:
        self._client.close()


def _chunks(pairs: list[Pair]) -> list[list[Pair]]:
    """At most CHUNK events per script call, and sums that Lua's doubles hold exactly."""
    chunks: list[list[Pair]] = []
    size = CHUNK
    total = 0
    for pair in pairs:
        usage = pair[0].usage
        magnitude = abs(pair[1].micros) if usage is None else (
            usage.prompt_tokens + usage.cached_tokens + usage.completion_tokens + usage.reasoning_tokens
            + usage.total_tokens + abs(pair[1].micros))
        if magnitude >= EXACT:
            raise ValueError(f"event {pair[0].event_id}: token counts and cost too large to count exactly")
        if size >= CHUNK or total + magnitude >= EXACT:
            chunks.append([])
            size = total = 0
        chunks[-1].append(pair)
        size += 1
        total += magnitude
    return chunks


def _reason(error: Exception) -> str:
    """Redis' own words, without the pipeline's "Command # N (ARGS) of pipeline caused error:"."""
    return str(error).rpartition("caused error: ")[2]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _alert(record: bytes | str) -> BudgetAlert:
    scope, key, month, threshold, spend, budget, currency, raised_at = json.loads(record)
    return BudgetAlert(BudgetScope(scope), key, month, int(threshold), int(spend), int(budget), currency,
                       datetime.fromisoformat(raised_at))


def open_redis_counters(url: str, budgets: Budgets, username: str | None = None) -> RedisCounters:
    """`redis://[:PASSWORD@]HOST:PORT/DB` (local), `rediss://HOST:PORT/DB` (Azure, Entra ID)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise UserError(f"{without_password(url)!r}: expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB")
    options: dict[str, Any] = {"socket_connect_timeout": 10, "socket_timeout": 60}
    if parsed.scheme == "rediss" and not parsed.password:
        if parsed.username:
            raise UserError(f"{USERNAME_VARIABLE} names the Entra user; rediss:// URLs carry no username")
        options["credential_provider"] = EntraIdCredentialProvider(username=username)
    return RedisCounters(redis.Redis.from_url(url, **options), budgets)
