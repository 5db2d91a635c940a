"""Decoding ahead: the batches of a file or replay decoded, checked and priced in worker
processes while this one writes the batch before into the ledger and the counters.

Decoding with every check (the duplicate-key one included) and live pricing depends on nothing
the writes do; the writes must stay in one process, in order (the first copy of an eventId wins,
and SQLite has one writer). So `WORKERS` processes take the batches in turn and hand each back as
a `Prepared`, in the order of the input, at most one batch per worker in front of the writes
(memory stays bounded whatever the input's size). A worker runs exactly `prepare_batch`, so every
rejection, reason and charge is the one this process would have made.

What crosses the process boundary: for the embedded ledger and counters, the batch as Arrow
columns (`pipeline.lake.event_columns`: the ledger's rows and the charges, built once in the
worker, so the writer handles no Python object per event); for any other ledger, the events as
msgpack (exact for every field, and a tenth of pickle's cost), or pickled when msgpack cannot
carry a value (an integer past 64 bits in an unknown field).

Workers are spawned, not forked (a fork of a process whose libraries run threads is unsafe), so
they start in a few tenths of a second: the first batch is prepared here while they start, and
an input of a single batch never starts them. A worker that dies ends the ingest with
`DecodeAheadError`; what was written before it stays written, and ingesting the input again is
safe (every write is idempotent by eventId).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

import msgspec

from pipeline.domain.costing import Reference
from pipeline.domain.decode import DecodedBatch, RawMessage, Rejection, decode_batch
from pipeline.domain.events import UsageEvent, first_copies
from pipeline.domain.live import LiveCharge, LivePricer
from pipeline.lake.event_columns import EventColumns
from pipeline.lake.live_columns import priced_columns
from pipeline.lake.pandas_probe import skip_pandas_probe
from pipeline.ports import ChargebackError, MessageBatch
from pipeline.stages.decode_worker import start_worker

# Two workers even on two cores: once the writer was handed Arrow columns, one worker became the
# slower side (a 1M-event file: 24-27 s with one, 20-22 s with two; docs/benchmarks.md).
WORKERS = 2
AHEAD = WORKERS  # batches prepared ahead of the write in progress
_encode = msgspec.msgpack.Encoder().encode
_events = msgspec.msgpack.Decoder(list[UsageEvent]).decode
_charges = msgspec.msgpack.Decoder(list[LiveCharge]).decode


class DecodeAheadError(ChargebackError):
    """The decoding process stopped (killed, out of memory)."""


@dataclass(slots=True)
class Prepared:
    """One batch decoded and priced: what is left is to write it."""

    received: int
    decoded: DecodedBatch = field(default_factory=DecodedBatch)
    charges: list[LiveCharge] = field(default_factory=list)  # one per decoded event, in order
    # Columnar (for the embedded ledger and counters): the events and charges as EventColumns
    # instead, and decoded.events and charges empty.
    columns: EventColumns | None = None
    unpriced: int = 0  # decoded events whose live charge is unpriced, copies of an eventId included


Batch = list[RawMessage] | MessageBatch  # messages, or what they are read from (lines, Capture files)


def prepare_batch(batch: Batch, pricer: LivePricer, now: datetime | None = None, *,
                  check_duplicate_keys: bool = True, columnar: bool = False) -> Prepared:
    messages = batch if isinstance(batch, list) else batch.messages()
    decoded = decode_batch(messages, now, check_duplicate_keys=check_duplicate_keys)
    if columnar:
        first = first_copies(decoded.events)  # once, for the columns and the unpriced count
        columns = priced_columns(decoded.events, pricer, first)
        return Prepared(len(messages), DecodedBatch([], decoded.rejections), columns=columns,
                        unpriced=_unpriced(decoded.events, first, columns, pricer))
    charges = pricer.charges(decoded.events)
    return Prepared(len(messages), decoded, charges, unpriced=sum(not charge.priced for charge in charges))


def _unpriced(events: list[UsageEvent], first: dict[str, int], columns: EventColumns, pricer: LivePricer) -> int:
    """The events the pricer cannot price: the first copies' (`first`) from their charges, and
    each other copy of an eventId priced as it is (a copy may say something else; they are few)."""
    unpriced = columns.rows - int(columns.charges.column("priced").true_count)
    if columns.copies > columns.rows:
        unpriced += sum(not pricer.charge(event).priced for at, event in enumerate(events)
                        if first[event.event_id] != at)
    return unpriced


def worth_a_worker() -> bool:
    """Worker processes help only with a second core to run on."""
    return (os.cpu_count() or 1) >= 2


def prepared_batches(batches: Iterable[Batch], pricer: LivePricer, now: datetime | None = None, *,
                     check_duplicate_keys: bool = True, ahead: bool = True,
                     columnar: bool = False) -> Iterator[Prepared]:
    """Each batch prepared, in order: in a worker process when `ahead` (and there are a second
    batch and a second core), else here. `columnar`: as EventColumns (see Prepared)."""
    stream = iter(batches)
    first, second = next(stream, None), next(stream, None)
    if first is None:
        return
    if second is None or not ahead or not worth_a_worker():
        for batch in chain([first], [] if second is None else [second], stream):
            yield prepare_batch(batch, pricer, now, check_duplicate_keys=check_duplicate_keys, columnar=columnar)
        return
    rest = chain([second], stream)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(WORKERS, mp_context=context, initializer=start_worker,
                             initargs=(pricer.reference, now, check_duplicate_keys, columnar)) as pool:
        pending: deque[Future[_Shipped]] = deque()

        def submit_next() -> None:
            batch = next(rest, None)
            if batch is not None:
                pending.append(pool.submit(_prepare, _columns(batch) if isinstance(batch, list) else batch))

        try:
            for _ in range(AHEAD):
                submit_next()
            # while they start:
            yield prepare_batch(first, pricer, now, check_duplicate_keys=check_duplicate_keys, columnar=columnar)
            while pending:
                shipped = _result(pending.popleft())
                submit_next()
                yield _unshipped(shipped)
        finally:
            for future in pending:
                future.cancel()


# ----------------------------------------------------------------------------------- the worker side

_Columns = tuple[list[bytes], list[str], list[str], list[str | None], list[int | None], list[str | None],
                 list[datetime | None]]
# received, rejections, then the events: as columns (pickled as Arrow IPC), or as objects
# (msgpack or pickle, pickled?, charges as msgpack)
_Objects = tuple[bytes, bool, bytes]
_Shipped = tuple[int, list[Rejection], EventColumns | _Objects, int]
_worker: dict[str, object] = {}


def _columns(batch: list[RawMessage]) -> _Columns:
    """A batch as plain lists (pickled in C, unlike a list of dataclasses)."""
    return ([m.body for m in batch], [m.source for m in batch], [m.position for m in batch],
            [m.partition for m in batch], [m.sequence_number for m in batch], [m.offset for m in batch],
            [m.enqueued_time for m in batch])


def start(reference: Reference, now: datetime | None, check_duplicate_keys: bool, columnar: bool) -> None:
    """A worker's state (pipeline.stages.decode_worker.start_worker calls it)."""
    skip_pandas_probe()
    _worker.update(pricer=LivePricer(reference), now=now, check=check_duplicate_keys, columnar=columnar)


def _prepare(batch: _Columns | MessageBatch) -> _Shipped:
    pricer = _worker["pricer"]
    assert isinstance(pricer, LivePricer)
    messages = [RawMessage(*fields) for fields in zip(*batch, strict=True)] if isinstance(batch, tuple) else batch
    prepared = prepare_batch(messages, pricer, _worker["now"], check_duplicate_keys=bool(_worker["check"]),  # type: ignore[arg-type]
                             columnar=bool(_worker["columnar"]))
    rejections = prepared.decoded.rejections
    if prepared.columns is not None:
        return prepared.received, rejections, prepared.columns, prepared.unpriced
    events = prepared.decoded.events
    try:
        data, pickled = _encode(events), False
    except (OverflowError, TypeError):  # a value msgpack cannot hold, in an unknown field
        data, pickled = pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL), True
    return prepared.received, rejections, (data, pickled, _encode(prepared.charges)), prepared.unpriced


def _unshipped(shipped: _Shipped) -> Prepared:
    received, rejections, payload, unpriced = shipped
    if isinstance(payload, EventColumns):
        return Prepared(received, DecodedBatch([], rejections), columns=payload, unpriced=unpriced)
    data, pickled, charges = payload
    events: list[UsageEvent] = pickle.loads(data) if pickled else _events(data)  # bytes our own worker pickled
    return Prepared(received, DecodedBatch(events, rejections), _charges(charges), unpriced=unpriced)


def _result(future: Future[_Shipped]) -> _Shipped:
    try:
        return future.result()
    except BrokenProcessPool as error:
        raise DecodeAheadError("the process that decodes ahead stopped (killed or out of memory); what was "
                               "ingested before stays, and ingesting the input again is safe") from error
