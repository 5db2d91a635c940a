"""Settings, read once from the environment by the entry points (never at import time).

CHARGEBACK_HOME (default ./.chargeback) holds everything the embedded defaults write:

    ledger.sqlite3      the durable ledger
    counters.sqlite3    the live counters
    snapshots/          Parquet snapshots (usage/date=YYYY-MM-DD/*.parquet) and their state
    dead-letters/       rejected events, with their reasons
    reports/            chargeback-YYYY-MM.csv / .parquet
    deployments.csv     deployment map (deployment,model,deployment_type,region)
    cost-centers.csv    cost-center map (subscription_id,cost_center,effective_from,effective_to)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_VARIABLE = "CHARGEBACK_HOME"
DEFAULT_HOME = ".chargeback"


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        return cls(home=Path(environ.get(HOME_VARIABLE) or DEFAULT_HOME))

    @property
    def ledger_path(self) -> Path:
        return self.home / "ledger.sqlite3"

    @property
    def counters_path(self) -> Path:
        return self.home / "counters.sqlite3"

    @property
    def snapshots_root(self) -> Path:
        return self.home / "snapshots"

    @property
    def dead_letters_root(self) -> Path:
        return self.home / "dead-letters"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def deployments_csv(self) -> Path:
        return self.home / "deployments.csv"

    @property
    def cost_centers_csv(self) -> Path:
        return self.home / "cost-centers.csv"
