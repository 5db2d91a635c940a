"""Restatement: a report that was exported never changes silently.

When a month's report is written (to a folder or into the store) where that month was written
before, and the new files differ from the ones there, then before anything is replaced:

1. every file of the month now there (`chargeback-YYYY-MM.csv`, `-unpriced.csv`, `.parquet`, and
   the previous `-restatement.csv`) is kept as `history/<name>.v<N>.<ext>`, N being that
   version's number (the first report of a month is version 1). History objects are
   created-if-absent; a writer that loses a race for N takes N+1;
2. `chargeback-YYYY-MM-restatement.csv` is written: per cost center and currency whose total
   changed, the old total (read from the previous report file), the new total, the delta, and
   the ids of the corrections that shape that cost center's lines in the new version;
3. only then the new report files replace the old ones.

A month written the first time, or rewritten identically, produces no restatement. A report of a
range of days (`chargeback-2026-10-05_2026-10-20.*`) is restated the same way once its last day
is over; its restatement's `month` column holds the range.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.domain.periods import is_month_label
from pipeline.domain.pricing import MONEY, money_sum
from pipeline.lake.csv_files import csv_table_bytes
from pipeline.ports import ChargebackError, ObjectStore
from pipeline.stages.report.model import exact_text

HISTORY = "history"
RESTATEMENT_COLUMNS = ("month", "cost_center", "currency", "old_total", "new_total", "delta", "corrections")
# FinOps hubs ingest custom FOCUS Parquet from ingestion/Costs/{yyyy}/{mm}/{scope}/ (pipeline.stages.report.focus).
FOCUS_SCOPE = "apim-openai-chargeback"
HUBS_FOLDER = "ingestion/Costs/{yyyy}/{mm}/" + FOCUS_SCOPE
FOCUS_1_2 = "focus-1.2"
FORMAT_FILES = {"csv": ("{stem}.csv", "{stem}-unpriced.csv", "{stem}-daily.csv"), "parquet": ("{stem}.parquet",),
                "focus": ("{stem}-focus.csv", "{focus_parquet}"),
                FOCUS_1_2: ("{stem}-focus-1.2.csv", "{stem}-focus-1.2.parquet"), "html": ("{stem}.html",)}
MAX_ATTEMPTS = 100

Totals = Mapping[tuple[str, str], Decimal]  # (cost center, currency) -> total cost


@dataclass(frozen=True, slots=True)
class RestatementLine:
    cost_center: str
    currency: str
    old: Decimal
    new: Decimal
    corrections: tuple[str, ...]

    @property
    def delta(self) -> Decimal:
        return MONEY.subtract(self.new, self.old)


@dataclass(slots=True)
class Restatement:
    month: str
    version: int  # the new report's version; the one it replaces is kept as v<version - 1>
    lines: list[RestatementLine]
    key: str  # the restatement file
    history: list[str] = field(default_factory=list)  # where the previous files were kept


def stem(month: str) -> str:
    return f"chargeback-{month}"


def restatement_key(month: str) -> str:
    return f"{stem(month)}-restatement.csv"


def ingestion_id(month: str) -> str:
    """The FinOps hubs ingestion id of a month's FOCUS Parquet: the same on every export of that
    month, so a re-export overwrites the one file `{ingestion-id}__{name}` instead of adding a
    second one (hubs replace the data of an ingestion id; two ids would count the month twice)."""
    return f"{FOCUS_SCOPE}-{month}"


def focus_parquet_key(label: str) -> str:
    """A month's FOCUS (1.3) Parquet goes where a FinOps hub ingests that month, named
    `{ingestion-id}__{file name}`; a range's stays next to its CSV (a hub replaces a month
    folder's data, so a part of a month must never land there)."""
    if not is_month_label(label):
        return f"{stem(label)}-focus.parquet"
    yyyy, mm = label.split("-")
    return f"{HUBS_FOLDER.format(yyyy=yyyy, mm=mm)}/{ingestion_id(label)}__{stem(label)}-focus.parquet"


def focus_keys_of(label: str, fmt: str) -> tuple[str, str]:
    """(CSV, Parquet) keys of a period's `focus` or `focus-1.2` files."""
    csv_name, parquet_name = FORMAT_FILES[fmt]
    return (csv_name.format(stem=stem(label)),
            parquet_name.format(stem=stem(label), focus_parquet=focus_parquet_key(label)))


def month_files(label: str) -> dict[str, str]:
    """{file name: format} of every report file of the period (a month, or a range of days)."""
    return {name.format(stem=stem(label), focus_parquet=focus_parquet_key(label)): fmt
            for fmt, names in FORMAT_FILES.items() for name in names}


def current_files(store: ObjectStore, month: str) -> Mapping[str, bytes]:
    """The month's files now in the store (report files and restatement), by name: each read
    from the store when it is looked up, never held (a big tenant's FOCUS CSV is hundreds of MB,
    and the daily timer republishes the month every day: holding the old files next to the new
    ones took a 5,000-subscription month from 1.7 to 2.5 GB)."""
    return StoredFiles(store, [*month_files(month), restatement_key(month)])


class StoredFiles(Mapping[str, bytes]):
    """The objects of `names` that are in the store, read on each lookup."""

    def __init__(self, store: ObjectStore, names: Iterable[str]) -> None:
        self._store = store
        self._names = [name for name in names if store.exists(name)]

    def __getitem__(self, name: str) -> bytes:
        data = self._store.get(name) if name in self._names else None
        if data is None:
            raise KeyError(name)
        return data

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def present_formats(current: Mapping[str, bytes], month: str) -> set[str]:
    return {fmt for name, fmt in month_files(month).items() if name in current}


def unchanged(store: ObjectStore, key: str, data: bytes) -> bool:
    """The object at `key` holds exactly these bytes (read a MiB at a time where the store
    streams, so that a big file is not held twice)."""
    stream = store.open(key)
    if stream is None:
        return False
    view, at = memoryview(data), 0
    with stream:
        while chunk := stream.read(1 << 20):
            if view[at:at + len(chunk)] != chunk:
                return False
            at += len(chunk)
    return at == len(data)


def restate(store: ObjectStore, month: str, current: Mapping[str, bytes], new_totals: Totals,
            explanations: Mapping[tuple[str, str], Iterable[str]]) -> Restatement:
    """Keep the month's current files in history and write its restatement (call before
    replacing the report files)."""
    version, history = _keep(store, month, current)
    old_totals = _totals(current, month)
    lines = []
    for pair in sorted(set(old_totals) | set(new_totals)):
        old, new = old_totals.get(pair, Decimal(0)), new_totals.get(pair, Decimal(0))
        if old != new:
            lines.append(RestatementLine(*pair, old, new, tuple(sorted(explanations.get(pair, ())))))
    restatement = Restatement(month, version + 1, lines, restatement_key(month), history)
    store.put(restatement.key, render_restatement(restatement), overwrite=True)
    return restatement


def render_restatement(restatement: Restatement) -> bytes:
    return csv_table_bytes(RESTATEMENT_COLUMNS, [
        (restatement.month, line.cost_center, line.currency, exact_text(line.old), exact_text(line.new),
         exact_text(line.delta), ";".join(line.corrections)) for line in restatement.lines])


def _keep(store: ObjectStore, month: str, current: Mapping[str, bytes]) -> tuple[int, list[str]]:
    """Copy the current files to history as the next free version; returns it and the keys."""
    pattern = re.compile(rf"^{HISTORY}/{re.escape(stem(month))}(?:-[a-z]+)?\.v(\d+)\.[a-z]+$")
    taken = [int(m[1]) for key in store.list(HISTORY) if (m := pattern.match(key))]
    version = max(taken, default=0) + 1
    if not current:
        return version - 1, []
    for _ in range(MAX_ATTEMPTS):
        keys = {name: _history_key(name, version) for name in current}
        first, *rest = sorted(keys)
        if store.put(keys[first], current[first], overwrite=False):
            for name in rest:
                store.put(keys[name], current[name], overwrite=False)
            return version, [keys[name] for name in sorted(keys)]
        version += 1
    raise ChargebackError(f"could not keep the previous report of {month} after {MAX_ATTEMPTS} attempts")


def _history_key(name: str, version: int) -> str:
    base, _, extension = name.rpartition(".")
    return f"{HISTORY}/{base}.v{version}.{extension}"


def _totals(files: Mapping[str, bytes], month: str) -> dict[tuple[str, str], Decimal]:
    """Cost per (cost center, currency) of a previous report: its CSV, else its Parquet; the
    pay-as-you-go `cost` plus the allocated `ptu_cost` where the report has one. A file that is
    not a report (no such columns) counts as empty."""
    sums: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    csv_data, parquet_data = files.get(f"{stem(month)}.csv"), files.get(f"{stem(month)}.parquet")
    if csv_data is not None:
        for row in csv.DictReader(io.StringIO(csv_data.decode("utf-8", errors="replace"))):
            for column in ("cost", "ptu_cost"):
                try:
                    cost = Decimal(row.get(column) or "")
                except InvalidOperation:
                    continue
                if not cost.is_finite():
                    continue
                sums[(row.get("cost_center") or "", row.get("currency") or "")].append(cost)
    elif parquet_data is not None:
        reader = pa.BufferReader(parquet_data)
        names = pq.read_schema(reader).names
        columns = [c for c in ("cost", "ptu_cost") if c in names]
        table = pq.read_table(pa.BufferReader(parquet_data), columns=["cost_center", "currency", *columns])
        for row in table.to_pylist():
            for column in columns:
                if row[column] is not None:
                    sums[(row["cost_center"], row["currency"])].append(row[column])
    return {pair: money_sum(amounts) for pair, amounts in sums.items()}
