"""The areas of the object store (CHARGEBACK_STORE): one folder, or Blob prefix, each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names only: commands import these without loading the ports
    from pipeline.ports import ObjectStore

SNAPSHOTS = "snapshots"  # Parquet snapshots of the ledger and their manifests (pipeline.lake.manifests)
DEAD_LETTERS = "dead-letters"  # rejected events with their reasons (pipeline.lake.dead_letters)
REPORTS = "reports"  # the reports the daily Functions timer publishes
LLM_USAGE = "llm-usage"  # usage records from APIM's LLM logs (pipeline.lake.llm_usage)
CORRECTIONS = "corrections"  # the append-only corrections log (pipeline.stages.correct)
GATEWAY = "gateway"  # state APIM reads: budgets/<subscriptionId>.json (pipeline.stages.budget_gate)


@dataclass(frozen=True, slots=True)
class ReportStores:
    """The areas a report reads: the snapshots, the LLM-log usage and the corrections log."""

    snapshots: ObjectStore
    llm_usage: ObjectStore
    corrections: ObjectStore
