"""Shared fixtures: a CHARGEBACK_HOME in tmp_path, a real pipeline on it (SQLite ledger and
counters, local object stores, live spend priced with the small reference CSVs below, whose
round prices make every expected cost computable by hand)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.app import Pipeline, open_pipeline
from pipeline.domain.costing import Reference
from pipeline.inputs.event_files import json_lines
from pipeline.inputs.reference import load_reference
from pipeline.ports import ObjectStore
from pipeline.settings import HOME_VARIABLE, Settings
from pipeline.stages.ingest import DEFAULT_BATCH, IngestResult, ingest

pytest_plugins = ["tests.servers"]  # redis_url, azurite_connection_string, cosmos_endpoint

# Round prices per 1M tokens so that expected costs can be worked out by hand.
# m-alpha doubles on 2026-10-16; m-beta has no cached price (cached tokens cost the input price).
PRICES_CSV = """\
# test catalog
model,deployment_type,region,effective_from,effective_to,currency,input_per_1m,cached_input_per_1m,output_per_1m
m-alpha,global,*,2026-01-01,2026-10-16,USD,1.00,0.50,4.00
m-alpha,global,*,2026-10-16,,USD,2.00,1.00,8.00
m-beta,datazone,*,2026-01-01,,USD,0.10,,0.40
"""

DEPLOYMENTS_CSV = """\
deployment,model,deployment_type,region
dep-alpha,m-alpha,global,
dep-beta,m-beta,datazone,westeurope
dep-nomodel,,global,
dep-noprice,m-gamma,global,
"""

# sub-b moves from CC-B1 to CC-B2 on 2026-10-20; sub-c is not mapped at all.
COST_CENTERS_CSV = """\
subscription_id,cost_center,effective_from,effective_to
sub-a,CC-A,2026-01-01,
sub-b,CC-B1,2026-01-01,2026-10-20
sub-b,CC-B2,2026-10-20,
"""


def local(store: ObjectStore) -> LocalObjectStore:
    """The embedded pipeline's object store as the local store it is (the warehouse reads a local one)."""
    assert isinstance(store, LocalObjectStore), store
    return store


class WriteFile(Protocol):
    def __call__(self, name: str, content: str | bytes) -> Path: ...


class Feed(Protocol):
    def __call__(self, data: bytes, batch_size: int = DEFAULT_BATCH) -> IngestResult: ...


@dataclass(frozen=True, slots=True)
class ReferenceFiles:
    prices: Path
    deployments: Path
    cost_centers: Path

    def load(self) -> Reference:
        return load_reference(self.prices, self.deployments, self.cost_centers)

    def options(self) -> list[str]:
        """The same files as `chargeback report/query` options."""
        return ["--prices", str(self.prices), "--deployments", str(self.deployments),
                "--cost-centers", str(self.cost_centers)]


# Every variable the pipeline reads besides the home (Settings is the only reader): cleared so
# that nothing from the developer's shell (a Cosmos DB, a Redis, a Blob container) leaks into a test.
SETTINGS_VARIABLES = tuple(name for name in Settings.variables() if name != HOME_VARIABLE)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty CHARGEBACK_HOME (not created yet); every other setting variable is cleared so
    that the embedded defaults under this home are used."""
    folder = tmp_path / "home"
    monkeypatch.setenv(HOME_VARIABLE, str(folder))
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home)


@pytest.fixture
def pipeline(settings: Settings, reference_files: ReferenceFiles) -> Iterator[Pipeline]:
    """The embedded pipeline on the home; live spend is priced with the test catalog and maps."""
    opened = open_pipeline(settings, reference_files.load())
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def write_file(tmp_path: Path) -> WriteFile:
    """Write text or bytes to tmp_path/inputs/NAME and return the path."""
    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path
    return write


@pytest.fixture
def reference_files(write_file: WriteFile) -> ReferenceFiles:
    return ReferenceFiles(
        prices=write_file("prices.csv", PRICES_CSV),
        deployments=write_file("deployments.csv", DEPLOYMENTS_CSV),
        cost_centers=write_file("cost-centers.csv", COST_CENTERS_CSV),
    )


@pytest.fixture
def feed(pipeline: Pipeline, write_file: WriteFile) -> Feed:
    """Ingest JSON-lines bytes through a real file and the real `json_lines` source."""
    counter = iter(range(1, 1_000_000))

    def run(data: bytes, batch_size: int = DEFAULT_BATCH) -> IngestResult:
        path = write_file(f"feed-{next(counter)}.jsonl", data)
        return ingest(json_lines(str(path)), pipeline.ledger, pipeline.counters, pipeline.dead_letters,
                      pipeline.pricer, batch_size=batch_size)
    return run
