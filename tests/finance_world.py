"""A small month of traffic with pay-as-you-go and provisioned (PTU) usage, priced by hand, shared
by the PTU, FOCUS and HTML report tests. Everything goes through the real CLI and the real files.

Prices (tests.conftest.PRICES_CSV), per 1M tokens: m-alpha 1.00 in / 0.50 cached / 4.00 out before
2026-10-16; m-beta 0.10 in (no cached price) / 0.40 out. sub-a -> CC-A; sub-b -> CC-B1, CC-B2 from
2026-10-20.

dep-ptu (m-ptu, provisioned): 2 PTUs at 1.50 USD per PTU-hour on 2026-10-01 and 2026-10-02, so
72.00 USD a day; m-ptu weights 1 / 0 / 4 and 100 input tokens per minute per PTU, so a day's
capacity is 2 x 24 x 60 x 100 = 288,000 weighted tokens.

2026-10-01: sub-a uses 10,000 prompt (4,000 cached) + 5,000 output = 6,000 + 0 + 20,000 = 26,000;
            sub-b uses 30,000 prompt + 10,000 output = 30,000 + 40,000 = 70,000; used 96,000,
            idle 192,000.
  idle owner CC-OWNER: CC-A 72 x 26,000/288,000 = 6.50, CC-B1 72 x 70,000/288,000 = 17.50,
                       CC-OWNER 72 x 192,000/288,000 = 48.00
  spread (no owner):   CC-A 72 x 26/96 = 19.50, CC-B1 72 x 70/96 = 52.50
2026-10-02: no usage: 72.00 to CC-OWNER (or `unassigned` without an owner).
2026-10-05: usage on dep-ptu with no capacity row: unpriced `no-capacity`.

Pay-as-you-go: sub-a m-alpha 1M prompt on 2026-10-05 = 1.00 (CC-A); sub-b m-beta 2M prompt (1M
cached, no discount) + 1M output on 2026-10-21 = 0.10 + 0.10 + 0.40 = 0.60 (CC-B2).
Total 1.00 + 0.60 + 144.00 = 145.60 USD.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.entrypoints.cli import main
from tests.conftest import COST_CENTERS_CSV, DEPLOYMENTS_CSV, PRICES_CSV, WriteFile
from tests.factories import event, jsonl, usage

MONTH = "2026-10"
PTU_DEPLOYMENTS_CSV = DEPLOYMENTS_CSV + "dep-ptu,m-ptu,provisioned,westeurope\n"
WEIGHTS_CSV = ("# test weights\nmodel,input_weight,cached_input_weight,output_weight,input_tpm_per_ptu\n"
               "m-ptu,1,0,4,100\n")
CAPACITY_CSV = ("deployment,ptu,price_per_ptu_hour,currency,effective_from,effective_to\n"
                "dep-ptu,2,1.50,USD,2026-10-01,2026-10-03\n")


def ev(event_id: str, subscription: str, deployment: str, timestamp: str, tokens: dict[str, int] | None,
       **changes: object) -> dict[str, object]:
    return event(eventId=event_id, subscriptionId=subscription, deployment=deployment, timestamp=timestamp,
                 model=None, usage=tokens, **changes)


EVENTS = [
    ev("e-payg-a", "sub-a", "dep-alpha", "2026-10-05T10:00:00Z", usage(1_000_000, 0)),
    ev("e-payg-b", "sub-b", "dep-beta", "2026-10-21T10:00:00Z", usage(2_000_000, 1_000_000, cached=1_000_000)),
    ev("e-ptu-a", "sub-a", "dep-ptu", "2026-10-01T08:00:00Z", usage(10_000, 5_000, cached=4_000, reasoning=1_000)),
    ev("e-ptu-b", "sub-b", "dep-ptu", "2026-10-01T09:00:00Z", usage(30_000, 10_000)),
    ev("e-ptu-late", "sub-a", "dep-ptu", "2026-10-05T09:00:00Z", usage(100, 100)),
    ev("e-error", "sub-a", "dep-alpha", "2026-10-06T09:00:00Z", None, statusCode=429, usageSource="none"),
]
TOTAL = Decimal("145.60")
PAYG = Decimal("1.60")
PTU = Decimal("144.00")
OWNER_ALLOCATIONS = {  # (date, cost center, kind) -> amount
    ("2026-10-01", "CC-A", "usage"): Decimal("6.50"),
    ("2026-10-01", "CC-B1", "usage"): Decimal("17.50"),
    ("2026-10-01", "CC-OWNER", "idle"): Decimal("48.00"),
    ("2026-10-02", "CC-OWNER", "idle"): Decimal("72.00"),
}
SPREAD_ALLOCATIONS = {
    ("2026-10-01", "CC-A", "usage"): Decimal("19.50"),
    ("2026-10-01", "CC-B1", "usage"): Decimal("52.50"),
    ("2026-10-02", "unassigned", "idle"): Decimal("72.00"),
}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@dataclass(frozen=True, slots=True)
class World:
    home: Path
    out: Path

    def report(self, *formats: str) -> Result:
        result = run("report", "--month", MONTH, "--out", str(self.out), "--format", ",".join(formats or ("csv",)))
        assert result.exit_code == 0, result.output
        return result

    def query(self, sql: str) -> list[dict[str, str]]:
        result = run("query", sql, "--format", "csv")
        assert result.exit_code == 0, result.output
        return list(csv.DictReader(result.stdout.splitlines()))

    def rows(self, name: str = f"chargeback-{MONTH}.csv") -> list[dict[str, str]]:
        with (self.out / name).open(newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))


def build_world(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                idle_owner: str | None = "CC-OWNER") -> World:
    """Ingest EVENTS with the PTU reference files named by the environment, as an operator would."""
    files = {
        "CHARGEBACK_PRICES": write_file("prices.csv", PRICES_CSV),
        "CHARGEBACK_DEPLOYMENTS": write_file("deployments-ptu.csv", PTU_DEPLOYMENTS_CSV),
        "CHARGEBACK_COST_CENTERS": write_file("cost-centers.csv", COST_CENTERS_CSV),
        "CHARGEBACK_CAPACITY": write_file("capacity.csv", CAPACITY_CSV),
        "CHARGEBACK_PTU_WEIGHTS": write_file("ptu-weights.csv", WEIGHTS_CSV),
    }
    for name, path in files.items():
        monkeypatch.setenv(name, str(path))
    if idle_owner:
        monkeypatch.setenv("CHARGEBACK_PTU_IDLE_OWNER", idle_owner)
    else:
        monkeypatch.delenv("CHARGEBACK_PTU_IDLE_OWNER", raising=False)
    result = run("ingest", str(write_file("events.jsonl", jsonl(EVENTS))))
    assert result.exit_code == 0, result.output
    return World(home, tmp_path / "out")
