"""The pricing keys of the `costs` view: each distinct (day, subscription, cost center sent,
deployment, model sent, usage state) of the usage resolved in Python (pipeline.domain.costing,
with the corrections applied) into a small Arrow table that DuckDB joins. Money stays
DECIMAL(38,12): prices per token have at most 12 decimals, so no rounding."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import pyarrow as pa

from pipeline.domain.corrections import NO_CORRECTIONS, Corrections
from pipeline.domain.costing import Reference, Resolution, UsageKey, UsageState
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


_KEY_NAMES = RESOLUTION_SCHEMA.names[:KEY_WIDTH]  # the key's columns, as the keys' rows hold them
_RESOLVED_NAMES = RESOLUTION_SCHEMA.names[KEY_WIDTH:]


def resolution_table(reference: Reference, keys: Iterable[tuple[object, ...]],
                     corrections: Corrections | None = None) -> pa.Table:
    """Each key row (KEY_COLUMNS) with its resolution's columns. A resolution is shared by the
    keys it covers (the day aside, mostly), so its columns are made once per resolution."""
    corrections = corrections or NO_CORRECTIONS
    rows = list(keys)
    made: dict[int, tuple[Resolution, tuple[object, ...]]] = {}
    resolved_rows = []
    for row in rows:
        resolved = corrections.resolve(reference, usage_key(row))
        cells = made.get(id(resolved))
        if cells is None:
            made[id(resolved)] = cells = (resolved, _resolved_cells(resolved))  # holds it: its id stays its
        resolved_rows.append(cells[1])
    columns = [*(zip(*rows, strict=True) if rows else [()] * KEY_WIDTH),
               *(zip(*resolved_rows, strict=True) if resolved_rows else [()] * len(_RESOLVED_NAMES))]
    return pa.Table.from_arrays([pa.array(list(column), field.type) for column, field in
                                 zip(columns, RESOLUTION_SCHEMA, strict=True)], schema=RESOLUTION_SCHEMA)


def _resolved_cells(resolved: Resolution) -> tuple[object, ...]:
    """The resolution's columns of RESOLUTION_SCHEMA (after the key's), in its order."""
    price = resolved.price
    zero = Decimal(0) if resolved.provisioned else None
    return (
        resolved.cost_center, resolved.model, resolved.deployment_type, resolved.currency or None,
        # provisioned (PTU) usage costs 0 per token: its capacity is in the `allocations` view
        _per_token(price.input_per_1m) if price else zero,
        _per_token(price.cached_input_per_1m) if price else zero,
        _per_token(price.output_per_1m) if price else zero,
        resolved.catalog_version or None,
        resolved.unpriced.value if resolved.unpriced else None,
        resolved.detail or None,
        resolved.charge_class or None,
        PROVISIONED if resolved.provisioned else PAY_AS_YOU_GO if price else None,
        _audio(price.audio_input_per_1m) if price else zero,
        _audio(price.audio_output_per_1m) if price else zero,
    )


def _audio(per_1m: Decimal | None) -> Decimal | None:
    return None if per_1m is None else _per_token(per_1m)


def _per_token(per_1m: Decimal) -> Decimal:
    return MONEY.divide(per_1m, TOKENS_PER_UNIT)
