"""A synthetic enterprise that the benchmark data is drawn from: subscriptions (Zipf-shaped
traffic), cost centers (effective-dated, with mid-month moves and unmapped subscriptions),
deployments of the models in the shipped price catalog (plus one without a price and one
missing from the deployment map), and budgets. Deterministic for a seed.

`write_reference(folder)` writes the deployment map, cost-center map and budgets as the CSV
files the pipeline loads (pipeline.inputs.reference), so the report under test and the
hand-written SQL baseline read the same reference data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

TEAMS = ("search", "support", "marketing", "datasci", "legal", "finance", "hr", "sales", "devex", "security",
         "risk", "ops", "retail", "claims", "fraud", "pricing", "docs", "mobile", "web", "research")
ENVS = ("prod", "dev", "test", "stage", "sandbox")
REGIONS = ("West Europe", "East US", "Sweden Central", "France Central")
TENANT = "72f988bf-0000-4000-8000-000000000001"
UNMAPPED_MODEL = "gpt-35-turbo"  # the event model of the deployment missing from the map


@dataclass(frozen=True, slots=True)
class BenchDeployment:
    name: str
    model: str  # as in the deployment map
    event_model: str  # as APIM reports it (may carry a date suffix)
    deployment_type: str
    region: str
    kind: str  # chat | reasoning | embedding
    mapped: bool = True


DEPLOYMENTS = (
    BenchDeployment("gpt4o-global", "gpt-4o", "gpt-4o-2024-11-20", "global", "", "chat"),
    BenchDeployment("gpt4o-dz", "gpt-4o", "gpt-4o-2024-11-20", "datazone", "", "chat"),
    BenchDeployment("gpt41-global", "gpt-4.1", "gpt-4.1", "global", "", "chat"),
    BenchDeployment("gpt41-dz", "gpt-4.1", "gpt-4.1", "datazone", "", "chat"),
    BenchDeployment("gpt41-batch", "gpt-4.1", "gpt-4.1", "batch", "", "chat"),
    BenchDeployment("gpt41mini-global", "gpt-4.1-mini", "gpt-4.1-mini", "global", "", "chat"),
    BenchDeployment("gpt41nano-global", "gpt-4.1-nano", "gpt-4.1-nano", "global", "", "chat"),
    BenchDeployment("gpt4omini-eastus", "gpt-4o-mini", "gpt-4o-mini", "regional", "eastus", "chat"),
    BenchDeployment("o4mini-global", "o4-mini", "o4-mini", "global", "", "reasoning"),
    BenchDeployment("o3-dz", "o3", "o3", "datazone", "", "reasoning"),
    BenchDeployment("embed-small-eastus", "text-embedding-3-small", "text-embedding-3-small", "regional", "eastus",
                    "embedding"),
    BenchDeployment("embed-large", "text-embedding-3-large", "text-embedding-3-large", "global", "", "embedding"),
    BenchDeployment("preview-gpt5", "gpt-5-preview", "gpt-5-preview", "global", "", "chat"),  # no price
    BenchDeployment("legacy-davinci", "", UNMAPPED_MODEL, "", "", "chat", mapped=False),  # not in the map
)
DEPLOYMENT_WEIGHTS = (14, 6, 12, 6, 2, 14, 5, 6, 6, 2, 12, 4, 1.5, 0.5)


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    product_id: str
    app_id: str
    weight: float
    deployments: tuple[int, ...]  # indices into DEPLOYMENTS
    deployment_weights: tuple[float, ...]
    cost_center: str | None  # None: not in the cost-center map
    moves_to: str | None  # a second cost center from mid-month on
    header: str | None  # cost center the caller sends (used only when unmapped)


@dataclass(frozen=True, slots=True)
class World:
    month: str
    subscriptions: tuple[Subscription, ...]
    cost_centers: tuple[str, ...]
    user_pool: int  # distinct callerObjectIds

    @property
    def first_day(self) -> date:
        return date.fromisoformat(f"{self.month}-01")

    @property
    def move_day(self) -> date:
        return self.first_day + timedelta(days=15)

    def days(self) -> list[date]:
        first = self.first_day
        end = date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)
        return [first + timedelta(days=n) for n in range((end - first).days)]


def make_world(month: str = "2026-10", seed: int = 6, subscriptions: int = 200, cost_centers: int = 40) -> World:
    rng = random.Random(seed)
    centers = tuple(f"CC-{1000 + n}-{TEAMS[n % len(TEAMS)]}" for n in range(cost_centers))
    subs = []
    for n in range(subscriptions):
        team, env = TEAMS[n % len(TEAMS)], ENVS[(n // len(TEAMS)) % len(ENVS)]
        chosen = tuple(sorted(rng.sample(range(len(DEPLOYMENTS)), rng.randint(2, 5))))
        mapped = rng.random() >= 0.08
        center = rng.choice(centers) if mapped else None
        subs.append(Subscription(
            subscription_id=f"sub-{team}-{env}-{n:03d}",
            product_id=f"product-{('enterprise', 'standard', 'trial')[n % 3]}",
            app_id=f"app-{team}-{n:03d}",
            weight=1.0 / (n + 1) ** 0.9,
            deployments=chosen,
            deployment_weights=tuple(DEPLOYMENT_WEIGHTS[d] * rng.uniform(0.5, 1.5) for d in chosen),
            cost_center=center,
            moves_to=rng.choice(centers) if mapped and rng.random() < 0.05 else None,
            header=None if mapped or rng.random() < 0.5 else f"CC-9{n:03d}-header",
        ))
    return World(month, tuple(subs), centers, user_pool=5000)


def deployments_csv() -> str:
    lines = ["deployment,model,deployment_type,region"]
    lines += [f"{d.name},{d.model},{d.deployment_type},{d.region}" for d in DEPLOYMENTS if d.mapped]
    return "\n".join(lines) + "\n"


def cost_centers_csv(world: World) -> str:
    lines = ["subscription_id,cost_center,effective_from,effective_to"]
    for sub in world.subscriptions:
        if sub.cost_center is None:
            continue
        if sub.moves_to is None:
            lines.append(f"{sub.subscription_id},{sub.cost_center},2024-01-01,")
        else:
            lines.append(f"{sub.subscription_id},{sub.cost_center},2024-01-01,{world.move_day}")
            lines.append(f"{sub.subscription_id},{sub.moves_to},{world.move_day},")
    return "\n".join(lines) + "\n"


def budgets_csv(world: World) -> str:
    """A few budgets, so that the counters check thresholds and raise alerts as in production."""
    lines = ["scope,key,monthly_budget,currency"]
    lines += [f"subscription,{sub.subscription_id},{500 * (n + 1)},USD"
              for n, sub in enumerate(world.subscriptions[:5])]
    lines += [f"cost-center,{center},2000,USD" for center in world.cost_centers[:5]]
    return "\n".join(lines) + "\n"


def write_reference(world: World, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"deployments": folder / "deployments.csv", "cost_centers": folder / "cost-centers.csv",
             "budgets": folder / "budgets.csv"}
    files["deployments"].write_text(deployments_csv())
    files["cost_centers"].write_text(cost_centers_csv(world))
    files["budgets"].write_text(budgets_csv(world))
    return files
