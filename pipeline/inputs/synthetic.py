"""Synthetic APIM traffic for the demo: several teams and subscriptions, models, streaming and
not, cached and reasoning tokens, errors, ~1% duplicate deliveries and a few malformed events.
Deterministic for a seed, so a second demo run finds every event already in the ledger."""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Generic, TypeVar

import msgspec

from pipeline.domain.periods import month_bounds

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Team:
    subscription_id: str
    product_id: str
    app_id: str
    share: float
    deployments: tuple[tuple[str, float], ...]
    cost_center_header: str | None = None


@dataclass(frozen=True, slots=True)
class DemoDeployment:
    name: str
    model: str
    deployment_type: str
    region: str
    kind: str  # chat | embedding | reasoning
    spillover_deployment: str = ""  # a provisioned deployment's overflow target


DEPLOYMENTS = (
    DemoDeployment("chat-gpt4o", "gpt-4o-2024-11-20", "global", "", "chat"),
    # provisioned (PTU): its capacity (capacity_csv) is shared by support and data science
    # 4% of its requests spill over to chat-gpt41-overflow (billed pay-as-you-go at Data Zone prices)
    DemoDeployment("chat-gpt41", "gpt-4.1", "datazone-provisioned", "", "chat", "chat-gpt41-overflow"),
    DemoDeployment("chat-gpt41-overflow", "gpt-4.1", "datazone", "", "chat"),  # called only by spillover
    DemoDeployment("mini-gpt41", "gpt-4.1-mini", "global", "", "chat"),
    DemoDeployment("embed-small", "text-embedding-3-small", "regional", "eastus", "embedding"),
    DemoDeployment("reason-o4mini", "o4-mini", "global", "", "reasoning"),
    DemoDeployment("preview-gpt5", "gpt-5-preview", "global", "", "chat"),  # no price yet: unpriced
)
TEAMS = (
    Team("sub-search-prod", "product-enterprise", "app-search", 0.30,
         (("chat-gpt4o", 0.5), ("embed-small", 0.4), ("mini-gpt41", 0.1))),
    Team("sub-support-bot", "product-enterprise", "app-support", 0.25,
         (("chat-gpt41", 0.6), ("mini-gpt41", 0.4))),
    Team("sub-marketing-gen", "product-standard", "app-marketing", 0.15,
         (("chat-gpt4o", 0.7), ("preview-gpt5", 0.3))),
    Team("sub-data-science", "product-standard", "app-notebooks", 0.15,
         (("reason-o4mini", 0.5), ("chat-gpt41", 0.3), ("embed-small", 0.2))),
    Team("sub-hackathon", "product-trial", "app-hack", 0.10, (("mini-gpt41", 1.0),),
         cost_center_header="CC-9009-innovation"),
    Team("sub-legacy-tool", "product-trial", "app-legacy", 0.05, (("chat-gpt4o", 1.0),)),
)
REGIONS = ("West Europe", "East US", "Sweden Central")


def deployments_csv() -> str:
    lines = ["deployment,model,deployment_type,region,spillover_deployment"]
    lines += [f"{d.name},{d.model.removesuffix('-2024-11-20')},{d.deployment_type},{d.region},{d.spillover_deployment}"
              for d in DEPLOYMENTS]
    return "\n".join(lines) + "\n"


def cost_centers_csv(month: str) -> str:
    start, _ = month_bounds(month)
    middle = start + timedelta(days=15)
    return (
        "subscription_id,cost_center,effective_from,effective_to\n"
        "sub-search-prod,CC-1001-search,2024-01-01,\n"
        "sub-support-bot,CC-2002-support,2024-01-01,\n"
        # Marketing's work moved to the growth team mid-month: the map is effective-dated.
        f"sub-marketing-gen,CC-3003-marketing,2024-01-01,{middle}\n"
        f"sub-marketing-gen,CC-3100-growth,{middle},\n"
        "sub-data-science,CC-4004-data-science,2024-01-01,\n"
    )


def capacity_csv(month: str) -> str:
    """15 Data Zone PTUs of chat-gpt41 for the month (USD 1.10 per PTU-hour, a list-price figure to
    verify); idle capacity is charged to the platform team that owns the deployment."""
    start, end = month_bounds(month)
    return (
        "deployment,ptu,price_per_ptu_hour,currency,effective_from,effective_to,idle_owner\n"
        f"chat-gpt41,15,1.10,USD,{start},{end},CC-0001-platform\n"
    )


def budgets_csv() -> str:
    return (
        "scope,key,monthly_budget,currency\n"
        "subscription,sub-search-prod,100,USD\n"
        "cost-center,CC-2002-support,60,USD\n"
    )


def traffic(month: str, events: int, seed: int = 7) -> Iterator[bytes]:
    """`events` JSON lines of one month's traffic, duplicates and malformed lines included."""
    rng = random.Random(seed)
    start, end = month_bounds(month)
    seconds = int((datetime.combine(end, datetime.min.time()) -
                   datetime.combine(start, datetime.min.time())).total_seconds())
    # Weighted choices summed once (Weighted): random.choices sums the weights on every call.
    teams = Weighted.of(TEAMS, [team.share for team in TEAMS])
    by_name = {d.name: d for d in DEPLOYMENTS}
    deployments = {team: Weighted.of([by_name[name] for name, _ in team.deployments],
                                     [share for _, share in team.deployments]) for team in TEAMS}
    malformed = _malformed(rng, start)
    malformed_at = set(rng.sample(range(events), min(len(malformed), events)))
    # Event Hub delivers roughly in time order: so does the demo.
    offsets = sorted(rng.randrange(seconds * 1_000_000) for _ in range(events))
    first = datetime.combine(start, datetime.min.time(), UTC)
    recent: list[bytes] = []
    encode = msgspec.json.Encoder().encode
    for index, offset in enumerate(offsets):
        if index in malformed_at:
            yield malformed.pop()
            continue
        if recent and rng.random() < 0.01:
            yield rng.choice(recent)  # a redelivery
            continue
        team = teams.draw(rng)
        deployment = deployments[team].draw(rng)
        line = encode(_event(rng, team, deployment, first + timedelta(microseconds=offset)))
        recent.append(line)
        if len(recent) > 1000:
            recent.pop(0)
        yield line


@dataclass(frozen=True, slots=True)
class Weighted(Generic[T]):
    """A population with cumulative weights, drawn from as `random.choices(population, weights)[0]`
    draws (one `random()`, bisected into the cumulative weights; tests/test_synthetic.py holds the
    two equal): the same traffic for a seed, without choices' per-call summing and list."""

    population: Sequence[T]
    cumulative: list[float]

    @classmethod
    def of(cls, population: Sequence[T], weights: Sequence[float]) -> Weighted[T]:
        """The population with these relative weights (`random.choices`' `weights`)."""
        return cls(population, list(accumulate(weights)))

    def draw(self, rng: random.Random) -> T:
        return self.population[bisect(self.cumulative, rng.random() * self.cumulative[-1], 0,
                                      len(self.population) - 1)]


_STATUSES = Weighted.of((200, 429, 500, 400), (0.965, 0.02, 0.01, 0.005))


def _event(rng: random.Random, team: Team, deployment: DemoDeployment, moment: datetime) -> dict[str, object]:
    stream = deployment.kind != "embedding" and rng.random() < 0.3
    status = _STATUSES.draw(rng)
    usage: dict[str, int] | None = None
    source = "none"
    if status == 200:
        usage = _usage(rng, deployment.kind)
        source = "stream" if stream else "response"
        if stream and rng.random() < 0.1:
            usage = None  # the final usage chunk never came: to be joined from APIM's LLM logs
    event_id, event_text = _uuid4(rng.getrandbits(128))
    body: dict[str, object] = {
        "schemaVersion": 1,
        "eventId": event_text,
        "timestamp": moment.isoformat().replace("+00:00", "Z"),
        "subscriptionId": team.subscription_id,
        "productId": team.product_id,
        "apiId": "azure-openai",
        "operationId": "embeddings" if deployment.kind == "embedding" else "chat-completions",
        "callerAppId": team.app_id,
        "callerTenantId": "72f988bf-0000-4000-8000-000000000001",
        "callerObjectId": None,
        "costCenter": team.cost_center_header,
        "deployment": deployment.name,
        "model": deployment.model if status == 200 else None,
        "region": rng.choice(REGIONS),
        "stream": stream,
        "statusCode": status,
        "durationMs": rng.randrange(80, 30_000),
        "usage": usage,
        "usageSource": source,
        "tags": {"env": "prod"} if rng.random() < 0.5 else None,
    }
    if status in (200, 429, 500, 400):  # a backend response: the policy reads its spillover header and tier
        body["spillover"] = bool(deployment.spillover_deployment) and status == 200 and event_id % 25 == 0
        if status == 200 and not stream and deployment.kind != "embedding":
            body["serviceTier"], body["serviceTierSource"] = "default", "response"
    return body


def _uuid4(bits: int) -> tuple[int, str]:
    """`uuid.UUID(int=bits, version=4)` as its number and its text, without the object."""
    number = (bits & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76
    text = f"{number:032x}"
    return number, f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _usage(rng: random.Random, kind: str) -> dict[str, int]:
    prompt = int(rng.lognormvariate(6.5, 1.0)) + 1
    if kind == "embedding":
        return {"promptTokens": prompt, "completionTokens": 0, "totalTokens": prompt,
                "cachedTokens": 0, "reasoningTokens": 0}
    completion = int(rng.lognormvariate(5.0, 1.0)) + 1
    cached = (prompt // 1024) * 1024 if prompt >= 1024 and rng.random() < 0.4 else 0
    reasoning = int(completion * rng.uniform(0.3, 0.8)) if kind == "reasoning" else 0
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion,
            "cachedTokens": cached, "reasoningTokens": reasoning}


def _malformed(rng: random.Random, start: date) -> list[bytes]:
    day = f"{start.isoformat()}T09:00:00Z"
    good = (f'"schemaVersion":1,"timestamp":"{day}","subscriptionId":"sub-search-prod","apiId":"azure-openai",'
            '"operationId":"chat-completions","deployment":"chat-gpt4o","region":"East US","stream":false,'
            '"statusCode":200,"durationMs":120,"usageSource":"response"')
    usage = '"usage":{"promptTokens":10,"completionTokens":5,"totalTokens":15}'
    return [
        b"this is not json",
        b'{"schemaVersion":1,"eventId":"truncated-',
        f'{{{good},{usage}}}'.encode(),  # no eventId
        f'{{{good},"eventId":"neg-{rng.randrange(10**9)}","usage":{{"promptTokens":-3,"completionTokens":5,'
        f'"totalTokens":2}}}}'.encode(),
        f'{{{good},"eventId":"sum-{rng.randrange(10**9)}","usage":{{"promptTokens":10,"completionTokens":5,'
        f'"totalTokens":99}}}}'.encode(),
        f'{{{good},"eventId":"tz-{rng.randrange(10**9)}",{usage}}}'.replace("Z\"", "\"").encode(),
        b"\xff\xfe not utf-8 at all",
        b"",
    ]
