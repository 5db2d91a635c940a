"""pandas for finance: a period's report rows, per-event costs, FOCUS rows and PTU allocations as
DataFrames, priced exactly as `chargeback report` prices them (same catalog, maps, capacity and
recorded corrections), money as `decimal.Decimal` values (never floats).

    from pipeline.entrypoints.finance import Finance

    with Finance() as finance:                    # Settings.from_env(): $CHARGEBACK_HOME, ...
        rows = finance.report("2026-10")          # the rows of chargeback-2026-10.csv
        print(rows.groupby("cost_center")["total_cost"].sum())

It reads the committed snapshots, after publishing the ledger's events not yet in them (as
`chargeback report` does; `catch_up=False` reads only what `chargeback snapshot` or the 15-minute
timer published). Examples in docs/finance.md, which a test runs.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import pyarrow as pa

from pipeline.app import (
    focus_context,
    report_stores,
    settings_reference,
    snapshot_pending,
    warehouse_limits,
)
from pipeline.domain.periods import Period
from pipeline.lake.warehouse import open_warehouse, query_errors
from pipeline.settings import Settings
from pipeline.stages.correct import load_corrections
from pipeline.stages.report.build import period_report
from pipeline.stages.report.focus import focus_table
from pipeline.stages.report.model import REPORT_SCHEMA, Report, as_period
from pipeline.stages.report.views import ALLOCATIONS_SCHEMA, allocation_rows

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.domain.costing import Reference


class Finance:
    """The chargeback data of one home (or Azure store), for pandas. Reports are built once per
    period and kept, so `report`, `focus` and `allocations` of one month agree to the last digit."""

    def __init__(self, settings: Settings | None = None, reference: Reference | None = None,
                 catch_up: bool = True) -> None:
        self.settings = settings or Settings.from_env()
        self.reference = reference or settings_reference(self.settings)
        self._reports: dict[Period, Report] = {}
        self._pending = catch_up  # the ledger's unpublished events are still to be snapshotted

    def _catch_up(self) -> None:
        if not self._pending:
            return
        self._pending = False
        snapshot_pending(self.settings)

    def __enter__(self) -> Finance:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._reports.clear()

    def built(self, period: Period | str) -> Report:
        """The period's report (a month `2026-10`, or a range `2026-10-05_2026-10-20`)."""
        period = as_period(period)
        report = self._reports.get(period)
        if report is None:
            self._catch_up()
            with query_errors():
                report = self._reports[period] = period_report(report_stores(self.settings), self.reference, period,
                                                               limits=warehouse_limits(self.settings))
        return report

    def report(self, period: Period | str) -> pd.DataFrame:
        """The report rows (the columns of `chargeback-<period>.csv`): cost, ptu_cost, total_cost exact."""
        return _frame([row.values() for row in self.built(period).rows], REPORT_SCHEMA)

    def focus(self, period: Period | str) -> pd.DataFrame:
        """The FOCUS rows of `chargeback report --format focus`: sum(BilledCost) = the report total."""
        return focus_table(self.built(period), focus_context(self.settings)).to_pandas()

    def allocations(self, period: Period | str) -> pd.DataFrame:
        """Provisioned (PTU) capacity per deployment, day and consumer (the `allocations` view)."""
        report = self.built(period)
        return _frame(allocation_rows(report.deployment_days, report.capacity_version), ALLOCATIONS_SCHEMA)

    def costs(self, period: Period | str) -> pd.DataFrame:
        """One priced row per event of the period (the `costs` view): sum(cost) plus the PTU
        allocations' sum(amount) is the report total."""
        period = as_period(period)
        self._catch_up()
        stores = report_stores(self.settings)
        with query_errors():
            warehouse = open_warehouse(stores.snapshots, self.reference, (period.start, period.end),
                                       load_corrections(stores.corrections), llm_usage=stores.llm_usage,
                                       limits=warehouse_limits(self.settings))
            try:
                table: pa.Table = warehouse.connection.sql(
                    "SELECT * FROM costs WHERE date >= $start AND date < $end ORDER BY timestamp, event_id",
                    params={"start": period.start, "end": period.end}).to_arrow_table()
            finally:
                warehouse.connection.close()
        return table.to_pandas()


def _frame(rows: list[dict[str, object]], schema: pa.Schema) -> pd.DataFrame:
    """Rows as a DataFrame through Arrow: decimal128 columns become Decimal objects, exactly."""
    return pa.Table.from_pylist(rows, schema=schema).to_pandas()
