"""Live counters on Redis (Azure Cache for Redis in production), with SqliteCounters' contract.

Dedupe, increment and budget check are ONE Lua script call per chunk of at most 500 events; the
chunks of a batch go out in one pipeline (one round trip). For each event the script creates its
mark with `SET NX EX`; only an event whose mark is new adds to the sums. After the increments it
compares each touched budgeted scope's month-to-date spend with the thresholds and records an
alert with `HSETNX`: the first script to see a threshold reached raises it, and only that one.
A script runs atomically, so two consumers over overlapping batches count every event once and
raise every alert once; a redelivered batch changes nothing. An alert's spend_micros is the
month-to-date spend right after the chunk that reached it (SqliteCounters: after the whole batch;
the same for batches of up to 500 events).

Keys (T is the hash tag `{PREFIX}`, default `{cb}`; see docs/redis-keys.md for the reasons):

    T:e:EVENT_ID           string "1"  dedupe mark of one eventId              TTL mark_ttl (8 d)
    T:h:HOUR:SUBSCRIPTION  hash        MEASURE|DEPLOYMENT -> int, HOUR = YYYY-MM-DDTHH (UTC)
                                       MEASURE in requests, prompt/cached/completion/reasoning/
                                       total_tokens                            TTL hourly_ttl (40 d)
    T:hi:SUBSCRIPTION      zset        HOURs with a T:h hash, scored by last write   TTL hourly_ttl
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

import base64
import hashlib
import json
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

import redis
from redis.credentials import CredentialProvider
from redis.exceptions import NoScriptError

from pipeline.adapters.sqlite_counters import HOURLY, MONTHLY, hour_key
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import THRESHOLDS, BudgetAlert, Budgets, BudgetScope, LiveCharge, SubscriptionMonth
from pipeline.ports import CountResult

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

DAY = 86_400
MARK_TTL = 8 * DAY  # > Event Hubs Standard retention (7 d): a redelivery comes from the hub, within retention
HOURLY_TTL = 40 * DAY  # the current and the previous month of hourly dashboards
MONTHLY_TTL = 400 * DAY  # a year of month-to-date history and budget alerts
CHUNK = 500  # events per script call: a few ms of server time, so other clients are never blocked long
EXACT = 2**53  # Lua numbers are doubles: a chunk's sums stay below this to be exact
USERNAME_VARIABLE = "CHARGEBACK_REDIS_USERNAME"
ENTRA_SCOPE = "https://redis.azure.com/.default"
COST_CENTER_MEASURES = ("requests", "spend_micros")

_LUA = """
local now, mark_ttl, hourly_ttl, monthly_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n, nh, ns, nc, nb = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local HOURLY, MONTHLY, COST_CENTER = {@HOURLY@}, {@MONTHLY@}, {@COST_CENTER@}
local a = 10
local function targets(count, width)  -- {key index, member or field, index key index, member}
  local list = {}
  for i = 1, count do
    local t = {}
    for j = 1, width do t[j] = ARGV[a + j - 1] end
    list[i], a = t, a + width
  end
  return list
end
local hourly, subs, ccs = targets(nh, 4), targets(ns, 3), targets(nc, 3)
local budgets = {}
for i = 1, nb do
  local b = {kind = ARGV[a], target = tonumber(ARGV[a + 1]), alerts = KEYS[tonumber(ARGV[a + 2])],
             scope = ARGV[a + 3], key = ARGV[a + 4], month = ARGV[a + 5], micros = ARGV[a + 6],
             currency = ARGV[a + 7], limits = {}}
  local count = tonumber(ARGV[a + 8])
  a = a + 9
  for j = 1, count do b.limits[j], a = {ARGV[a], tonumber(ARGV[a + 1])}, a + 2 end
  budgets[i] = b
end
local function bump(target, values, width)
  if not target.sums then target.sums = {} for j = 1, width do target.sums[j] = 0 end end
  for j = 1, width do target.sums[j] = target.sums[j] + values[j] end
end
local new = 0
for i = 1, n do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', mark_ttl) then
    new = new + 1
    local v = {1}
    for j = 3, 9 do v[j - 1] = tonumber(ARGV[a + j]) end  -- 5 token counts, micros, unpriced
    bump(hourly[tonumber(ARGV[a])], v, 6)
    bump(subs[tonumber(ARGV[a + 1])], v, 8)
    bump(ccs[tonumber(ARGV[a + 2])], {1, v[7]}, 2)
  end
  a = a + 10
end
local function int(x) return string.format('%.0f', x) end
local clock = tonumber(redis.call('TIME')[1])  -- the server's clock, the one TTLs run on
for _, h in ipairs(hourly) do
  if h.sums then
    local key, index = KEYS[tonumber(h[1])], KEYS[tonumber(h[3])]
    for j, name in ipairs(HOURLY) do redis.call('HINCRBY', key, name .. '|' .. h[2], int(h.sums[j])) end
    redis.call('EXPIRE', key, hourly_ttl)
    redis.call('ZADD', index, clock, h[4])  -- score: last write, as the hash's TTL
    redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. int(clock - hourly_ttl))
    redis.call('EXPIRE', index, hourly_ttl)
  end
end
local function monthly(list, names)
  for _, t in ipairs(list) do
    if t.sums then
      local key, index = KEYS[tonumber(t[1])], KEYS[tonumber(t[2])]
      for j, name in ipairs(names) do
        local total = redis.call('HINCRBY', key, name, int(t.sums[j]))
        if name == 'spend_micros' then t.spend = total end
      end
      redis.call('EXPIRE', key, monthly_ttl)
      redis.call('SADD', index, t[3])
      redis.call('EXPIRE', index, monthly_ttl)
    end
  end
end
monthly(subs, MONTHLY)
monthly(ccs, COST_CENTER)
local alerts = {}
for _, b in ipairs(budgets) do
  local t = (b.kind == 's' and subs or ccs)[b.target]
  if t.sums then
    for _, limit in ipairs(b.limits) do
      if t.spend >= limit[2] then
        local record = cjson.encode({b.scope, b.key, b.month, limit[1], int(t.spend), b.micros, b.currency, now})
        if redis.call('HSETNX', b.alerts, b.scope .. '|' .. limit[1] .. '|' .. b.key, record) == 1 then
          redis.call('EXPIRE', b.alerts, monthly_ttl)
          alerts[#alerts + 1] = record
        end
      end
    end
  end
end
return {new, alerts}
"""


def _lua_list(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


SCRIPT = (_LUA.replace("@HOURLY@", _lua_list(HOURLY)).replace("@MONTHLY@", _lua_list(MONTHLY))
          .replace("@COST_CENTER@", _lua_list(COST_CENTER_MEASURES)))

Pair = tuple[UsageEvent, LiveCharge]
Call = tuple[list[str], list[str | int]]


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
        provider = client.connection_pool.connection_kwargs.get("credential_provider")
        self._entra = provider if isinstance(provider, EntraIdCredentialProvider) else None

    def _key(self, *parts: str) -> str:
        return ":".join((self._tag, *parts))

    def add(self, events: Sequence[UsageEvent], charges: Sequence[LiveCharge]) -> CountResult:
        unique: dict[str, Pair] = {}
        for event, charge in zip(events, charges, strict=True):  # the first copy wins, as in the ledger
            unique.setdefault(event.event_id, (event, charge))
        if not unique:
            return CountResult(0, [])
        self._renew_auth()
        now = datetime.now(UTC)
        replies = self._run([self._call(chunk, now) for chunk in _chunks(list(unique.values()))])
        return CountResult(sum(int(reply[0]) for reply in replies),
                           [_alert(record) for reply in replies for record in reply[1]])

    def _run(self, calls: list[Call]) -> list[Any]:
        """All chunks in one pipeline of EVALSHA. A server without the script (restart, failover,
        SCRIPT FLUSH) answers NOSCRIPT without running it: load it and send those chunks again."""
        replies: dict[int, Any] = {}
        for attempt in range(2):
            pipe = self._client.pipeline(transaction=False)
            waiting = [index for index in range(len(calls)) if index not in replies]
            for index in waiting:
                keys, argv = calls[index]
                pipe.evalsha(self._sha, len(keys), *keys, *argv)
            for index, reply in zip(waiting, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    continue
                if isinstance(reply, Exception):
                    raise reply
                replies[index] = reply
            if len(replies) == len(calls):
                break
            self._client.script_load(self._script)
        return [replies[index] for index in range(len(calls))]

    def _call(self, pairs: list[Pair], now: datetime) -> Call:
        """KEYS and ARGV of one script call (the layout the Lua code above reads)."""
        keys = [self._key("e", event.event_id) for event, _ in pairs]
        slots: dict[str, int] = {}

        def key(*parts: str) -> int:
            name = self._key(*parts)
            if name not in slots:
                keys.append(name)
                slots[name] = len(keys)
            return slots[name]

        hours: dict[tuple[str, str, str], int] = {}
        subs: dict[tuple[str, str], int] = {}
        ccs: dict[tuple[str, str], int] = {}
        h_args: list[str | int] = []
        s_args: list[str | int] = []
        c_args: list[str | int] = []
        e_args: list[str | int] = []
        for event, charge in pairs:
            sub, hour = event.subscription_id, hour_key(event)
            month = hour[:7]
            h = hours.get((sub, event.deployment, hour))
            if h is None:
                h = hours[(sub, event.deployment, hour)] = len(hours) + 1
                h_args += [key("h", hour, sub), event.deployment, key("hi", sub), hour]
            s = subs.get((sub, month))
            if s is None:
                s = subs[(sub, month)] = len(subs) + 1
                s_args += [key("s", month, sub), key("si", month), sub]
            c = ccs.get((charge.cost_center, month))
            if c is None:
                c = ccs[(charge.cost_center, month)] = len(ccs) + 1
                c_args += [key("c", month, charge.cost_center), key("ci", month), charge.cost_center]
            e_args += [h, s, c, *_tokens(event), charge.micros, 0 if charge.priced else 1]
        b_args: list[str | int] = []
        budgeted = 0
        for scope, kind, targets in ((BudgetScope.SUBSCRIPTION, "s", subs), (BudgetScope.COST_CENTER, "c", ccs)):
            for (name, month), number in targets.items():
                budget = self.budgets.get(scope, name)
                if budget is None:
                    continue
                budgeted += 1
                b_args += [kind, number, key("a", month), scope.value, name, month, budget.monthly_micros,
                           budget.currency, len(THRESHOLDS)]
                for threshold in THRESHOLDS:  # spend * 100 >= t * budget  <=>  spend >= ceil(t * budget / 100)
                    b_args += [threshold, -(-threshold * budget.monthly_micros // 100)]
        argv: list[str | int] = [now.isoformat(), *self._ttls, len(pairs), len(hours), len(subs), len(ccs), budgeted,
                                 *h_args, *s_args, *c_args, *b_args, *e_args]
        return keys, argv

    def month_to_date(self, month: str) -> list[SubscriptionMonth]:
        self._renew_auth()
        subs = sorted(_text(member) for member in cast(set[Any], self._client.smembers(self._key("si", month))))
        pipe = self._client.pipeline(transaction=False)
        for sub in subs:
            pipe.hmget(self._key("s", month, sub), list(MONTHLY))
        return [SubscriptionMonth(sub, month, *(int(value or 0) for value in values))
                for sub, values in zip(subs, pipe.execute(), strict=True) if any(v is not None for v in values)]

    def cost_center_spend(self, month: str) -> dict[str, int]:
        self._renew_auth()
        names = sorted(_text(member) for member in cast(set[Any], self._client.smembers(self._key("ci", month))))
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self._key("c", month, name), "spend_micros")
        return {name: int(spend) for name, spend in zip(names, pipe.execute(), strict=True) if spend is not None}

    def hourly(self, subscription_id: str, hour_prefix: str = "") -> list[dict[str, object]]:
        self._renew_auth()
        members = cast(list[Any], self._client.zrange(self._key("hi", subscription_id), 0, -1))
        hours = [hour for hour in map(_text, members) if hour.startswith(hour_prefix)]
        pipe = self._client.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(self._key("h", hour, subscription_id))
        rows: dict[tuple[str, str], dict[str, object]] = {}
        for hour, fields in zip(hours, pipe.execute(), strict=True):
            for field, value in fields.items():
                measure, _, deployment = _text(field).partition("|")
                row = rows.setdefault((deployment, hour), {
                    "subscription_id": subscription_id, "deployment": deployment, "hour": hour,
                    **dict.fromkeys(HOURLY, 0)})
                row[measure] = int(value)
        return [rows[key] for key in sorted(rows)]

    def alerts(self, month: str) -> list[BudgetAlert]:
        self._renew_auth()
        alerts = [_alert(record) for record in cast(list[Any], self._client.hvals(self._key("a", month)))]
        return sorted(alerts, key=lambda a: (a.raised_at.isoformat(), a.scope.value, a.key, a.threshold))

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

    def forget(self, event_ids: Sequence[str]) -> None:
        self._renew_auth()
        pipe = self._client.pipeline(transaction=False)
        for start in range(0, len(event_ids), CHUNK):
            pipe.delete(*(self._key("e", event_id) for event_id in event_ids[start:start + CHUNK]))
        pipe.execute()

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
        magnitude = sum(_tokens(pair[0])) + abs(pair[1].micros)
        if magnitude >= EXACT:
            raise ValueError(f"event {pair[0].event_id}: token counts and cost too large to count exactly")
        if size >= CHUNK or total + magnitude >= EXACT:
            chunks.append([])
            size = total = 0
        chunks[-1].append(pair)
        size += 1
        total += magnitude
    return chunks


def _tokens(event: UsageEvent) -> tuple[int, int, int, int, int]:
    usage = event.usage
    if usage is None:
        return (0, 0, 0, 0, 0)
    return (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, usage.reasoning_tokens,
            usage.total_tokens)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _alert(record: bytes | str) -> BudgetAlert:
    scope, key, month, threshold, spend, budget, currency, raised_at = json.loads(record)
    return BudgetAlert(BudgetScope(scope), key, month, int(threshold), int(spend), int(budget), currency,
                       datetime.fromisoformat(raised_at))


class EntraIdCredentialProvider(CredentialProvider):
    """(object id, Microsoft Entra token) for Azure Cache for Redis, asked for on every connect.
    The username is CHARGEBACK_REDIS_USERNAME (the object id of the managed identity or service
    principal), else the `oid` claim of the token. DefaultAzureCredential caches and refreshes
    tokens, so a reconnect costs no extra call to Entra ID while the cached token is fresh."""

    def __init__(self, credential: TokenCredential | None = None, username: str | None = None, *,
                 renew_before_seconds: float = 300) -> None:
        self._credential = credential
        self._username = username or None
        self._renew_before = renew_before_seconds  # Azure asks for a new token >= 3 min before expiry
        self._earliest_expiry: float | None = None
        self._lock = threading.Lock()

    def get_credentials(self) -> tuple[str, str]:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        token = self._credential.get_token(ENTRA_SCOPE)
        with self._lock:
            expiry = self._earliest_expiry
            self._earliest_expiry = token.expires_on if expiry is None else min(expiry, token.expires_on)
        return (self._username or _object_id(token.token), token.token)

    def renew_due(self, now: float | None = None) -> bool:
        """Whether a connection may be using a token that expires within renew_before_seconds."""
        expiry = self._earliest_expiry
        return expiry is not None and (time.time() if now is None else now) >= expiry - self._renew_before

    def forget(self) -> None:
        with self._lock:
            self._earliest_expiry = None


def _object_id(token: str) -> str:
    try:
        payload = token.split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["oid"])
    except (IndexError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"the Entra token carries no object id: set {USERNAME_VARIABLE} to the object id "
                         "of the identity that connects to Redis") from error


def open_redis_counters(url: str, budgets: Budgets, username: str | None = None) -> RedisCounters:
    """`redis://[:PASSWORD@]HOST:PORT/DB` (local), `rediss://HOST:PORT/DB` (Azure, Entra ID)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"{url!r}: expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB")
    options: dict[str, Any] = {"socket_connect_timeout": 10, "socket_timeout": 60}
    if parsed.scheme == "rediss" and not parsed.password:
        if parsed.username:
            raise ValueError(f"{USERNAME_VARIABLE} names the Entra user; rediss:// URLs carry no username")
        options["credential_provider"] = EntraIdCredentialProvider(username=username)
    return RedisCounters(redis.Redis.from_url(url, **options), budgets)
