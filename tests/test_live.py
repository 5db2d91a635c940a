"""Live spend: the integer micro-unit pricing on the ingest path equals exact Decimal pricing
rounded half-even, for any tokens and any catalog price."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.costing import Reference
from pipeline.domain.events import Usage, UsageEvent
from pipeline.domain.live import MICROS, LivePricer
from pipeline.domain.mappings import CostCenterMap, Deployment, DeploymentMap
from pipeline.domain.pricing import Price, PriceCatalog

prices = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)
tokens = st.integers(min_value=0, max_value=10**9)


def _pricer(rates: tuple[Decimal, Decimal, Decimal]) -> LivePricer:
    price = Price("m", "global", "*", date(2020, 1, 1), None, "USD", *rates)
    return LivePricer(Reference(PriceCatalog([price], "v"), DeploymentMap([Deployment("d", "m", "global", None)]),
                                CostCenterMap()))


def _event(prompt: int, cached: int, completion: int) -> UsageEvent:
    return UsageEvent(schema_version=1, event_id="e", timestamp=datetime(2026, 10, 1, tzinfo=UTC),
                      subscription_id="s", deployment="d", stream=False, status_code=200, duration_ms=1,
                      usage_source="response", usage=Usage(prompt, completion, prompt + completion, cached, 0))


@settings(max_examples=400, deadline=None)
@given(prices, prices, prices, tokens, tokens, tokens)
def test_integer_micros_equal_decimal_rounding(input_rate: Decimal, cached_rate: Decimal, output_rate: Decimal,
                                               prompt: int, cached_part: int, completion: int) -> None:
    cached = min(cached_part, prompt)
    price = Price("m", "global", "*", date(2020, 1, 1), None, "USD", input_rate, cached_rate, output_rate)
    exact = price.cost(prompt, cached, completion)
    expected = int((exact * MICROS).to_integral_value(rounding=ROUND_HALF_EVEN))
    charge = _pricer((input_rate, cached_rate, output_rate)).charge(_event(prompt, cached, completion))
    assert (charge.micros, charge.priced, charge.currency) == (expected, True, "USD")


def test_half_micro_rounds_to_even() -> None:
    # 1 token at 0.5 per 1M = 0.0000005 USD = 0.5 micro -> 0; 3 tokens -> 1.5 micro -> 2
    pricer = _pricer((Decimal("0.5"), Decimal("0.5"), Decimal("0.5")))
    assert pricer.charge(_event(1, 0, 0)).micros == 0
    assert pricer.charge(_event(3, 0, 0)).micros == 2
    assert pricer.charge(_event(5, 0, 0)).micros == 2  # 2.5 -> 2
