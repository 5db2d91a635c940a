"""Settings: every environment variable the pipeline reads, read once, by `Settings.from_env`,
in the entry points (never at import time). Everything else receives a Settings or its values;
`Settings.variables()` lists every variable (the tests and the docs use it).

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

Each backend is chosen by the scheme of its URL:
    CHARGEBACK_LEDGER    sqlite:///PATH | cosmos://HOST[:PORT]/DATABASE/CONTAINER
    CHARGEBACK_COUNTERS  sqlite:///PATH | redis://HOST:PORT/DB | rediss://HOST:PORT/DB
    CHARGEBACK_STORE     file:///PATH   | az://CONTAINER/PREFIX
Cosmos DB and Blob Storage use DefaultAzureCredential (managed identity in Azure). Keys are for
the local emulators only: CHARGEBACK_COSMOS_KEY, AZURE_STORAGE_CONNECTION_STRING.
`sqlite:///relative/path` is relative to the working directory, `sqlite:////abs/path` absolute.
The other variables are described next to their fields below.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pipeline.domain.errors import UserError

HOME_VARIABLE = "CHARGEBACK_HOME"
DEFAULT_HOME = ".chargeback"
SQLITE = "sqlite:///"


class SettingsError(UserError):
    """A setting that names no usable backend or file."""


def _text(value: str) -> str:
    return value


def _path(value: str) -> Path:
    return Path(value)


def _flag(value: str) -> bool:
    return value == "1"


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"CHARGEBACK_COSMOS_SETTLE_SECONDS {value!r}: expected a number of seconds") from None


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = -1.0
    if not hours > 0:
        raise SettingsError(f"CHARGEBACK_LLM_LOG_STALE_HOURS {value!r}: expected a number of hours above 0")
    return hours


def _percent(value: str) -> Decimal:
    try:
        percent = Decimal(value)
    except InvalidOperation:
        percent = Decimal(-1)
    if not percent.is_finite() or percent < 0:
        raise SettingsError(f"CHARGEBACK_RECONCILE_TOLERANCE {value!r}: expected a percentage >= 0 (e.g. 1)")
    return percent


def _env(*names: str, parse: Callable[[str], Any] = _text, default: Any = None) -> Any:
    """A field read from the first of `names` that is set and not empty."""
    return field(default=default, metadata={"variables": names, "parse": parse})


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path = _env(HOME_VARIABLE, parse=_path, default=Path(DEFAULT_HOME))
    ledger: str = _env("CHARGEBACK_LEDGER", default="")
    counters: str = _env("CHARGEBACK_COUNTERS", default="")
    store: str = _env("CHARGEBACK_STORE", default="")
    cosmos_key: str | None = _env("CHARGEBACK_COSMOS_KEY")  # the local Cosmos DB emulator's key only
    # https://ACCOUNT.blob.core.windows.net: Blob Storage with DefaultAzureCredential
    storage_account_url: str | None = _env("CHARGEBACK_STORAGE_ACCOUNT_URL")
    storage_connection_string: str | None = _env("AZURE_STORAGE_CONNECTION_STRING")  # Azurite only
    # The user-assigned managed identity's client id: azure-identity reads it by itself; pyarrow's
    # own credential chain (Parquet reads from Blob) must be handed it, else it signs in with the
    # system-assigned identity, which the Function App does not have.
    azure_client_id: str | None = _env("AZURE_CLIENT_ID")
    budgets: Path | None = _env("CHARGEBACK_BUDGETS", parse=_path)
    prices: Path | None = _env("CHARGEBACK_PRICES", parse=_path)  # default: the shipped catalog
    deployments: Path | None = _env("CHARGEBACK_DEPLOYMENTS", parse=_path)
    cost_centers: Path | None = _env("CHARGEBACK_COST_CENTERS", parse=_path)
    # Create a missing Cosmos DB database/container or Blob container: local emulators and tests only.
    create_resources: bool = _env("CHARGEBACK_CREATE_RESOURCES", parse=_flag, default=False)
    # How old a ledger item must be before a snapshot takes it (default 120; 0 for one local writer).
    cosmos_settle_seconds: float | None = _env("CHARGEBACK_COSMOS_SETTLE_SECONDS", parse=_seconds)
    # The object id of the identity that signs in to Azure Cache for Redis with Entra ID.
    redis_username: str | None = _env("CHARGEBACK_REDIS_USERNAME")
    capacity: Path | None = _env("CHARGEBACK_CAPACITY", parse=_path)  # provisioned (PTU) capacity
    ptu_weights: Path | None = _env("CHARGEBACK_PTU_WEIGHTS", parse=_path)  # default: the shipped weights
    # The cost center charged idle PTU capacity (default: spread over the users).
    ptu_idle_owner: str | None = _env("CHARGEBACK_PTU_IDLE_OWNER")
    # The formats the daily Functions timer publishes, comma-separated (default: every format).
    report_formats: str | None = _env("CHARGEBACK_REPORT_FORMATS")
    # DuckDB (reports, queries): its memory limit (e.g. 1GB; default DuckDB's, 80% of the RAM it sees)
    # and where it spills (default: chargeback-duckdb under the system's temporary folder).
    duckdb_memory_limit: str | None = _env("CHARGEBACK_DUCKDB_MEMORY_LIMIT")
    duckdb_temp_directory: Path | None = _env("CHARGEBACK_DUCKDB_TEMP_DIR", parse=_path)
    # Warn when streamed requests came and no LLM-log record did for this many hours (default 6).
    llm_log_stale_hours: float = _env("CHARGEBACK_LLM_LOG_STALE_HOURS", parse=_hours, default=6.0)
    # The daily Azure reconciliation's tolerance: a deployment-day whose gap is more than this
    # percent of Azure Monitor's count is a gap (a warning and the reconciliation gap metrics).
    reconcile_tolerance: Decimal = _env("CHARGEBACK_RECONCILE_TOLERANCE", parse=_percent, default=Decimal(1))
    # Your Azure billing account in the FOCUS export (its fully-qualified id and name).
    focus_billing_account_id: str | None = _env("CHARGEBACK_FOCUS_BILLING_ACCOUNT_ID")
    focus_billing_account_name: str | None = _env("CHARGEBACK_FOCUS_BILLING_ACCOUNT_NAME")
    # Who records corrections when `chargeback correct` has no --by.
    user: str | None = _env("CHARGEBACK_USER", "USER", "USERNAME")
    # The Functions app's Event Hub triggers (docs/functions.md): hub names and identity-based
    # connections, which name the source of every event they deliver.
    eventhub_name: str | None = _env("CHARGEBACK_EVENTHUB_NAME")
    eventhub_namespace: str | None = _env("EVENTHUB__fullyQualifiedNamespace")
    eventhub_connection: str | None = _env("EVENTHUB")
    consumer_group: str = _env("CHARGEBACK_CONSUMER_GROUP", default="chargeback")
    # `chargeback consume`: the Blob container of its checkpoints and partition ownership (az://CONTAINER).
    checkpoints: str | None = _env("CHARGEBACK_CHECKPOINTS")
    llm_logs_eventhub_name: str | None = _env("CHARGEBACK_LLM_LOGS_EVENTHUB_NAME")
    llm_logs_eventhub_namespace: str | None = _env("EVENTHUB_LLM_LOGS__fullyQualifiedNamespace")
    # Metrics: to Application Insights when its connection string is set, else CHARGEBACK_METRICS=console.
    appinsights_connection_string: str | None = _env("APPLICATIONINSIGHTS_CONNECTION_STRING")
    metrics: str | None = _env("CHARGEBACK_METRICS")

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
        """The settings of this environment (os.environ unless given): an unset or empty
        variable leaves its field at its default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            for name in item.metadata["variables"]:
                if environ.get(name):
                    values[item.name] = item.metadata["parse"](environ[name])
                    break
        return cls(**values)

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        """Every environment variable the pipeline reads, in field order."""
        return tuple(name for item in dataclasses.fields(cls) for name in item.metadata["variables"])

    def replace(self, **changes: Any) -> Settings:
        """These settings with some fields changed (the CLI's options over the environment's)."""
        return dataclasses.replace(self, **{name: value for name, value in changes.items() if value is not None})

    @property
    def embedded_ledger(self) -> Path | None:
        """The SQLite ledger's path, or None when the ledger is not embedded."""
        return sqlite_path(self.ledger)

    @property
    def llm_log_stale_after(self) -> timedelta:
        return timedelta(hours=self.llm_log_stale_hours)

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

