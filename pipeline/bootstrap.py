"""The composition root: the one place that picks adapters for the settings."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.adapters.dead_letter_files import DeadLetterFiles
from pipeline.adapters.local_store import LocalObjectStore
from pipeline.adapters.sqlite_counters import SqliteCounters
from pipeline.adapters.sqlite_ledger import SqliteLedger
from pipeline.settings import Settings


@dataclass(slots=True)
class Pipeline:
    ledger: SqliteLedger
    counters: SqliteCounters
    dead_letters: DeadLetterFiles
    snapshots: LocalObjectStore

    def close(self) -> None:
        self.ledger.close()
        self.counters.close()


def open_pipeline(settings: Settings) -> Pipeline:
    settings.home.mkdir(parents=True, exist_ok=True)
    return Pipeline(
        ledger=SqliteLedger(settings.ledger_path),
        counters=SqliteCounters(settings.counters_path),
        dead_letters=DeadLetterFiles(LocalObjectStore(settings.dead_letters_root)),
        snapshots=LocalObjectStore(settings.snapshots_root),
    )


def open_snapshots(settings: Settings) -> LocalObjectStore:
    """The snapshot store alone, for readers (report, query) that need no ledger."""
    return LocalObjectStore(settings.snapshots_root)
