"""The pricing keys of the `costs` view: each distinct (day, subscription, cost center sent,
deployment, model sent, usage state) of the usage resolved in Python (pipeline.domain.costing,
with the corrections applied) into a small Arrow table that DuckDB joins. Money stays
DECIMAL(38,12): prices per token have at most 12 decimals, so no rounding."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import pyarrow as pa

from pipeline.domain.corrections import NO_CORRECTIONS, Corrections
from pipeline.domain.costing import Reference, UsageKey, UsageState
from pipeline.domain.pricing import MONEY, TOKENS_PER_UNIT

PER_TOKEN = pa.decimal128(38, 12)
PAY_AS_YOU_GO, PROVISIONED = "pay-as-you-go", "provisioned"  # `costs.pricing`
RESOLUTION_SCHEMA = pa.schema([
    ("date", pa.date32()), ("subscription_id", pa.string()), ("cost_center_sent", pa.string()),
    ("deployment", pa.string()), ("model_sent", pa.string()), ("state", pa.string()),
    ("billing_tier", pa.string()), ("spilled", pa.bool_()), ("audio_classes", pa.int32()),
    ("cost_center", pa.string()), ("model", pa.string()), ("deployment_type", pa.string()),
    ("currency", pa.string()), ("input_per_token", PER_TOKEN), ("cached_input_per_token", PER_TOKEN),
    ("output_per_token", PER_TOKEN), ("catalog_version", pa.string()), ("unpriced_reason", pa.string()),
    ("unpriced_detail", pa.string()), ("charge_class", pa.string()), ("pricing", pa.string()),
    ("audio_input_per_token", PER_TOKEN), ("audio_output_per_token", PER_TOKEN),
])


_STATES = {state.value: state for state in UsageState}  # a dict lookup: calling the enum costs more


KEY_WIDTH = 9  # the columns of pipeline.lake.views.KEY_COLUMNS


def usage_key(row: tuple[object, ...]) -> UsageKey:
    """The key of a KEY_COLUMNS row (date, subscription, cost center sent, deployment, model sent,
    usage state, billing tier, spilled, audio classes)."""
    day, subscription, cost_center, deployment, model, state, tier, spilled, audio = row
    return UsageKey(day, subscription, cost_center, deployment, model, _STATES[state],  # type: ignore[arg-type, index]
                    tier, spilled, audio)  # type: ignore[arg-type]


def resolution_table(reference: Reference, keys: Iterable[tuple[object, ...]],
                     corrections: Corrections | None = None) -> pa.Table:
    corrections = corrections or NO_CORRECTIONS
    rows = []
    for row in keys:
        key = usage_key(row)
        resolved = corrections.resolve(reference, key)
        price = resolved.price
        zero = Decimal(0) if resolved.provisioned else None
        rows.append({
            "date": key.day, "subscription_id": key.subscription_id, "cost_center_sent": key.cost_center_sent,
            "deployment": key.deployment, "model_sent": key.model, "state": key.state.value,
            "billing_tier": key.service_tier, "spilled": key.spillover, "audio_classes": key.audio,
            "cost_center": resolved.cost_center, "model": resolved.model,
            "deployment_type": resolved.deployment_type,
            "currency": resolved.currency or None,
            # provisioned (PTU) usage costs 0 per token: its capacity is in the `allocations` view
            "input_per_token": _per_token(price.input_per_1m) if price else zero,
            "cached_input_per_token": _per_token(price.cached_input_per_1m) if price else zero,
            "output_per_token": _per_token(price.output_per_1m) if price else zero,
            "catalog_version": resolved.catalog_version or None,
            "unpriced_reason": resolved.unpriced.value if resolved.unpriced else None,
            "unpriced_detail": resolved.detail or None,
            "charge_class": resolved.charge_class or None,
            "pricing": PROVISIONED if resolved.provisioned else PAY_AS_YOU_GO if price else None,
            "audio_input_per_token": _audio(price.audio_input_per_1m) if price else zero,
            "audio_output_per_token": _audio(price.audio_output_per_1m) if price else zero,
        })
    return pa.Table.from_pylist(rows, schema=RESOLUTION_SCHEMA)


def _audio(per_1m: Decimal | None) -> Decimal | None:
    return None if per_1m is None else _per_token(per_1m)


def _per_token(per_1m: Decimal) -> Decimal:
    return MONEY.divide(per_1m, TOKENS_PER_UNIT)
