"""Provisioned throughput (PTU): the capacity and weights files, exact largest-remainder splits
(property-based), and the hand-checked month of tests.finance_world through the CLI: report
lines with pay-as-you-go and PTU cost side by side, idle capacity to its owner or spread, the
`allocations` and `costs` views."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.capacity import (
    IDLE,
    USAGE,
    Capacity,
    CapacityPlan,
    Consumer,
    PtuWeight,
    PtuWeights,
    Usage,
    allocate_day,
    split_exact,
)
from pipeline.domain.currencies import minor_unit
from pipeline.domain.mappings import is_provisioned_type
from pipeline.domain.pricing import CatalogError
from pipeline.inputs.capacity import load_capacity, load_ptu_weights, shipped_weights_path
from tests.conftest import WriteFile
from tests.finance_world import (
    MONTH,
    OWNER_ALLOCATIONS,
    PAYG,
    PTU,
    SPREAD_ALLOCATIONS,
    TOTAL,
    World,
    build_world,
)

DAY = date(2026, 10, 1)
MIDNIGHT = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def world(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return build_world(home, write_file, monkeypatch, tmp_path)


@pytest.fixture
def spread_world(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return build_world(home, write_file, monkeypatch, tmp_path, idle_owner=None)


# ------------------------------------------------------------------ exact splits


def test_split_exact_largest_remainder() -> None:
    cent = Decimal("0.01")
    assert split_exact(Decimal("1.00"), [Decimal(1)] * 3, cent) == [Decimal("0.34"), Decimal("0.33"), Decimal("0.33")]
    # quotas 0.6667, 0.3333 (of 1.00 over 2:1): the larger remainder gets the last cent
    assert split_exact(Decimal("1.00"), [Decimal(2), Decimal(1)], cent) == [Decimal("0.67"), Decimal("0.33")]
    assert split_exact(Decimal("0.05"), [Decimal(0), Decimal(7)], cent) == [Decimal(0), Decimal("0.05")]
    assert split_exact(Decimal(100), [Decimal(1), Decimal(2)], minor_unit("JPY")) == [Decimal(33), Decimal(67)]
    assert split_exact(Decimal("1.000"), [Decimal(1)] * 3, minor_unit("KWD")) == [
        Decimal("0.334"), Decimal("0.333"), Decimal("0.333")]
    with pytest.raises(ValueError, match="whole"):
        split_exact(Decimal("1.005"), [Decimal(1)], cent)
    with pytest.raises(ValueError, match="not all zero"):
        split_exact(Decimal(1), [Decimal(0)], cent)


@settings(max_examples=300, deadline=None)
@given(
    cents=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False),
                     min_size=1, max_size=30).filter(lambda ws: any(ws)),
    currency=st.sampled_from(["USD", "EUR", "JPY", "KWD", "CLF"]),
)
def test_split_exact_adds_up_exactly_and_each_part_is_within_one_unit(cents: int, weights: list[Decimal],
                                                                      currency: str) -> None:
    unit = minor_unit(currency)
    total = unit * cents
    parts = split_exact(total, weights, unit)
    assert sum(parts, Decimal(0)) == total
    weight_sum = sum(weights, Decimal(0))
    for part, weight in zip(parts, weights, strict=True):
        assert part % unit == 0 and part >= 0
        exact_share = total * weight / weight_sum
        assert abs(part - exact_share) < unit


@settings(max_examples=200, deadline=None)
@given(
    ptu=st.integers(min_value=1, max_value=500),
    price=st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False),
    start_hour=st.integers(min_value=0, max_value=23),
    usages=st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7)), max_size=8),
    throughput=st.one_of(st.none(), st.integers(min_value=1, max_value=50_000)),
    owner=st.one_of(st.none(), st.just("CC-OWNER")),
    currency=st.sampled_from(["USD", "JPY", "BHD"]),
)
def test_allocations_add_up_exactly_to_the_capacity_cost(ptu: int, price: Decimal, start_hour: int,
                                                         usages: list[tuple[int, int, int]], throughput: int | None,
                                                         owner: str | None, currency: str) -> None:
    row = Capacity("dep", ptu, price, currency, MIDNIGHT.replace(hour=start_hour), None)
    plan = CapacityPlan([row], PtuWeights([PtuWeight("m", input_tpm_per_ptu=throughput)]), idle_owner=owner)
    usage = {}
    for index, (prompt, cached, completion) in enumerate(usages):
        cached = min(cached, prompt)
        weighted = plan.weights.for_model("m").weighted(prompt, cached, completion)
        usage[Consumer(f"CC-{index}", f"sub-{index}", "m", "provisioned")] = Usage(1, prompt, cached, completion,
                                                                                   weighted)
    day = allocate_day(DAY, "dep", [row], usage, plan, "m", "provisioned")
    hours = 24 - start_hour
    assert day.ptu_hours == ptu * hours
    assert day.exact_cost == ptu * hours * price
    assert day.cost == day.exact_cost.quantize(minor_unit(currency))  # half-even at the minor unit
    assert sum((a.amount for a in day.allocations), Decimal(0)) == day.cost
    assert all(a.amount >= 0 and a.amount % minor_unit(currency) == 0 for a in day.allocations)
    used = sum((u.weighted for u in usage.values()), Decimal(0))
    idle = [a for a in day.allocations if a.kind == IDLE]
    if used == 0:
        assert [a.consumer.cost_center for a in idle] == [owner or "unassigned"]
        assert idle[0].amount == day.cost
    elif owner is None or throughput is None or day.capacity is None or day.capacity <= used:
        assert idle == []  # spread: the users' amounts cover the whole day
    else:
        assert [a.consumer.cost_center for a in idle] == [owner]
        exact_idle = day.cost * (day.capacity - used) / day.capacity
        assert abs(idle[0].amount - exact_idle) < minor_unit(currency)


def test_allocation_follows_the_weights_output_counts_four_times() -> None:
    row = Capacity("dep", 1, Decimal("1.00"), "USD", MIDNIGHT, None)  # 24.00 a day
    plan = CapacityPlan([row], PtuWeights())  # default weights 1 / 0 / 4, throughput unknown: spread
    usage = {
        Consumer("CC-IN", "s1", "m", "provisioned"): Usage(1, 4000, 0, 0, Decimal(4000)),
        Consumer("CC-OUT", "s2", "m", "provisioned"): Usage(1, 0, 0, 1000, Decimal(4000)),
        Consumer("CC-CACHED", "s3", "m", "provisioned"): Usage(1, 8000, 8000, 0, Decimal(0)),
    }
    day = allocate_day(DAY, "dep", [row], usage, plan, "m", "provisioned")
    assert {a.consumer.cost_center: a.amount for a in day.allocations} == {
        "CC-CACHED": Decimal(0), "CC-IN": Decimal("12.00"), "CC-OUT": Decimal("12.00")}
    assert {a.kind for a in day.allocations} == {USAGE}
    assert day.utilization is None


def test_capacity_hours_on_partial_days() -> None:
    row = Capacity("dep", 3, Decimal("2"), "USD", datetime(2026, 10, 1, 20, tzinfo=UTC),
                   datetime(2026, 10, 3, 6, tzinfo=UTC))
    assert [row.hours_on(date(2026, 10, d)) for d in (1, 2, 3, 4)] == [4, 24, 6, 0]
    plan = CapacityPlan([row])
    assert [(day, dep) for day, dep, _ in plan.days(date(2026, 9, 1), date(2026, 11, 1))] == [
        (date(2026, 10, 1), "dep"), (date(2026, 10, 2), "dep"), (date(2026, 10, 3), "dep")]
    assert row.cost_on(date(2026, 10, 3)) == Decimal(36)


@pytest.mark.parametrize("name", ["provisioned", "ProvisionedManaged", "GlobalProvisionedManaged",
                                  "datazone-provisioned"])
def test_provisioned_deployment_types(name: str) -> None:
    assert is_provisioned_type(name)
    assert not is_provisioned_type("global") and not is_provisioned_type("batch")


# ------------------------------------------------------------------ files


def test_shipped_weights_name_their_source_and_count_output_four_times_for_gpt_41() -> None:
    path = shipped_weights_path()
    text = path.read_text(encoding="utf-8")
    assert "# source:" in text and "# date:" in text
    weights = load_ptu_weights(path)
    gpt41 = weights.for_model("gpt-4.1-2025-04-14")
    assert (gpt41.input, gpt41.cached_input, gpt41.output) == (Decimal(1), Decimal(0), Decimal(4))
    assert gpt41.input_tpm_per_ptu == 3000
    assert weights.for_model("some-new-model").model == "*"


# (file text, words the error must contain)
BAD_CAPACITY = [
    ("dep,0,1.00,USD,2026-10-01,", "whole number of PTUs"),
    ("dep,2.5,1.00,USD,2026-10-01,", "whole number of PTUs"),
    ("dep,1,-1,USD,2026-10-01,", "price_per_ptu_hour"),
    ("dep,1,1,XYZ,2026-10-01,", "unknown"),
    ("dep,1,1,USD,2026-10-01T08:30:00Z,", "whole hour"),
    ("dep,1,1,USD,2026-10-01T08:00:00,", "UTC offset"),
    ("dep,1,1,USD,2026-10-02,2026-10-01", "not after"),
    ("dep,1,1,USD,2026-10-01,\ndep,1,1,USD,2026-10-05,", "overlapping"),
    ("dep,1,1,USD,2026-10-01,2026-10-05\ndep,1,1,EUR,2026-10-05,", "several currencies"),
]


@pytest.mark.parametrize(("rows", "words"), BAD_CAPACITY)
def test_bad_capacity_files_are_refused_with_the_line(write_file: WriteFile, rows: str, words: str) -> None:
    path = write_file("capacity.csv", "deployment,ptu,price_per_ptu_hour,currency,effective_from,effective_to\n"
                      + rows + "\n")
    with pytest.raises(CatalogError, match=words) as raised:
        load_capacity(path)
    assert f"{path}:2" in str(raised.value) or f"{path}:3" in str(raised.value)


def test_capacity_rows_may_start_on_the_hour_and_name_an_idle_owner(write_file: WriteFile) -> None:
    path = write_file("capacity.csv", "deployment,ptu,price_per_ptu_hour,currency,effective_from,effective_to,"
                      "idle_owner\ndep,15,1.10,USD,2026-10-01T08:00:00+02:00,,CC-PLATFORM\n")
    plan = load_capacity(path)
    [row] = plan.rows
    assert row.start == datetime(2026, 10, 1, 6, tzinfo=UTC)
    assert row.idle_owner == "CC-PLATFORM" and row.end is None
    assert row.hours_on(date(2026, 10, 1)) == 18
    assert plan.weights.for_model("gpt-4.1").output == 4  # the shipped weights by default


# ------------------------------------------------------------------ the hand-checked month


def allocations(world: World) -> dict[tuple[str, str, str], Decimal]:
    rows = world.query("SELECT date, cost_center, kind, amount FROM allocations ORDER BY ALL")
    return {(r["date"], r["cost_center"], r["kind"]): Decimal(r["amount"]) for r in rows}


def test_ptu_allocation_with_idle_capacity_charged_to_its_owner(world: World) -> None:
    output = world.report("csv", "parquet")
    assert allocations(world) == OWNER_ALLOCATIONS
    rows = {(r["cost_center"], r["subscription_id"], r["model"], r["deployment_type"], r["currency"]):
            (r["requests"], r["cost"], r["ptu_cost"], r["total_cost"]) for r in world.rows()}
    assert rows == {
        ("CC-A", "sub-a", "m-alpha", "global", "USD"): ("1", "1", "", "1"),
        ("CC-A", "sub-a", "m-alpha", "global", ""): ("1", "", "", ""),  # the 429: no usage, unpriced
        ("CC-A", "sub-a", "m-ptu", "provisioned", "USD"): ("1", "0", "6.5", "6.5"),
        ("CC-A", "sub-a", "m-ptu", "provisioned", ""): ("1", "", "", ""),  # 2026-10-05: no capacity row
        ("CC-B1", "sub-b", "m-ptu", "provisioned", "USD"): ("1", "0", "17.5", "17.5"),
        ("CC-B2", "sub-b", "m-beta", "datazone", "USD"): ("1", "0.6", "", "0.6"),
        ("CC-OWNER", "", "m-ptu", "provisioned", "USD"): ("0", "", "120", "120"),
    }
    unpriced = world.rows(f"chargeback-{MONTH}-unpriced.csv")
    assert {(r["reason"], r["deployment"], r["deployment_type"]) for r in unpriced} == {
        ("no-capacity", "dep-ptu", "provisioned"), ("no-usage", "dep-alpha", "global")}
    assert "Total 145.60 USD" in " ".join(output.output.split())
    assert "of which pay-as-you-go 1.60 USD, provisioned (PTU) capacity 144.00 USD" in " ".join(output.output.split())
    table = pq.read_table(world.out / f"chargeback-{MONTH}.parquet").to_pylist()
    assert sum((r["total_cost"] for r in table if r["total_cost"] is not None), Decimal(0)) == TOTAL
    assert sum((r["ptu_cost"] for r in table if r["ptu_cost"] is not None), Decimal(0)) == PTU


def test_ptu_idle_capacity_spread_over_the_users(spread_world: World) -> None:
    spread_world.report("csv")
    assert allocations(spread_world) == SPREAD_ALLOCATIONS
    totals: dict[str, Decimal] = {}
    for row in spread_world.rows():
        if row["total_cost"]:
            totals[row["cost_center"]] = totals.get(row["cost_center"], Decimal(0)) + Decimal(row["total_cost"])
    assert totals == {"CC-A": Decimal("20.50"), "CC-B1": Decimal("52.50"), "CC-B2": Decimal("0.6"),
                      "unassigned": Decimal("72.00")}
    assert sum(totals.values()) == TOTAL


def test_costs_view_prices_provisioned_usage_at_zero_and_allocations_hold_the_capacity(world: World) -> None:
    [row] = world.query("SELECT sum(cost) AS payg FROM costs WHERE month = '2026-10'")
    assert Decimal(row["payg"]) == PAYG
    provisioned = world.query("SELECT event_id, cost, pricing, currency, unpriced_reason FROM costs "
                              "WHERE deployment = 'dep-ptu' ORDER BY event_id")
    assert [(r["event_id"], r["pricing"], r["unpriced_reason"]) for r in provisioned] == [
        ("e-ptu-a", "provisioned", ""), ("e-ptu-b", "provisioned", ""), ("e-ptu-late", "", "no-capacity")]
    assert [Decimal(r["cost"]) for r in provisioned[:2]] == [0, 0]
    [day] = world.query("SELECT capacity_cost, utilization, idle_to, sum(amount) AS allocated, "
                        "sum(weighted_tokens) AS used FROM allocations WHERE date = '2026-10-01' GROUP BY ALL")
    assert (Decimal(day["capacity_cost"]), Decimal(day["allocated"]), day["idle_to"]) == (
        Decimal(72), Decimal(72), "CC-OWNER")
    assert Decimal(day["used"]) == 96_000 and float(day["utilization"]) == pytest.approx(96_000 / 288_000)
    [both] = world.query("SELECT (SELECT sum(cost) FROM costs WHERE month = '2026-10') "
                         "+ (SELECT sum(amount) FROM allocations WHERE month = '2026-10') AS total")
    assert Decimal(both["total"]) == TOTAL


def test_a_reassign_moves_the_ptu_allocation_and_marks_it(world: World, write_file: WriteFile) -> None:
    from tests.finance_world import run

    recorded = run("correct", "--by", "tester", str(write_file(
        "reassign.yaml", "- {kind: reassign, subscription_id: sub-b, cost_center: CC-X, from: 2026-10-01, "
        "to: 2026-10-02, reason: r}\n")))
    assert recorded.exit_code == 0, recorded.output
    world.report("csv")
    marked = [(r["cost_center"], r["model"], r["ptu_cost"], r["charge_class"]) for r in world.rows()
              if r["ptu_cost"]]
    assert ("CC-X", "m-ptu", "17.5", "Correction") in marked
    assert not [m for m in marked if m[0] == "CC-B1"]
    rows = world.query("SELECT cost_center, charge_class, corrections FROM allocations WHERE cost_center = 'CC-X'")
    assert [(r["charge_class"], bool(r["corrections"])) for r in rows] == [("Correction", True)]


def test_a_changed_capacity_price_restates_the_closed_month_with_ptu_totals(world: World,
                                                                          write_file: WriteFile) -> None:
    world.report("csv")
    assert not (world.out / f"chargeback-{MONTH}-restatement.csv").exists()
    write_file("capacity.csv", "deployment,ptu,price_per_ptu_hour,currency,effective_from,effective_to\n"
               "dep-ptu,2,3.00,USD,2026-10-01,2026-10-03\n")  # the same file the environment names
    output = world.report("csv")
    assert "restated 2026-10" in output.output
    lines = (world.out / f"chargeback-{MONTH}-restatement.csv").read_text().splitlines()
    # 144.00 a day now: CC-A 1 + 13.00, CC-B1 35.00, CC-OWNER 96.00 + 144.00; CC-B2 unchanged
    assert lines[1:] == ["2026-10,CC-A,USD,7.5,14,6.5,", "2026-10,CC-B1,USD,17.5,35,17.5,",
                         "2026-10,CC-OWNER,USD,120,240,120,"]
