"""Settings, read once from the environment by the entry points (never at import time).

The embedded defaults need no settings at all; everything they write goes under
CHARGEBACK_HOME (default ./.chargeback):

    ledger.sqlite3      the durable ledger                    (CHARGEBACK_LEDGER)
    counters.sqlite3    the live counters                     (CHARGEBACK_COUNTERS)
    snapshots/          Parquet snapshots and their manifests (CHARGEBACK_STORE)
    dead-letters/       rejected events, with their reasons   (CHARGEBACK_STORE)
    reports/            chargeback-YYYY-MM.csv / .parquet
    deployments.csv     deployment map (deployment,model,deployment_type,region)
    cost-centers.csv    cost-center map (subscription_id,cost_center,effective_from,effective_to)
    budgets.csv         monthly budgets (scope,key,monthly_budget,currency), optional
    capacity.csv        provisioned (PTU) capacity
                        (deployment,ptu,price_per_ptu_hour,currency,effective_from,effective_to), optional

CHARGEBACK_PRICES, CHARGEBACK_DEPLOYMENTS, CHARGEBACK_COST_CENTERS and CHARGEBACK_BUDGETS name
other files for the catalog (default: the shipped one) and the maps; ingest prices live spend
with the same files that `report` and `query` use. CHARGEBACK_CAPACITY names the provisioned
capacity file, CHARGEBACK_PTU_WEIGHTS the PTU weights (default: the shipped ones) and
CHARGEBACK_PTU_IDLE_OWNER the cost center charged idle PTU capacity (default: spread over users).

Each backend is chosen by the scheme of its URL:
    CHARGEBACK_LEDGER    sqlite:///PATH | cosmos://HOST[:PORT]/DATABASE/CONTAINER
    CHARGEBACK_COUNTERS  sqlite:///PATH | redis://HOST:PORT/DB | rediss://HOST:PORT/DB
    CHARGEBACK_STORE     file:///PATH   | az://CONTAINER/PREFIX
Cosmos DB and Blob Storage use DefaultAzureCredential (managed identity in Azure). Keys are for
the local emulators only: CHARGEBACK_COSMOS_KEY, AZURE_STORAGE_CONNECTION_STRING. For Blob with
identity, CHARGEBACK_STORAGE_ACCOUNT_URL names the account (https://ACCOUNT.blob.core.windows.net).
`sqlite:///relative/path` is relative to the working directory, `sqlite:////abs/path` absolute.

Also: CHARGEBACK_REDIS_USERNAME (the object id of the identity that signs in to Azure Cache for
Redis with Entra ID), CHARGEBACK_COSMOS_SETTLE_SECONDS (how old a ledger item must be before a
snapshot takes it; default 120, 0 for one local writer), CHARGEBACK_CREATE_RESOURCES=1 (create
a missing Cosmos DB database/container or Blob container: local emulators and tests only),
CHARGEBACK_REPORT_FORMATS (the formats the daily Functions timer publishes, comma-separated;
default csv,parquet,focus,html).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_VARIABLE = "CHARGEBACK_HOME"
DEFAULT_HOME = ".chargeback"
SQLITE = "sqlite:///"


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    ledger: str = ""
    counters: str = ""
    store: str = ""
    cosmos_key: str | None = None
    storage_account_url: str | None = None
    storage_connection_string: str | None = None
    budgets: Path | None = None
    prices: Path | None = None
    deployments: Path | None = None
    cost_centers: Path | None = None
    create_resources: bool = False  # create the Cosmos container / Blob container if missing (local only)
    cosmos_settle_seconds: float | None = None
    redis_username: str | None = None
    capacity: Path | None = None
    ptu_weights: Path | None = None
    ptu_idle_owner: str | None = None
    report_formats: str | None = None  # comma-separated, for the daily report timer

    def __post_init__(self) -> None:
        # Defaults derive from the home; frozen, so set through object.__setattr__.
        defaults = {"ledger": SQLITE + str(self.home / "ledger.sqlite3"),
                    "counters": SQLITE + str(self.home / "counters.sqlite3"),
                    "store": self.home.absolute().as_uri()}
        for name, value in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return environ.get(name) or None

        def path(name: str) -> Path | None:
            value = get(name)
            return Path(value) if value else None

        return cls(
            home=Path(get(HOME_VARIABLE) or DEFAULT_HOME),
            ledger=get("CHARGEBACK_LEDGER") or "",
            counters=get("CHARGEBACK_COUNTERS") or "",
            store=get("CHARGEBACK_STORE") or "",
            cosmos_key=get("CHARGEBACK_COSMOS_KEY"),
            storage_account_url=get("CHARGEBACK_STORAGE_ACCOUNT_URL"),
            storage_connection_string=get("AZURE_STORAGE_CONNECTION_STRING"),
            budgets=path("CHARGEBACK_BUDGETS"),
            prices=path("CHARGEBACK_PRICES"),
            deployments=path("CHARGEBACK_DEPLOYMENTS"),
            cost_centers=path("CHARGEBACK_COST_CENTERS"),
            create_resources=get("CHARGEBACK_CREATE_RESOURCES") == "1",
            cosmos_settle_seconds=float(settle) if (settle := get("CHARGEBACK_COSMOS_SETTLE_SECONDS")) else None,
            redis_username=get("CHARGEBACK_REDIS_USERNAME"),
            capacity=path("CHARGEBACK_CAPACITY"),
            ptu_weights=path("CHARGEBACK_PTU_WEIGHTS"),
            ptu_idle_owner=get("CHARGEBACK_PTU_IDLE_OWNER"),
            report_formats=get("CHARGEBACK_REPORT_FORMATS"),
        )

    @property
    def embedded_ledger(self) -> Path | None:
        """The SQLite ledger's path, or None when the ledger is not embedded."""
        return sqlite_path(self.ledger)

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def deployments_csv(self) -> Path:
        return self.deployments or self.home / "deployments.csv"

    @property
    def cost_centers_csv(self) -> Path:
        return self.cost_centers or self.home / "cost-centers.csv"

    @property
    def budgets_csv(self) -> Path:
        return self.budgets or self.home / "budgets.csv"

    @property
    def capacity_csv(self) -> Path:
        return self.capacity or self.home / "capacity.csv"


def sqlite_path(url: str) -> Path | None:
    return Path(url[len(SQLITE):]) if url.startswith(SQLITE) else None
