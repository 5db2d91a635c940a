"""What a deployment is (model, type, region) and who pays for a subscription, over time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise

from pipeline.domain.pricing import CatalogError

UNASSIGNED = "unassigned"
PROVISIONED_MARK = "provisioned"  # a deployment type naming it (ProvisionedManaged, GlobalProvisionedManaged, ...)


def is_provisioned_type(deployment_type: str) -> bool:
    """`provisioned`, `GlobalProvisionedManaged`, `datazone-provisioned`, ...: billed per PTU-hour."""
    return PROVISIONED_MARK in deployment_type.lower()


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    model: str | None
    deployment_type: str
    region: str | None
    origin: str = field(default="", compare=False)
    # A provisioned deployment's spillover target: the standard deployment whose model and
    # deployment type price the requests Azure spilled over from it (billed pay-as-you-go).
    spillover_deployment: str | None = None
    # The Azure OpenAI (Foundry) account that serves it, as a resource id: where Azure Monitor's
    # metrics and Cost Management's costs of the deployment are found (chargeback reconcile-azure).
    account: str | None = None


class DeploymentMap:
    def __init__(self, deployments: Iterable[Deployment] = ()) -> None:
        self._by_name: dict[str, Deployment] = {}
        for deployment in deployments:
            if deployment.name in self._by_name:
                first = self._by_name[deployment.name].origin
                raise CatalogError(f"{deployment.origin or 'deployment map'}: deployment {deployment.name!r} is "
                                   "listed twice" + (f" (first at {first})" if first else ""))
            self._by_name[deployment.name] = deployment
        problems = self.spillover_problems()
        if problems:
            raise CatalogError("\n".join(problems))

    def spillover_problems(self) -> list[str]:
        """A spillover target that is not in the map, is itself provisioned, or is named by a
        deployment that is not provisioned (Azure spills over only from provisioned ones)."""
        problems = []
        for deployment in self._by_name.values():
            name = deployment.spillover_deployment
            if name is None:
                continue
            where = deployment.origin or "deployment map"
            target = self._by_name.get(name)
            if not is_provisioned_type(deployment.deployment_type):
                problems.append(f"{where}: deployment {deployment.name!r} ({deployment.deployment_type}) names "
                                f"spillover_deployment {name!r}, but only a provisioned deployment spills over: "
                                "leave it blank")
            elif target is None:
                problems.append(f"{where}: spillover_deployment {name!r} of {deployment.name!r} is not in the "
                                "deployment map: add it (its model and standard deployment type price the spilled "
                                "requests)")
            elif is_provisioned_type(target.deployment_type):
                problems.append(f"{where}: spillover_deployment {name!r} of {deployment.name!r} is provisioned "
                                f"({target.deployment_type}): spilled requests are billed pay-as-you-go, so the "
                                "target must be a standard deployment (global, datazone, regional)")
        return problems

    def get(self, name: str) -> Deployment | None:
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._by_name)

    def accounts(self) -> list[str]:
        """The Azure OpenAI accounts (resource ids) the deployments name, sorted."""
        return sorted({d.account for d in self._by_name.values() if d.account})

    def __iter__(self) -> Iterator[Deployment]:
        return iter(self._by_name.values())


@dataclass(frozen=True, slots=True)
class CostCenterAssignment:
    subscription_id: str
    cost_center: str
    effective_from: date
    effective_to: date | None
    origin: str = field(default="", compare=False)

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)


class CostCenterMap:
    """Subscription -> cost center, effective-dated. The mapping wins over a caller-sent cost
    center, so that no caller can move its own cost elsewhere."""

    def __init__(self, assignments: Iterable[CostCenterAssignment] = ()) -> None:
        self._by_subscription: dict[str, list[CostCenterAssignment]] = defaultdict(list)
        for assignment in assignments:
            self._by_subscription[assignment.subscription_id].append(assignment)
        for subscription, group in self._by_subscription.items():
            group.sort(key=lambda a: a.effective_from)
            for earlier, later in pairwise(group):
                if earlier.effective_to is None or earlier.effective_to > later.effective_from:
                    raise CatalogError(
                        f"{later.origin or 'cost-center map'}: subscription {subscription!r} has overlapping "
                        "cost-center assignments: "
                        f"{earlier.cost_center} from {earlier.effective_from} and "
                        f"{later.cost_center} from {later.effective_from}"
                    )

    def subscriptions(self) -> list[str]:
        """Every subscription the map assigns."""
        return sorted(self._by_subscription)

    def cost_centers(self) -> set[str]:
        """Every cost center the map names, on any day."""
        return {a.cost_center for group in self._by_subscription.values() for a in group}

    def boundaries(self) -> set[date]:
        """Every day on which an assignment starts or ends."""
        return {day for group in self._by_subscription.values() for a in group
                for day in (a.effective_from, a.effective_to) if day is not None}

    def cost_center(self, subscription_id: str, day: date, sent: str | None) -> str:
        for assignment in self._by_subscription.get(subscription_id, ()):
            if assignment.in_force(day):
                return assignment.cost_center
        if sent and sent.strip():
            return sent.strip()
        return UNASSIGNED
