"""Embedded live counters on SQLite, with the contract the Redis adapter keeps.

Each eventId is marked once in `counted` (or `recent_counted`, its twin for the marks made since
the last move: pipeline.adapters.embedded.event_id_set); an event increments the sums only in the transaction
that creates its mark, so a redelivered batch (or a batch whose ledger write already happened
before a crash) is never counted twice. Budget alerts are rows keyed by scope, key, month and
threshold: inserted once, whoever crosses the threshold first.

One instance per thread (it holds one SQLite connection). Marks are kept forever here (the
Redis adapter expires them); live spend adds micro-units as priced, assuming the catalog and
the budgets share one currency.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from pipeline.adapters.embedded.event_id_set import EventIdSet
from pipeline.adapters.embedded.sqlite import connect, probe_write, write_transaction
from pipeline.domain.counters import COST_CENTER_MEASURES, HOURLY, MONTHLY, HourlyRow, SumRows, Tally
from pipeline.domain.events import UsageEvent, first_copies
from pipeline.domain.live import Budget, BudgetAlert, Budgets, BudgetScope, LiveCharge, SubscriptionMonth, reached
from pipeline.ports import CountersUnavailable, CountResult, UserError

if TYPE_CHECKING:  # the ingest's columns: pyarrow.compute, which `usage` and `budgets` need not load (70 ms)
    from pipeline.lake.event_columns import EventColumns

LAYOUT = 1  # PRAGMA user_version: 1 has the recent marks table; 0 is the first layout (or a new file)
COUNTED = EventIdSet("counted")


def _sums(names: Iterable[str]) -> str:
    return ", ".join(f"{name} INTEGER NOT NULL" for name in names)


def _upsert(table: str, keys: int, measures: tuple[str, ...]) -> str:
    adds = ", ".join(f"{m} = {m} + excluded.{m}" for m in measures)
    return (f"INSERT INTO {table} VALUES ({', '.join('?' * (keys + len(measures)))}) "
            f"ON CONFLICT DO UPDATE SET {adds}")


_DDL = f"""
CREATE TABLE IF NOT EXISTS hourly (
    subscription_id TEXT NOT NULL, deployment TEXT NOT NULL, hour TEXT NOT NULL, {_sums(HOURLY)},
    PRIMARY KEY (subscription_id, deployment, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS monthly (
    subscription_id TEXT NOT NULL, month TEXT NOT NULL, {_sums(MONTHLY)},
    PRIMARY KEY (subscription_id, month)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cost_center_monthly (
    cost_center TEXT NOT NULL, month TEXT NOT NULL, requests INTEGER NOT NULL, spend_micros INTEGER NOT NULL,
    PRIMARY KEY (cost_center, month)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    scope TEXT NOT NULL, key TEXT NOT NULL, month TEXT NOT NULL, threshold INTEGER NOT NULL,
    spend_micros INTEGER NOT NULL, budget_micros INTEGER NOT NULL, currency TEXT NOT NULL,
    raised_at TEXT NOT NULL, PRIMARY KEY (scope, key, month, threshold)) WITHOUT ROWID;
"""
_UPSERT_HOURLY = _upsert("hourly", 3, HOURLY)
_UPSERT_MONTHLY = _upsert("monthly", 2, MONTHLY)
_UPSERT_COST_CENTER = _upsert("cost_center_monthly", 2, COST_CENTER_MEASURES)
_encode = msgspec.json.Encoder().encode
_decode_ids = msgspec.json.Decoder(list[str]).decode



class SqliteCounters:
    def __init__(self, path: Path, budgets: Budgets | None = None) -> None:
        self.path = path
        self.budgets = budgets or Budgets()
        self._db = connect(path)
        with write_transaction(self._db):
            layout = self._db.execute("PRAGMA user_version").fetchone()[0]
            if layout > LAYOUT:
                raise UserError(f"{path} holds counters of layout {layout}, newer than this version's ({LAYOUT}): "
                                "upgrade chargeback to read them")
            if layout < LAYOUT:
                COUNTED.create(self._db)
                for statement in _DDL.split(";"):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {LAYOUT}")

    def add(self, events: Sequence[UsageEvent], charges: Sequence[LiveCharge]) -> CountResult:
        if len(events) != len(charges):
            raise ValueError(f"{len(events)} events but {len(charges)} charges")
        first = first_copies(events)  # the first copy wins, as in the ledger

        def tally(held: set[str]) -> SumRows:
            sums = Tally()
            sums.add((events[at], charges[at]) for event_id, at in first.items() if event_id not in held)
            return sums.rows()

        return self._count(_encode(sorted(first)), len(first), tally)

    def add_columns(self, columns: EventColumns) -> CountResult:
        """`add` of a batch decoded elsewhere: the same sums, marks and alerts."""
        from pipeline.lake.event_columns import sum_rows

        return self._count(columns.sorted_ids, columns.rows, lambda held: sum_rows(columns, columns.without(held)))

    def _count(self, ids: bytes, distinct: int, tally: Callable[[set[str]], SumRows]) -> CountResult:
        """Mark the eventIds (a JSON array of `distinct` ids), and add the sums `tally` gives for
        those not marked before (`tally` is given those that were)."""
        try:
            with write_transaction(self._db):
                held = self._mark(ids)
                sums = tally(held)
                self._db.executemany(_UPSERT_HOURLY, sums.hourly)
                self._db.executemany(_UPSERT_MONTHLY, sums.monthly)
                self._db.executemany(_UPSERT_COST_CENTER, sums.cost_centers)
                alerts = self._raise_alerts([(BudgetScope.SUBSCRIPTION, row[0], row[1]) for row in sums.monthly]
                                            + [(BudgetScope.COST_CENTER, row[0], row[1]) for row in sums.cost_centers])
        except sqlite3.OperationalError as error:  # locked past the busy timeout, disk full, I/O error
            raise CountersUnavailable(f"{self.path}: {error}") from error
        return CountResult(distinct - len(held), alerts)

    def _mark(self, ids: bytes) -> set[str]:
        """Mark the eventIds (a JSON array of distinct ids, in key order: neighbours share pages)
        not marked yet; returns those marked before."""
        if b"\\u0000" not in ids:
            return COUNTED.add(self._db, ids)
        # JSON text cannot carry NUL through SQLite: such a batch goes one id at a time.
        return {event_id for event_id in _decode_ids(ids) if not COUNTED.add_one(self._db, event_id)}

    def _raise_alerts(self, touched: list[tuple[BudgetScope, str, str]]) -> list[BudgetAlert]:
        alerts = []
        for scope, key, month in touched:
            budget = self.budgets.get(scope, key)
            if budget is None:
                continue
            spend = self._spend(scope, key, month)
            for threshold in reached(budget, spend):
                alert = _alert(budget, month, threshold, spend)
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (scope.value, key, month, threshold, spend, budget.monthly_micros, budget.currency,
                     alert.raised_at.isoformat()))
                if cursor.rowcount == 1:
                    alerts.append(alert)
        return alerts

    def _spend(self, scope: BudgetScope, key: str, month: str) -> int:
        table, column = (("monthly", "subscription_id") if scope is BudgetScope.SUBSCRIPTION
                         else ("cost_center_monthly", "cost_center"))
        row = self._db.execute(f"SELECT spend_micros FROM {table} WHERE {column} = ? AND month = ?",
                               (key, month)).fetchone()
        return int(row[0]) if row else 0

    def month_to_date(self, month: str) -> list[SubscriptionMonth]:
        cursor = self._db.execute(
            f"SELECT subscription_id, month, {', '.join(MONTHLY)} FROM monthly WHERE month = ? "
            "ORDER BY subscription_id", (month,))
        return [SubscriptionMonth(*row) for row in cursor]

    def cost_center_spend(self, month: str) -> dict[str, int]:
        cursor = self._db.execute("SELECT cost_center, spend_micros FROM cost_center_monthly WHERE month = ? "
                                  "ORDER BY cost_center", (month,))
        return {cost_center: int(spend) for cost_center, spend in cursor}

    def hourly(self, subscription_id: str, hour_prefix: str = "") -> list[HourlyRow]:
        cursor = self._db.execute(
            f"SELECT subscription_id, deployment, hour, {', '.join(HOURLY)} FROM hourly "
            "WHERE subscription_id = ? AND substr(hour, 1, ?) = ? ORDER BY deployment, hour",
            (subscription_id, len(hour_prefix), hour_prefix))
        return [HourlyRow(*row) for row in cursor]

    def alerts(self, month: str) -> list[BudgetAlert]:
        cursor = self._db.execute(
            "SELECT scope, key, month, threshold, spend_micros, budget_micros, currency, raised_at FROM alerts "
            "WHERE month = ? ORDER BY raised_at, scope, key, threshold", (month,))
        return [BudgetAlert(BudgetScope(scope), key, month_, threshold, spend, budget, currency,
                            datetime.fromisoformat(raised_at))
                for scope, key, month_, threshold, spend, budget, currency, raised_at in cursor]

    def clear_month(self, month: str) -> None:
        with write_transaction(self._db):
            self._db.execute("DELETE FROM hourly WHERE substr(hour, 1, 7) = ?", (month,))
            self._db.execute("DELETE FROM monthly WHERE month = ?", (month,))
            self._db.execute("DELETE FROM cost_center_monthly WHERE month = ?", (month,))

    def forget(self, event_ids: Sequence[str]) -> None:
        with write_transaction(self._db):
            COUNTED.remove(self._db, event_ids)

    def probe(self) -> None:
        probe_write(self._db, self.path, CountersUnavailable)

    def close(self) -> None:
        self._db.close()


def _alert(budget: Budget, month: str, threshold: int, spend: int) -> BudgetAlert:
    return BudgetAlert(budget.scope, budget.key, month, threshold, spend, budget.monthly_micros,
                       budget.currency, datetime.now(UTC))
