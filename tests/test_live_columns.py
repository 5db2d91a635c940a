"""Live charges made in Arrow (pipeline.lake.live_columns) are the charges `LivePricer.charge`
gives each event: cost center, micro-units rounded half-even and whether it is priced, over
tiers, spillover, audio, PTU, unknown deployments, a mid-month price change and cost-center
move, streams without usage and errors; and the month `reconcile` expects is the Tally of the
events, with a chunk whose costs overflow 64 bits priced one event at a time."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.adapters.embedded.ledger import SqliteLedger
from pipeline.domain.costing import Reference
from pipeline.domain.counters import Tally
from pipeline.domain.decode import RawMessage, decode_batch
from pipeline.domain.events import Usage, UsageEvent
from pipeline.domain.live import LivePricer
from pipeline.domain.mappings import CostCenterMap, Deployment, DeploymentMap
from pipeline.domain.pricing import Price, PriceCatalog
from pipeline.inputs.reference import load_reference
from pipeline.lake.event_columns import event_columns
from pipeline.lake.live_columns import live_charges, priced_columns
from pipeline.lake.usage import events_table
from pipeline.stages.reconcile import ExpectedMonth, expected_month
from tests.factories import event, line

PRICES = """\
# source: test
# date: 2026-12-06
model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,cached_input_per_1m,output_per_1m,service_tier,audio_input_per_1m,audio_output_per_1m
m-chat,global,*,2026-01-01,2026-10-15,USD,2.00,0.50,8.00,,,
m-chat,global,*,2026-10-15,,USD,0.50,0.25,1.50,,,
m-chat,global,*,2026-01-01,,USD,1.00,0.25,4.00,flex,,
m-audio,global,*,2026-01-01,,USD,2.50,1.25,10.00,standard,40.00,80.00
m-odd,global,*,2026-01-01,,EUR,0.000003,0.000001,0.000007,,,
"""
DEPLOYMENTS = """\
deployment,model,deployment_type,region,spillover_deployment
dep-chat,m-chat,global,,
dep-ptu,m-chat,provisioned,,dep-chat
dep-ptu-bare,m-chat,provisioned,,
dep-audio,m-audio,global,,
dep-odd,m-odd,global,,
dep-none,m-unpriced,global,,
"""
COST_CENTERS = """\
subscription_id,cost_center,effective_from,effective_to
sub-a,CC-A,,
sub-b,CC-B,,2026-10-20
sub-b,CC-B2,2026-10-20,
"""


def reference(tmp_path: Path) -> Reference:
    files = {"prices": PRICES, "deployments": DEPLOYMENTS, "cost_centers": COST_CENTERS}
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text)
    return load_reference(tmp_path / "prices.csv", tmp_path / "deployments.csv", tmp_path / "cost_centers.csv")


def tokens(rng: random.Random) -> dict[str, int]:
    prompt, completion = rng.choice([0, 1, 3, 5, 999, 123_457]), rng.choice([0, 1, 7, 250_001])
    audio_prompt = rng.choice([0, 0, prompt // 3])
    cached = rng.choice([0, (prompt - audio_prompt) // 2])
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion,
            "cachedTokens": cached, "reasoningTokens": rng.choice([0, completion // 2]),
            "audioPromptTokens": audio_prompt, "audioCompletionTokens": rng.choice([0, completion // 4])}


def mixed_month(count: int, seed: int) -> list[dict[str, Any]]:
    """Events over October with every input the live key depends on, each value in many rows."""
    rng = random.Random(seed)
    bodies = []
    for n in range(count):
        moment = f"2026-10-{rng.randint(1, 31):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
        body = event(eventId=f"lc-{seed}-{n:05d}", timestamp=moment,
                     subscriptionId=rng.choice(["sub-a", "sub-b", "sub-c"]),
                     deployment=rng.choice(["dep-chat", "dep-ptu", "dep-ptu-bare", "dep-audio", "dep-odd", "dep-none",
                                            "dep-unknown"]),
                     model=rng.choice([None, None, "m-chat", "m-chat-2024-11-20", "m-audio"]),
                     costCenter=rng.choice([None, "CC-HEADER", ""]), usage=tokens(rng))
        if rng.random() < 0.4:
            body["serviceTier"] = rng.choice([None, "default", "flex", " Flex ", "priority", "auto"])
        if rng.random() < 0.3:
            body["spillover"] = rng.choice([None, True, False])
        kind = rng.random()
        if kind < 0.1:
            body.update(usage=None, usageSource="stream", stream=True)
        elif kind < 0.2:
            body.update(usage=None, usageSource="none", statusCode=rng.choice([429, 500]),
                        tags=rng.choice([None, {"chargebackError": "gateway-timeout"}]))
        bodies.append(body)
    return bodies


def decoded(bodies: list[dict[str, Any]]) -> list[UsageEvent]:
    batch = decode_batch([RawMessage(line(body), "test", str(n)) for n, body in enumerate(bodies, 1)])
    assert not batch.rejections, batch.rejections[:3]
    return batch.events


def as_rows(charges: Any) -> list[tuple[str, int, bool]]:
    return list(zip(*(charges.column(name).to_pylist() for name in ("cost_center", "micros", "priced")), strict=True))


def test_charges_made_in_arrow_are_the_pricers_charges(tmp_path: Path) -> None:
    events = decoded(mixed_month(3_000, seed=5))
    expected = [(c.cost_center, c.micros, c.priced) for c in LivePricer(reference(tmp_path)).charges(events)]
    charges = live_charges(events_table(events, datetime(2026, 11, 1, tzinfo=UTC)), LivePricer(reference(tmp_path)))
    assert charges is not None
    assert as_rows(charges) == expected
    # The month had what it was made to have: both cost centers of sub-b, the header's, none,
    # unpriced keys, priced ones that cost nothing (PTU, no tokens) and costs.
    centers = {center for center, _, _ in expected}
    assert {"CC-A", "CC-B", "CC-B2", "CC-HEADER", "unassigned"} <= centers, centers
    assert sum(1 for _, micros, priced in expected if not priced) > 100
    assert sum(1 for _, micros, priced in expected if priced and micros == 0) > 100  # PTU, no usage, no tokens
    assert sum(1 for _, micros, _ in expected if micros > 0) > 500


def test_a_key_is_charged_alike_on_every_day_of_its_reference_period(tmp_path: Path) -> None:
    """The pricer keeps a charge per reference period, not per day: each event's charge equals
    the one a pricer that never saw another event gives it (a fresh Reference, no memo)."""
    events = decoded(mixed_month(1_500, seed=23))
    loaded = reference(tmp_path)
    october = [loaded.period_of(date(2026, 10, day)) for day in range(1, 32)]
    first = october[0]  # the price change on the 15th and sub-b's move on the 20th start periods
    assert october == [first] * 14 + [first + 1] * 5 + [first + 2] * 12
    kept = LivePricer(loaded).charges(events)
    alone = [LivePricer(Reference(loaded.catalog, loaded.deployments, loaded.cost_centers)).charge(event)
             for event in events]
    assert kept == alone
    assert {c.cost_center for e, c in zip(events, kept, strict=True) if e.subscription_id == "sub-b"} >= {
        "CC-B", "CC-B2"}


def test_a_batch_priced_in_arrow_is_the_batch_priced_event_by_event(tmp_path: Path) -> None:
    """What a worker hands the embedded ledger and counters: the same rows, charges, ids and
    count of copies as the columns of the events and their charges (copies of an eventId in the
    batch included, whose first copy counts; and a batch past 64 bits, priced one at a time)."""
    events = decoded(mixed_month(2_000, seed=11))
    events += [events[5], events[17], events[5]]  # copies: the first copy wins
    huge = [_event(0, 10**12, 0, 10**12), _event(1, 5, 1, 7)]
    dear = _pricer((Decimal(1000), Decimal(1000), Decimal(1000)))
    assert live_charges(events_table(huge, datetime(2026, 11, 1, tzinfo=UTC)), dear) is None
    for batch, pricer in ((events, LivePricer(reference(tmp_path))), (huge, dear), ([], dear)):
        made, oracle = priced_columns(batch, pricer), event_columns(batch, pricer.charges(batch))
        assert made.events.equals(oracle.events) and as_rows(made.charges) == as_rows(oracle.charges)
        assert (made.sorted_ids, made.copies, made.rows) == (oracle.sorted_ids, oracle.copies, oracle.rows)
    assert priced_columns(events, LivePricer(reference(tmp_path))).rows == len(events) - 3


def test_an_empty_table_has_no_charges(tmp_path: Path) -> None:
    charges = live_charges(events_table([], datetime(2026, 11, 1, tzinfo=UTC)), LivePricer(reference(tmp_path)))
    assert charges is not None and charges.num_rows == 0


def _pricer(rates: tuple[Decimal, Decimal, Decimal]) -> LivePricer:
    price = Price("m", "global", "*", date(2020, 1, 1), None, "USD", *rates)
    return LivePricer(Reference(PriceCatalog([price], "v"), DeploymentMap([Deployment("d", "m", "global", None)]),
                                CostCenterMap()))


def _event(n: int, prompt: int, cached: int, completion: int) -> UsageEvent:
    return UsageEvent(schema_version=1, event_id=f"e-{n}", timestamp=datetime(2026, 10, 1, n % 24, tzinfo=UTC),
                      subscription_id="s", deployment="d", stream=False, status_code=200, duration_ms=1,
                      usage_source="response", usage=Usage(prompt, completion, prompt + completion, cached, 0))


prices = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)
token_triples = st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9)),
                         min_size=1, max_size=20)


@settings(max_examples=150, deadline=None)
@given(prices, prices, prices, token_triples)
def test_micros_made_in_arrow_round_half_even_as_the_pricer(input_rate: Decimal, cached_rate: Decimal,
                                                            output_rate: Decimal,
                                                            triples: list[tuple[int, int, int]]) -> None:
    events = [_event(n, prompt, min(cached, prompt), completion)
              for n, (prompt, cached, completion) in enumerate(triples)]
    rates = (input_rate, cached_rate, output_rate)
    expected = [(c.cost_center, c.micros, c.priced) for c in _pricer(rates).charges(events)]
    charges = live_charges(events_table(events, datetime(2026, 11, 1, tzinfo=UTC)), _pricer(rates))
    assert charges is not None and as_rows(charges) == expected


def test_costs_past_64_bits_are_left_to_the_pricer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = [_event(0, 10**12, 0, 10**12)]  # 10^12 tokens x 1,000 USD per 1M: 10^21 units of 10^-12
    pricer = _pricer((Decimal(1000), Decimal(1000), Decimal(1000)))
    assert live_charges(events_table(huge, datetime(2026, 11, 1, tzinfo=UTC)), pricer) is None
    # reconcile's expected month: the chunk holding it is priced one event at a time, exactly,
    # and added to the sums the other chunks made in Arrow (chunks of 10 rows here).
    monkeypatch.setattr("pipeline.stages.reconcile.CHUNK_ROWS", 10)
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    events = [*huge, *(_event(n, 1_000 + n, n, 10 * n) for n in range(1, 40))]
    ledger.append(events)
    expected = expected_month(ledger, pricer, "2026-10")
    oracle = Tally()
    oracle.add(zip(events, pricer.charges(events), strict=True))
    assert expected.events == 40 and expected.apart.monthly and expected.sums is not None  # both ways
    assert as_tally(expected) == as_tally(oracle)
    assert expected.monthly()["s"][6] == oracle.monthly[("s", "2026-10")][6] > 2 * 10**15


def as_tally(month: ExpectedMonth | Tally) -> tuple[dict[Any, list[int]], dict[str, list[int]], dict[str, int]]:
    """The hourly, monthly and cost-center sums of a month, either way they were made."""
    if isinstance(month, Tally):
        return (dict(month.hourly), {sub: sums for (sub, _), sums in month.monthly.items()},
                {center: sums[1] for (center, _), sums in month.cost_centers.items()})
    subscriptions = set(month.monthly())
    return ({key: sums for sub in subscriptions for key, sums in month.hours(sub).items()}, month.monthly(),
            month.centers())


def test_the_month_reconcile_expects_is_the_tally_of_its_events(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    bodies = mixed_month(2_500, seed=11)
    bodies += [event(eventId="lc-september", timestamp="2026-09-30T23:59:59Z"),
               event(eventId="lc-november", timestamp="2026-11-01T00:00:00Z")]  # outside the month
    events = decoded(bodies)
    for start in range(0, len(events), 700):
        ledger.append(events[start:start + 700])
    october = [e for e in events if e.timestamp.month == 10]
    pricer = LivePricer(reference(tmp_path))
    oracle = Tally()
    oracle.add(zip(october, LivePricer(reference(tmp_path)).charges(october), strict=True))
    expected = expected_month(ledger, pricer, "2026-10")
    assert expected.events == len(october) == 2_500
    hourly, monthly, centers = as_tally(expected)
    assert hourly == dict(oracle.hourly) and len(hourly) > 1_000
    assert monthly == as_tally(oracle)[1] and centers == as_tally(oracle)[2]
    assert expected.hours("sub-nobody") == {}
