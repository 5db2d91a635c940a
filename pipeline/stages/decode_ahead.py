"""Decoding ahead: the batches of a file or replay decoded, checked and priced in a second
process while this one writes the batch before into the ledger and the counters.

Per event, decoding with every check (the duplicate-key one included) and live pricing is about
40 % of embedded ingest's CPU, and it depends on nothing the writes do; the writes must stay in
one process, in order (the first copy of an eventId wins, and SQLite has one writer). So one
worker process takes the batches in order and hands each back as a `Prepared`, at most `AHEAD`
batches in front of the writes (memory stays bounded whatever the input's size). The worker runs
exactly `prepare_batch`, so every rejection, reason and charge is the one this process would
have made; only the events cross the process boundary, as msgpack (exact for every field, and a
tenth of pickle's cost), or pickled when msgpack cannot carry a value (an integer past 64 bits
in an unknown field).

The worker is spawned, not forked (a fork of a process whose libraries run threads is unsafe),
so it starts in a few tenths of a second: the first batch is prepared here while it starts, and
an input of a single batch never starts it. A worker that dies ends the ingest with
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
from pipeline.domain.events import UsageEvent
from pipeline.domain.live import LiveCharge, LivePricer
from pipeline.inputs.event_files import LineBatch
from pipeline.ports import ChargebackError

AHEAD = 1  # batches prepared ahead of the write in progress: the worker is the faster side
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


Batch = list[RawMessage] | LineBatch  # messages, or the lines of a file that are the messages


def prepare_batch(batch: Batch, pricer: LivePricer, now: datetime | None = None, *,
                  check_duplicate_keys: bool = True) -> Prepared:
    messages = batch.messages() if isinstance(batch, LineBatch) else batch
    decoded = decode_batch(messages, now, check_duplicate_keys=check_duplicate_keys)
    return Prepared(len(messages), decoded, pricer.charges(decoded.events))


def worth_a_worker() -> bool:
    """A second process helps only with a second core to run on."""
    return (os.cpu_count() or 1) >= 2


def prepared_batches(batches: Iterable[Batch], pricer: LivePricer, now: datetime | None = None, *,
                     check_duplicate_keys: bool = True, ahead: bool = True) -> Iterator[Prepared]:
    """Each batch prepared, in order: in a worker process when `ahead` (and there are a second
    batch and a second core), else here."""
    stream = iter(batches)
    first, second = next(stream, None), next(stream, None)
    if first is None:
        return
    if second is None or not ahead or not worth_a_worker():
        for batch in chain([first], [] if second is None else [second], stream):
            yield prepare_batch(batch, pricer, now, check_duplicate_keys=check_duplicate_keys)
        return
    rest = chain([second], stream)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_start,
                             initargs=(pricer.reference, now, check_duplicate_keys)) as pool:
        pending: deque[Future[_Shipped]] = deque()

        def submit_next() -> None:
            batch = next(rest, None)
            if batch is not None:
                pending.append(pool.submit(_prepare, batch if isinstance(batch, LineBatch) else _columns(batch)))

        try:
            for _ in range(AHEAD):
                submit_next()
            yield prepare_batch(first, pricer, now, check_duplicate_keys=check_duplicate_keys)  # while it starts
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
_Shipped = tuple[int, bytes, bool, bytes, list[Rejection]]  # received, events, pickled?, charges, rejections
_worker: dict[str, object] = {}


def _columns(batch: list[RawMessage]) -> _Columns:
    """A batch as plain lists (pickled in C, unlike a list of dataclasses)."""
    return ([m.body for m in batch], [m.source for m in batch], [m.position for m in batch],
            [m.partition for m in batch], [m.sequence_number for m in batch], [m.offset for m in batch],
            [m.enqueued_time for m in batch])


def _start(reference: Reference, now: datetime | None, check_duplicate_keys: bool) -> None:
    _worker.update(pricer=LivePricer(reference), now=now, check=check_duplicate_keys)


def _prepare(batch: _Columns | LineBatch) -> _Shipped:
    pricer = _worker["pricer"]
    assert isinstance(pricer, LivePricer)
    messages = batch if isinstance(batch, LineBatch) else [RawMessage(*fields) for fields in zip(*batch, strict=True)]
    prepared = prepare_batch(messages, pricer, _worker["now"], check_duplicate_keys=bool(_worker["check"]))  # type: ignore[arg-type]
    events = prepared.decoded.events
    try:
        data, pickled = _encode(events), False
    except (OverflowError, TypeError):  # a value msgpack cannot hold, in an unknown field
        data, pickled = pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL), True
    return prepared.received, data, pickled, _encode(prepared.charges), prepared.decoded.rejections


def _unshipped(shipped: _Shipped) -> Prepared:
    received, data, pickled, charges, rejections = shipped
    events: list[UsageEvent] = pickle.loads(data) if pickled else _events(data)  # bytes our own worker pickled
    return Prepared(received, DecodedBatch(events, rejections), _charges(charges))


def _result(future: Future[_Shipped]) -> _Shipped:
    try:
        return future.result()
    except BrokenProcessPool as error:
        raise DecodeAheadError("the process that decodes ahead stopped (killed or out of memory); what was "
                               "ingested before stays, and ingesting the input again is safe") from error
