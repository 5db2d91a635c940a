"""Prices, exact money, cost-center assignment and resolution, with the arithmetic done by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, Inexact

import pytest

from pipeline.domain.costing import CostLine, Reference, Unpriced, UsageKey, UsageState
from pipeline.domain.mappings import (
    UNASSIGNED,
    CostCenterAssignment,
    CostCenterMap,
    Deployment,
    DeploymentMap,
)
from pipeline.domain.pricing import MONEY, CatalogError, Price, PriceCatalog, base_model, money_sum

D = Decimal
OCT_15 = date(2026, 10, 15)


def price(model: str = "gpt-4o", input_: str = "2.50", cached: str = "1.25", output: str = "10.00", *,
          deployment_type: str = "global", region: str = "*", start: date = date(2024, 5, 13),
          end: date | None = None) -> Price:
    return Price(model, deployment_type, region, start, end, "USD", D(input_), D(cached), D(output))


def test_cost_of_cached_and_uncached_prompt_and_completion() -> None:
    # (600 * 2.50 + 400 * 1.25 + 200 * 10.00) / 1e6 = (1500 + 500 + 2000) / 1e6 = 0.004
    assert price().cost(prompt_tokens=1000, cached_tokens=400, completion_tokens=200) == D("0.004")


def test_reasoning_tokens_are_priced_once_as_output() -> None:
    # o3 at 2.00 / 0.50 / 8.00: 500 prompt, 300 completion of which 250 reasoning.
    # (500 * 2.00 + 300 * 8.00) / 1e6 = (1000 + 2400) / 1e6 = 0.0034 -- not (300 + 250) * 8.00.
    o3 = price("o3", "2.00", "0.50", "8.00")
    key = UsageKey(OCT_15, "sub-a", None, "dep", "o3", UsageState.MEASURED)
    reference = Reference(PriceCatalog([o3], "v"), DeploymentMap([Deployment("dep", "o3", "global", None)]),
                          CostCenterMap())
    line = CostLine(key, reference.resolve(key), requests=1, prompt_tokens=500, cached_tokens=0,
                    completion_tokens=300, reasoning_tokens=250)
    assert line.cost == D("0.0034")


def test_embeddings_have_no_completion_cost() -> None:
    # text-embedding-3-small, 0.02 input (cached priced at input), 0 output:
    # 12345 * 0.02 / 1e6 = 246.9 / 1e6 = 0.0002469
    embedding = price("text-embedding-3-small", "0.02", "0.02", "0")
    assert embedding.cost(12345, 0, 0) == D("0.0002469")
    assert embedding.cost(12345, 345, 0) == D("0.0002469")  # 12000 * 0.02 + 345 * 0.02 = 246.9


def test_zero_tokens_cost_zero() -> None:
    assert price().cost(0, 0, 0) == 0


def test_price_change_mid_month_effective_to_is_exclusive() -> None:
    old = price("m", "1.00", "0.50", "4.00", start=date(2026, 1, 1), end=date(2026, 10, 16))
    new = price("m", "2.00", "1.00", "8.00", start=date(2026, 10, 16))
    catalog = PriceCatalog([new, old], "v")
    assert catalog.find("m", "global", None, date(2026, 10, 15)) is old
    assert catalog.find("m", "global", None, date(2026, 10, 16)) is new
    assert catalog.find("m", "global", None, date(2025, 12, 31)) is None
    # 1000 prompt + 1000 completion: old (1000 * 1 + 1000 * 4) / 1e6 = 0.005; new (2000 + 8000) / 1e6 = 0.01
    assert old.cost(1000, 0, 1000) == D("0.005")
    assert new.cost(1000, 0, 1000) == D("0.01")


def test_model_matching_exact_first_then_without_date_suffix() -> None:
    base = price("gpt-4o")
    dated = price("gpt-4o-2024-11-20", "2.00", "1.00", "9.00")
    mini = price("gpt-4o-mini", "0.15", "0.075", "0.60")
    datazone = price("gpt-4o", "2.75", "1.375", "11.00", deployment_type="datazone")
    catalog = PriceCatalog([base, dated, mini, datazone], "v")
    assert catalog.find("gpt-4o-2024-11-20", "global", None, OCT_15) is dated
    assert catalog.find("gpt-4o-2024-08-06", "global", None, OCT_15) is base
    assert catalog.find("gpt-4o", "global", None, OCT_15) is base
    assert catalog.find("gpt-4o-mini-2024-07-18", "global", None, OCT_15) is mini
    # The dated row has no datazone price: the base model's datazone row applies.
    assert catalog.find("gpt-4o-2024-11-20", "datazone", None, OCT_15) is datazone
    assert catalog.find("gpt-4o-2024-11", "global", None, OCT_15) is None  # not a date suffix
    assert catalog.find("gpt-5", "global", None, OCT_15) is None


def test_base_model_strips_only_a_date_suffix() -> None:
    assert base_model("gpt-4o-2024-11-20") == "gpt-4o"
    assert base_model("o3-mini-2025-01-31") == "o3-mini"
    assert base_model("o3-mini") == "o3-mini"
    assert base_model("text-embedding-3-small") == "text-embedding-3-small"


def test_exact_region_beats_any_region() -> None:
    anywhere = price(region="*")
    sweden = price("gpt-4o", "2.00", "1.00", "8.00", region="swedencentral")
    catalog = PriceCatalog([anywhere, sweden], "v")
    assert catalog.find("gpt-4o", "global", "swedencentral", OCT_15) is sweden
    assert catalog.find("gpt-4o", "global", "Sweden Central", OCT_15) is sweden  # regions compare loosely
    assert catalog.find("gpt-4o", "global", "eastus", OCT_15) is anywhere
    assert catalog.find("gpt-4o", "global", None, OCT_15) is anywhere


def test_exact_region_only_row_does_not_price_other_regions() -> None:
    catalog = PriceCatalog([price(region="swedencentral")], "v")
    assert catalog.find("gpt-4o", "global", "eastus", OCT_15) is None
    assert catalog.find("gpt-4o", "global", None, OCT_15) is None


@pytest.mark.parametrize("wanted", ["global", "Global", " GLOBAL "])
def test_deployment_type_is_case_insensitive(wanted: str) -> None:
    row = price(deployment_type="Global")
    assert PriceCatalog([row], "v").find("gpt-4o", wanted, None, OCT_15) is row
    assert PriceCatalog([row], "v").find("gpt-4o", "datazone", None, OCT_15) is None


def test_overlapping_prices_are_refused_adjacent_ones_are_not() -> None:
    first = price(start=date(2026, 1, 1), end=date(2026, 6, 1))
    PriceCatalog([first, price(start=date(2026, 6, 1))], "v")
    PriceCatalog([first, price(start=date(2026, 5, 1), region="eastus")], "v")
    with pytest.raises(CatalogError, match="overlapping"):
        PriceCatalog([first, price(start=date(2026, 5, 31))], "v")
    with pytest.raises(CatalogError, match="overlapping"):
        PriceCatalog([price(start=date(2026, 1, 1)), price(start=date(2027, 1, 1))], "v")  # open-ended first
    with pytest.raises(CatalogError, match="overlapping"):
        PriceCatalog([price(region="West Europe"), price(region="westeurope")], "v")


def test_cost_of_a_trillion_tokens_is_exact() -> None:
    # 10**12 * 123.456789 / 1e6 = 123456789 exactly
    assert price(input_="123.456789").cost(10**12, 0, 0) == D("123456789")
    # (10**12 - 1) * 0.000001 / 1e6 = 999999.999999 / 1e6 = 0.999999999999
    assert price(output="0.000001").cost(0, 0, 10**12 - 1) == D("0.999999999999")
    # 10**12 prompt (half cached, both at 999999.999999) -> 10**12 * 999999.999999 = 999999999999000000;
    # 10**12 - 1 completion at 0.000003 -> 2999999.999997; sum / 1e6 = 999999999999 + 2.999999999997
    odd = price(input_="999999.999999", cached="999999.999999", output="0.000003")
    assert odd.cost(10**12, 5 * 10**11, 10**12 - 1) == D("1000000000001.999999999997")


def test_money_context_refuses_to_round() -> None:
    with pytest.raises(Inexact):
        MONEY.divide(D(1), D(3))


def test_money_sum_is_exact() -> None:
    assert money_sum([D("0.000000000001")] * 100_000) == D("0.0000001")
    assert money_sum([D("0.1")] * 3) == D("0.3")
    # 33 significant digits: the default 28-digit context would round this to 1E+20.
    assert money_sum([D("1E+20"), D("0.000000000001")]) == D("100000000000000000000.000000000001")
    assert money_sum([]) == 0


SUB_B = [CostCenterAssignment("sub-b", "CC-B1", date(2026, 1, 1), date(2026, 10, 20)),
         CostCenterAssignment("sub-b", "CC-B2", date(2026, 10, 20), None)]


def test_mapping_in_force_wins_over_the_caller() -> None:
    centers = CostCenterMap(SUB_B)
    assert centers.cost_center("sub-b", OCT_15, "CC-CALLER") == "CC-B1"
    assert centers.cost_center("sub-b", OCT_15, None) == "CC-B1"


def test_mapping_effective_to_is_exclusive() -> None:
    centers = CostCenterMap(SUB_B)
    assert centers.cost_center("sub-b", date(2026, 10, 19), None) == "CC-B1"
    assert centers.cost_center("sub-b", date(2026, 10, 20), None) == "CC-B2"


def test_caller_cost_center_applies_only_without_a_mapping() -> None:
    centers = CostCenterMap(SUB_B)
    assert centers.cost_center("sub-b", date(2025, 12, 31), " CC-CALLER ") == "CC-CALLER"
    assert centers.cost_center("sub-c", OCT_15, "CC-CALLER") == "CC-CALLER"


@pytest.mark.parametrize("sent", [None, "", "   "])
def test_unmapped_and_unsent_is_unassigned(sent: str | None) -> None:
    assert CostCenterMap(SUB_B).cost_center("sub-c", OCT_15, sent) == UNASSIGNED == "unassigned"
    assert CostCenterMap().cost_center("sub-b", OCT_15, sent) == UNASSIGNED


@pytest.mark.parametrize(("first_to", "second_from"), [(None, date(2026, 6, 1)), (date(2026, 6, 2), date(2026, 6, 1)),
                                                       (date(2026, 3, 1), date(2026, 1, 1))])
def test_overlapping_assignments_are_refused(first_to: date | None, second_from: date) -> None:
    with pytest.raises(CatalogError, match="sub-x"):
        CostCenterMap([CostCenterAssignment("sub-x", "CC-1", date(2026, 1, 1), first_to),
                       CostCenterAssignment("sub-x", "CC-2", second_from, None)])


def test_duplicate_deployment_is_refused() -> None:
    with pytest.raises(CatalogError, match="dep-a"):
        DeploymentMap([Deployment("dep-a", "gpt-4o", "global", None), Deployment("dep-a", "o3", "global", None)])


REFERENCE = Reference(
    catalog=PriceCatalog([price("m-alpha", "1.00", "0.50", "4.00", start=date(2026, 2, 1))], "v1"),
    deployments=DeploymentMap([Deployment("dep-alpha", "m-alpha", "global", None),
                               Deployment("dep-nomodel", None, "global", None),
                               Deployment("dep-noprice", "m-gamma", "global", None)]),
    cost_centers=CostCenterMap(SUB_B),
)


def key(deployment: str = "dep-alpha", model: str | None = None, state: UsageState = UsageState.MEASURED,
        day: date = OCT_15, subscription: str = "sub-b", sent: str | None = None) -> UsageKey:
    return UsageKey(day, subscription, sent, deployment, model, state)


@pytest.mark.parametrize(("usage_key", "reason"), [
    (key(state=UsageState.NONE), Unpriced.NO_USAGE),
    (key(state=UsageState.PENDING), Unpriced.USAGE_PENDING),
    (key(state=UsageState.EXPIRED), Unpriced.NO_USAGE),  # the LLM logs never brought its usage
    (key(deployment="dep-unknown"), Unpriced.UNKNOWN_DEPLOYMENT),
    (key(deployment="dep-unknown", state=UsageState.NONE), Unpriced.NO_USAGE),
    (key(deployment="dep-nomodel"), Unpriced.UNKNOWN_MODEL),
    (key(deployment="dep-noprice"), Unpriced.NO_PRICE),
    (key(day=date(2026, 1, 31)), Unpriced.NO_PRICE),
], ids=["no-usage", "usage-pending", "usage-expired", "unknown-deployment", "no-usage-first", "unknown-model",
        "no-price", "no-price-before-effective"])
def test_resolve_unpriced(usage_key: UsageKey, reason: Unpriced) -> None:
    resolution = REFERENCE.resolve(usage_key)
    assert (resolution.unpriced, resolution.price, resolution.priced) == (reason, None, False)
    assert resolution.detail
    assert resolution.cost_center == "CC-B1"
    line = CostLine(usage_key, resolution, 1, 1000, 0, 200, 0)
    assert line.cost is None  # never priced at zero


def test_resolve_priced() -> None:
    resolution = REFERENCE.resolve(key(sent="CC-CALLER"))
    assert resolution.priced
    assert resolution.unpriced is None
    assert (resolution.cost_center, resolution.model, resolution.deployment_type) == ("CC-B1", "m-alpha", "global")
    assert resolution.price is REFERENCE.catalog.prices[0]
    # (1000 - 100) * 1.00 + 100 * 0.50 + 200 * 4.00 = 900 + 50 + 800 = 1750 -> 0.00175
    assert CostLine(key(), resolution, 3, 1000, 100, 200, 50).cost == D("0.00175")


def test_resolve_uses_the_event_model_and_its_base_name() -> None:
    assert REFERENCE.resolve(key(deployment="dep-nomodel", model="m-alpha")).priced
    resolution = REFERENCE.resolve(key(deployment="dep-nomodel", model="m-alpha-2026-05-01"))
    assert resolution.model == "m-alpha-2026-05-01"
    assert resolution.price is REFERENCE.catalog.prices[0]


def test_resolve_unmapped_subscription_takes_the_caller_cost_center() -> None:
    assert REFERENCE.resolve(key(subscription="sub-c", sent="CC-CALLER")).cost_center == "CC-CALLER"
    assert REFERENCE.resolve(key(subscription="sub-c")).cost_center == UNASSIGNED
