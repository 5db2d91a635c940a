"""Embedded live counters on SQLite, with the contract the Redis adapter keeps.

Each eventId is marked once in `counted`; an event increments the sums only in the transaction
that creates its mark, so a redelivered batch (or a batch whose ledger write already happened
before a crash) is never counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pipeline.adapters.sqlite_ledger import connect
from pipeline.domain.events import Usage, UsageEvent

_MEASURES = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens",
             "total_tokens")
_SUMS = ", ".join(f"{m} INTEGER NOT NULL" for m in _MEASURES)
_DDL = f"""
CREATE TABLE IF NOT EXISTS counted (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hourly (
    subscription_id TEXT NOT NULL, deployment TEXT NOT NULL, hour TEXT NOT NULL, {_SUMS},
    PRIMARY KEY (subscription_id, deployment, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS monthly (
    subscription_id TEXT NOT NULL, month TEXT NOT NULL, {_SUMS},
    PRIMARY KEY (subscription_id, month)) WITHOUT ROWID;
"""
_ADD = ", ".join(f"{m} = {m} + excluded.{m}" for m in _MEASURES)
_UPSERT_HOURLY = (f"INSERT INTO hourly VALUES (?, ?, ?, {', '.join('?' * len(_MEASURES))}) "
                  f"ON CONFLICT DO UPDATE SET {_ADD}")
_UPSERT_MONTHLY = (f"INSERT INTO monthly VALUES (?, ?, {', '.join('?' * len(_MEASURES))}) "
                   f"ON CONFLICT DO UPDATE SET {_ADD}")
_LOOKUP_CHUNK = 500  # below SQLite's limit on bound parameters


class SqliteCounters:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)
        self._db.executescript(_DDL)

    def add(self, events: Sequence[UsageEvent]) -> int:
        unique: dict[str, UsageEvent] = {}
        for event in events:  # the first copy wins, as in the ledger
            unique.setdefault(event.event_id, event)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            counted = self._counted(unique)
            new = [event for event_id, event in unique.items() if event_id not in counted]
            self._db.executemany("INSERT INTO counted VALUES (?)", sorted((e.event_id,) for e in new))
            hourly, monthly = _sums(new)
            self._db.executemany(_UPSERT_HOURLY, [(*key, *sums) for key, sums in hourly.items()])
            self._db.executemany(_UPSERT_MONTHLY, [(*key, *sums) for key, sums in monthly.items()])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return len(new)

    def _counted(self, event_ids: Iterable[str]) -> set[str]:
        ids = sorted(event_ids)
        found: set[str] = set()
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start:start + _LOOKUP_CHUNK]
            found.update(row[0] for row in self._db.execute(
                f"SELECT event_id FROM counted WHERE event_id IN ({', '.join('?' * len(chunk))})", chunk))
        return found

    def monthly(self, month: str) -> list[dict[str, object]]:
        cursor = self._db.execute(
            f"SELECT subscription_id, month, {', '.join(_MEASURES)} FROM monthly WHERE month = ? "
            "ORDER BY subscription_id", (month,))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def hourly(self, subscription_id: str, hour_prefix: str = "") -> list[dict[str, object]]:
        cursor = self._db.execute(
            f"SELECT subscription_id, deployment, hour, {', '.join(_MEASURES)} FROM hourly "
            "WHERE subscription_id = ? AND hour LIKE ? ORDER BY deployment, hour",
            (subscription_id, hour_prefix + "%"))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def close(self) -> None:
        self._db.close()


def _sums(events: Iterable[UsageEvent]) -> tuple[dict[tuple[str, ...], list[int]], dict[tuple[str, ...], list[int]]]:
    """Sum the measures per subscription x deployment x hour, and per subscription x month."""
    by_hour: dict[tuple[str, str, int], list[Usage | None]] = defaultdict(list)
    for event in events:
        by_hour[(event.subscription_id, event.deployment, int(event.timestamp.timestamp()) // 3600)].append(
            event.usage)
    hourly: dict[tuple[str, ...], list[int]] = {}
    monthly: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(_MEASURES))
    for (subscription, deployment, hour_number), usages in by_hour.items():
        measured = [usage for usage in usages if usage is not None]
        measures = [
            len(usages),
            sum(u.prompt_tokens for u in measured),
            sum(u.cached_tokens for u in measured),
            sum(u.completion_tokens for u in measured),
            sum(u.reasoning_tokens for u in measured),
            sum(u.total_tokens for u in measured),
        ]
        hour = datetime.fromtimestamp(hour_number * 3600, UTC).strftime("%Y-%m-%dT%H")
        hourly[(subscription, deployment, hour)] = measures
        month_total = monthly[(subscription, hour[:7])]
        for index, value in enumerate(measures):
            month_total[index] += value
    return hourly, dict(monthly)
