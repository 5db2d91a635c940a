"""Resolutions are kept per reference period (the days between effective-date boundaries): a
reference or a set of corrections that has resolved many keys must answer exactly as a fresh one
that resolves each key alone, on every day, across every kind of boundary."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from pipeline.domain.capacity import Capacity, CapacityPlan
from pipeline.domain.corrections import Corrections, Kind, correction
from pipeline.domain.costing import Reference, Resolution, Unpriced, UsageKey, UsageState
from pipeline.domain.mappings import CostCenterAssignment, CostCenterMap, Deployment, DeploymentMap
from pipeline.domain.pricing import Price, PriceCatalog

D = Decimal
SEP_25 = date(2026, 9, 25)
DAYS = [SEP_25 + timedelta(days=n) for n in range(45)]  # late September to early November


def price(model: str, input_: str, start: date, end: date | None = None, region: str = "*") -> Price:
    return Price(model, "Global Standard", region, start, end, "USD", D(input_), D(input_) / 2, D(input_) * 4)


def catalog(version: str, shift: str = "0") -> PriceCatalog:
    return PriceCatalog([
        price("m-alpha", str(D("1.00") + D(shift)), date(2026, 1, 1), date(2026, 10, 16)),
        price("m-alpha", str(D("2.00") + D(shift)), date(2026, 10, 16)),
        price("m-alpha", "1.50", date(2026, 10, 10), date(2026, 10, 20), region="westeurope"),
        price("m-beta", "3.00", date(2026, 10, 5), date(2026, 10, 25)),  # no price before the 5th, after the 24th
    ], version)


def reference() -> Reference:
    return Reference(
        catalog("v1"),
        DeploymentMap([Deployment("dep-alpha", "m-alpha", "globalstandard", None),
                       Deployment("dep-eu", "m-alpha", "Global Standard", "West Europe"),
                       Deployment("dep-beta", "m-beta", "Global Standard", None),
                       Deployment("dep-ptu", "m-alpha", "provisioned-managed", None)]),
        CostCenterMap([CostCenterAssignment("sub-a", "CC-A1", date(2026, 1, 1), date(2026, 10, 12)),
                       CostCenterAssignment("sub-a", "CC-A2", date(2026, 10, 12), None),
                       CostCenterAssignment("sub-b", "CC-B", date(2026, 10, 3), date(2026, 10, 28))]),
        CapacityPlan([Capacity("dep-ptu", 50, D("1.00"), "USD", datetime(2026, 10, 7, 13, tzinfo=UTC),
                               datetime(2026, 10, 21, 9, tzinfo=UTC))]),
    )


def corrections() -> Corrections:
    at = datetime(2026, 11, 2, tzinfo=UTC)
    return Corrections((
        correction(kind=Kind.REASSIGN, reason="moved", by="t", at=at, subscription_id="sub-b", cost_center="CC-X",
                   start=datetime(2026, 10, 8, tzinfo=UTC), end=datetime(2026, 10, 18, tzinfo=UTC)),
        correction(kind=Kind.REASSIGN, reason="moved again", by="t", at=at, subscription_id="sub-b",
                   cost_center="CC-Y", start=datetime(2026, 10, 14, tzinfo=UTC),
                   end=datetime(2026, 10, 22, tzinfo=UTC)),
        correction(kind=Kind.REPRICE, reason="discount", by="t", at=at, catalog_version="v0", model="m-alpha",
                   start=datetime(2026, 10, 2, tzinfo=UTC), end=datetime(2026, 10, 19, tzinfo=UTC)),
        correction(kind=Kind.VOID, reason="test traffic", by="t", at=at, subscription_id="sub-a",
                   start=datetime(2026, 10, 9, 10, tzinfo=UTC), end=datetime(2026, 10, 9, 11, tzinfo=UTC)),
    ), {"v0": PriceCatalog([price("m-alpha", "0.10", date(2026, 10, 6), date(2026, 10, 13))], "v0")})


def keys() -> list[UsageKey]:
    return [UsageKey(day, subscription, sent, deployment, model, state)
            for day in DAYS
            for subscription in ("sub-a", "sub-b", "sub-c")
            for sent in (None, " CC-SENT ")
            for deployment, model in (("dep-alpha", None), ("dep-alpha", "m-alpha-2026-01-01"), ("dep-eu", None),
                                      ("dep-beta", None), ("dep-ptu", None), ("dep-unknown", "m-alpha"))
            for state in (UsageState.MEASURED, UsageState.PENDING)]


def test_a_reference_resolves_each_day_as_a_fresh_one() -> None:
    shared = reference()
    shuffled = keys()
    random.Random(6).shuffle(shuffled)
    kinds: set[tuple[str, Unpriced | None, bool]] = set()
    for key in shuffled:
        resolved = shared.resolve(key)
        assert resolved == reference().resolve(key), key
        kinds.add((resolved.cost_center, resolved.unpriced, resolved.provisioned))
    # the keys cross every boundary: both assignments, both prices, capacity on and off, no price
    assert {"CC-A1", "CC-A2", "CC-B", "unassigned", "CC-SENT"} <= {cost_center for cost_center, _, _ in kinds}
    assert {Unpriced.NO_PRICE, Unpriced.NO_CAPACITY, Unpriced.UNKNOWN_DEPLOYMENT, None} <= {u for _, u, _ in kinds}
    assert any(provisioned for _, _, provisioned in kinds)


def test_a_detail_that_names_the_day_names_each_day() -> None:
    shared = reference()
    details = {day: shared.resolve(UsageKey(day, "sub-a", None, "dep-beta", None, UsageState.MEASURED)).detail
               for day in (date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 30))}
    assert details == {day: f"no price for m-beta (Global Standard, region *) on {day}" for day in details}


def test_corrections_resolve_each_day_as_fresh_ones() -> None:
    shared_reference, shared = reference(), corrections()
    shuffled = keys()
    random.Random(7).shuffle(shuffled)
    applied: set[tuple[str, ...]] = set()
    for key in shuffled:
        resolved = shared.resolve(shared_reference, key)
        assert resolved == corrections().resolve(reference(), key), key
        applied.add(resolved.corrections)
    assert len(applied) >= 4  # none, each reassign, the reprice, a reprice and a reassign


def test_corrections_follow_a_new_reference() -> None:
    shared = corrections()
    key = UsageKey(date(2026, 10, 20), "sub-a", None, "dep-alpha", None, UsageState.MEASURED)
    first = shared.resolve(reference(), key)
    other = Reference(catalog("v2", shift="5"), *(getattr(reference(), name) for name in
                                                 ("deployments", "cost_centers", "capacity")))
    second = shared.resolve(other, key)
    assert isinstance(first, Resolution) and first.price is not None and second.price is not None
    assert (first.price.input_per_1m, second.price.input_per_1m) == (D("2.00"), D("7.00"))
    assert second == corrections().resolve(other, key)
