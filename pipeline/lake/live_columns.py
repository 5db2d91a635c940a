"""Live charges of ledger rows as Arrow columns: for every row of a USAGE_SCHEMA table, the
charge `LivePricer.charge` gives its event, with one Python call per pricing key instead of one
per event (issue 19: `chargeback reconcile` recounted a month one event object at a time).

The rows' pricing keys (the live pricer's: the day's reference period, subscription, cost center
and model as sent, deployment, usage state, service tier as sent, spilled, audio classes) are
numbered in Arrow; each distinct key is resolved once by the pricer, and the integer rates it
gives are taken back to the rows. A row's cost is the pricer's exact integer arithmetic in
units of 10^-12, rounded half-even to micro-units, in 64-bit integers with overflow checked:
where a product would not fit (tokens near the schema's 10^12 at a high price), `live_charges`
says so and the caller prices those rows one event at a time. tests/test_live_columns.py holds
the two equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.domain.costing import AUDIO_COMPLETION, AUDIO_PROMPT, Reference, UsageState
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import PICO_PER_MICRO, LiveKey, LivePricer
from pipeline.lake.event_columns import CHARGES_SCHEMA, EventColumns, charges_batch, columns_priced_by

_STATES = (UsageState.MEASURED.value, UsageState.PENDING.value, UsageState.NONE.value)  # the state column's 0, 1, 2


def live_charges(table: pa.Table, pricer: LivePricer) -> pa.RecordBatch | None:
    """CHARGES_SCHEMA rows, row for row of `table`; None when a cost does not fit in 64 bits."""
    rows = table.num_rows
    if rows == 0:
        return pa.RecordBatch.from_pylist([], schema=CHARGES_SCHEMA)
    measured = pc.is_valid(table.column("prompt_tokens"))
    state = pc.if_else(measured, 0, pc.if_else(pc.equal(pc.fill_null(table.column("usage_source"), ""), "stream"),
                                               1, 2)).cast(pa.int8())
    audio_prompt = pc.fill_null(table.column("audio_prompt_tokens"), 0)
    audio_completion = pc.fill_null(table.column("audio_completion_tokens"), 0)
    audio = pc.add(pc.multiply(pc.greater(audio_prompt, 0).cast(pa.int8()), AUDIO_PROMPT),
                   pc.multiply(pc.greater(audio_completion, 0).cast(pa.int8()), AUDIO_COMPLETION))
    days = pc.cast(table.column("timestamp"), pa.date32())  # UTC timestamps: the UTC day
    keys = [_periods(days, pricer.reference), table.column("subscription_id"),
            table.column("cost_center"), table.column("deployment"), table.column("model"), state,
            table.column("service_tier"), pc.fill_null(table.column("spillover"), False), audio]
    number, first = _numbered(keys)
    charged = [pricer.charging(day, _live_key(values)) for day, *values in zip(
        pc.take(days, first).to_pylist(), *(pc.take(column, first).to_pylist() for column in keys), strict=True)]
    cost_center = pa.array([fixed.cost_center for fixed, _ in charged], pa.string()).take(number)
    priced = pa.array([fixed.priced for fixed, _ in charged], pa.bool_()).take(number)
    rates = [pa.array([0 if rate is None else rate[at] for _, rate in charged], pa.int64()).take(number)
             for at in range(5)]
    micros = _micros(table, rates, audio_prompt, audio_completion)
    if micros is None:
        return None
    return pa.RecordBatch.from_arrays([cost_center, micros, priced], schema=CHARGES_SCHEMA)


def priced_columns(events: Sequence[UsageEvent], pricer: LivePricer,
                   first: dict[str, int] | None = None) -> EventColumns:
    """`event_columns(events, pricer.charges(events))`, the charges made from the rows in Arrow:
    what a batch decoded ahead is handed to the embedded ledger and counters as (0.8-0.9 against
    1.6-1.8 µs an event for the charges, and their column not made from objects); a batch whose
    costs pass 64 bits is priced one event at a time. `first`: the events' `first_copies`, when
    the caller has them already."""

    def price(rows: pa.RecordBatch, kept: Sequence[UsageEvent]) -> pa.RecordBatch:
        charges = live_charges(pa.Table.from_batches([rows]), pricer)
        return charges if charges is not None else charges_batch(pricer.charges(kept))

    return columns_priced_by(events, price, first)


def _live_key(values: list[Any]) -> LiveKey:
    """The pricer's key of a row's key values (the state as its number in the state column)."""
    period, subscription_id, cost_center, deployment, model, state, tier, spilled, audio = values
    return period, subscription_id, cost_center, deployment, model, _STATES[state], tier, spilled, audio


def _periods(days: pa.Array | pa.ChunkedArray, reference: Reference) -> pa.Array:
    """Each day's reference period (`Reference.period_of`, once per distinct day: a chunk spans few)."""
    distinct = pc.unique(days)
    periods = pa.array([reference.period_of(day) for day in distinct.to_pylist()], pa.int32())
    return periods.take(pc.index_in(days, value_set=distinct))


def _numbered(columns: list[pa.Array | pa.ChunkedArray]) -> tuple[pa.Array, pa.Array]:
    """Each row's key (the values of `columns` in that row, null a value of its own) as a number
    0..K-1 in order of first appearance, and the first row of each number."""
    number: pa.Array | None = None
    for column in columns:
        encoded = pc.dictionary_encode(_array(column))
        width = len(encoded.dictionary) + 1
        indices = pc.fill_null(encoded.indices.cast(pa.int64()), width - 1)  # null: a value of its own
        combined = indices if number is None else pc.add(pc.multiply(number, width), indices)
        # Renumbered after each column, so the combined number stays below rows x width.
        number = pc.dictionary_encode(combined).indices.cast(pa.int64())
    assert number is not None
    positions = pa.table({"number": number, "row": pa.array(range(len(number)), pa.int64())})
    first = positions.group_by("number", use_threads=False).aggregate([("row", "min")]).sort_by("number")
    return number, first.column("row_min")


def _array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _micros(table: pa.Table, rates: list[pa.Array], audio_prompt: pa.Array,
            audio_completion: pa.Array) -> pa.Array | None:
    """Each row's cost in micro-units: LivePricer.charge's integer arithmetic, rounded half-even."""
    prompt, cached, completion = (_array(pc.fill_null(table.column(name), 0))
                                  for name in ("prompt_tokens", "cached_tokens", "completion_tokens"))
    audio_prompt, audio_completion = _array(audio_prompt), _array(audio_completion)
    try:
        terms = [pc.multiply_checked(pc.subtract_checked(pc.subtract_checked(prompt, cached), audio_prompt), rates[0]),
                 pc.multiply_checked(cached, rates[1]),
                 pc.multiply_checked(pc.subtract_checked(completion, audio_completion), rates[2]),
                 pc.multiply_checked(audio_prompt, rates[3]), pc.multiply_checked(audio_completion, rates[4])]
        exact = terms[0]
        for term in terms[1:]:
            exact = pc.add_checked(exact, term)
    except pa.ArrowInvalid:  # overflow
        return None
    if pc.min(exact).as_py() < 0:  # decoding refuses such usage; never in the ledger
        return None
    micros = pc.divide(exact, PICO_PER_MICRO)  # integer division of non-negative values: the floor
    twice_rest = pc.multiply(pc.subtract(exact, pc.multiply(micros, PICO_PER_MICRO)), 2)
    up = pc.or_(pc.greater(twice_rest, PICO_PER_MICRO),
                pc.and_(pc.equal(twice_rest, PICO_PER_MICRO), pc.equal(pc.bit_wise_and(micros, 1), 1)))
    return pc.add(micros, up.cast(pa.int64()))
