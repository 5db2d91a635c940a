"""FOCUS 1.3 export (and the FOCUS 1.2 one of `--format focus-1.2`): conformance with the spec's
column definitions (tests.focus_conformance),
the FinOps hubs layout, and the totals finance reconciles: report total == sum of FOCUS BilledCost
== SQL over `costs` + `allocations`, to the cent (exactly, in fact)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.lake.csv_files import csv_table_bytes
from pipeline.stages.report.focus import COLUMN_NAMES, COLUMN_NAMES_1_2, focus_keys
from tests.conftest import WriteFile
from tests.finance_world import MONTH, PAYG, PTU, TOTAL, World, build_world, run
from tests.focus_conformance import COLUMNS, COLUMNS_1_3, MANDATORY, MANDATORY_1_3
from tests.focus_conformance import check_csv as check_csv_of
from tests.focus_conformance import check_table as check_table_of

HUBS = "ingestion/Costs/2026/10/apim-openai-chargeback"
PARQUET = f"{HUBS}/apim-openai-chargeback-{MONTH}__chargeback-{MONTH}-focus.parquet"
# `--format focus` of the release before FOCUS 1.3, generated from this world before the change
BEFORE_1_3 = Path(__file__).parent / "fixtures" / "focus-1.2"


def check_table(table: pa.Table) -> list[str]:
    return check_table_of(table, COLUMNS_1_3)


def check_csv(header: list[str], rows: list[dict[str, str]]) -> list[str]:
    return check_csv_of(header, rows, COLUMNS_1_3)


@pytest.fixture
def world(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    made = build_world(home, write_file, monkeypatch, tmp_path)
    made.report("csv", "focus")
    return made


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def test_focus_files_in_the_finops_hubs_layout(world: World) -> None:
    assert focus_keys(MONTH) == (f"chargeback-{MONTH}-focus.csv", PARQUET, f"{HUBS}/manifest.json")
    assert (world.out / f"chargeback-{MONTH}-focus.csv").is_file()
    assert (world.out / PARQUET).is_file()
    manifest = world.out / "ingestion/Costs/2026/10/apim-openai-chargeback/manifest.json"
    assert manifest.is_file() and manifest.stat().st_mtime_ns >= (world.out / PARQUET).stat().st_mtime_ns
    metadata = pq.read_schema(world.out / PARQUET).metadata
    assert metadata[b"FocusVersion"] == b"1.3"


def test_the_export_conforms_to_focus_1_3(world: World) -> None:
    table = pq.read_table(world.out / PARQUET)
    assert check_table(table) == []
    header, rows = read_csv(world.out / f"chargeback-{MONTH}-focus.csv")
    assert check_csv(header, rows) == []
    assert header == list(COLUMN_NAMES) == table.column_names
    assert set(MANDATORY_1_3) <= set(header) and len(MANDATORY) == 21 and len(MANDATORY_1_3) == 23
    assert {"ProviderName", "PublisherName", "ServiceProviderName", "HostProviderName"} <= set(header)
    custom = [name for name in header if name not in MANDATORY and name.startswith("x_")]
    assert {"x_CostCenter", "x_PriceCatalogVersion", "x_SourceEventCount"} <= set(custom)
    # CSV and Parquet carry the same rows
    assert len(rows) == table.num_rows
    for csv_row, parquet_row in zip(rows, table.to_pylist(), strict=True):
        assert Decimal(csv_row["BilledCost"]) == parquet_row["BilledCost"]
        assert csv_row["ChargePeriodStart"] == parquet_row["ChargePeriodStart"].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert (csv_row["Tags"] or None) == parquet_row["Tags"]


def test_one_row_per_cost_center_subscription_model_meter_and_day(world: World) -> None:
    rows = pq.read_table(world.out / PARQUET).to_pylist()
    by_key = {(r["ChargePeriodStart"].date().isoformat(), r["x_CostCenter"], r["x_ApimSubscriptionId"],
               r["x_Model"], r["SkuMeter"]): r for r in rows}
    assert len(by_key) == len(rows)
    assert {key: (row["PricingQuantity"], row["PricingUnit"], row["ListUnitPrice"], row["BilledCost"])
            for key, row in by_key.items()} == {
        # m-alpha 1M input tokens at 1.00 per 1M
        ("2026-10-05", "CC-A", "sub-a", "m-alpha", "Input Tokens"): (1, "1000000 Tokens", 1, 1),
        # m-beta: 1M uncached + 1M cached (no cache discount: the input price) + 1M output
        ("2026-10-21", "CC-B2", "sub-b", "m-beta", "Input Tokens"): (1, "1000000 Tokens", Decimal("0.1"),
                                                                     Decimal("0.1")),
        ("2026-10-21", "CC-B2", "sub-b", "m-beta", "Cached Input Tokens"): (1, "1000000 Tokens", Decimal("0.1"),
                                                                            Decimal("0.1")),
        ("2026-10-21", "CC-B2", "sub-b", "m-beta", "Output Tokens"): (1, "1000000 Tokens", Decimal("0.4"),
                                                                      Decimal("0.4")),
        # PTU-hours at 1.50: 6.50 / 1.50 = 4.333333 (6 decimals), 17.50 / 1.50 = 11.666667
        ("2026-10-01", "CC-A", "sub-a", "m-ptu", "Provisioned Throughput Unit Hours"): (
            Decimal("4.333333"), "PTU-Hours", Decimal("1.5"), Decimal("6.5")),
        ("2026-10-01", "CC-B1", "sub-b", "m-ptu", "Provisioned Throughput Unit Hours"): (
            Decimal("11.666667"), "PTU-Hours", Decimal("1.5"), Decimal("17.5")),
        ("2026-10-01", "CC-OWNER", None, "m-ptu", "Provisioned Throughput Unit Hours"): (
            32, "PTU-Hours", Decimal("1.5"), 48),
        ("2026-10-02", "CC-OWNER", None, "m-ptu", "Provisioned Throughput Unit Hours"): (
            48, "PTU-Hours", Decimal("1.5"), 72),
    }
    ptu = by_key[("2026-10-01", "CC-A", "sub-a", "m-ptu", "Provisioned Throughput Unit Hours")]
    assert ptu["ListCost"] == Decimal("6.4999995")  # 4.333333 x 1.50; BilledCost is the allocated 6.50
    assert (ptu["x_ChargeKind"], ptu["x_Deployment"], ptu["ChargeFrequency"]) == (
        "ProvisionedAllocation", "dep-ptu", "Recurring")
    idle = by_key[("2026-10-02", "CC-OWNER", None, "m-ptu", "Provisioned Throughput Unit Hours")]
    assert idle["x_ChargeKind"] == "ProvisionedIdle"
    token = by_key[("2026-10-05", "CC-A", "sub-a", "m-alpha", "Input Tokens")]
    assert (token["ConsumedQuantity"], token["ConsumedUnit"], token["x_SourceEventCount"]) == (
        1_000_000, "Tokens", 1)
    assert token["ChargePeriodStart"] == datetime(2026, 10, 5, tzinfo=UTC)
    assert token["ChargePeriodEnd"] == datetime(2026, 10, 6, tzinfo=UTC)
    assert token["BillingPeriodStart"] == datetime(2026, 10, 1, tzinfo=UTC)
    assert token["BillingPeriodEnd"] == datetime(2026, 11, 1, tzinfo=UTC)
    assert json.loads(token["Tags"]) == {"chargeback/apimSubscription": "sub-a", "chargeback/costCenter": "CC-A"}
    assert (token["ServiceCategory"], token["ServiceSubcategory"], token["ChargeClass"]) == (
        "AI and Machine Learning", "Generative AI", None)


def test_report_total_equals_focus_billed_cost_equals_costs_plus_allocations(world: World) -> None:
    report_total = sum((Decimal(r["total_cost"]) for r in world.rows() if r["total_cost"]), Decimal(0))
    focus_total = sum((r["BilledCost"] for r in pq.read_table(world.out / PARQUET).to_pylist()), Decimal(0))
    _, csv_rows = read_csv(world.out / f"chargeback-{MONTH}-focus.csv")
    focus_csv_total = sum((Decimal(r["BilledCost"]) for r in csv_rows), Decimal(0))
    [sql] = world.query("SELECT (SELECT sum(cost) FROM costs WHERE month = '2026-10') AS payg, "
                        "(SELECT sum(amount) FROM allocations WHERE month = '2026-10') AS ptu, "
                        "(SELECT sum(BilledCost) FROM focus WHERE BillingPeriodStart = TIMESTAMPTZ '2026-10-01 00:00Z')"
                        " AS focus")
    sql_total = Decimal(sql["payg"]) + Decimal(sql["ptu"])
    assert (Decimal(sql["payg"]), Decimal(sql["ptu"])) == (PAYG, PTU)
    assert report_total == focus_total == focus_csv_total == sql_total == Decimal(sql["focus"]) == TOTAL
    cent = Decimal("0.01")
    assert report_total.quantize(cent) == focus_total.quantize(cent) == sql_total.quantize(cent)


def test_the_focus_view_has_the_rows_of_the_file(world: World) -> None:
    rows = world.query("SELECT x_CostCenter, SkuMeter, BilledCost FROM focus ORDER BY ALL")
    from_file = sorted((r["x_CostCenter"], r["SkuMeter"], r["BilledCost"])
                       for r in pq.read_table(world.out / PARQUET).to_pylist())
    assert [(r["x_CostCenter"], r["SkuMeter"], Decimal(r["BilledCost"])) for r in rows] == from_file


def test_corrections_are_charge_class_correction_and_still_conform(world: World, write_file: WriteFile) -> None:
    recorded = run("correct", "--by", "tester", str(write_file("fix.yaml", (
        "- {kind: reassign, subscription_id: sub-a, cost_center: CC-X, from: 2026-10-01, to: 2026-11-01, "
        "reason: team moved}\n"))))
    assert recorded.exit_code == 0, recorded.output
    world.report("csv", "focus")
    table = pq.read_table(world.out / PARQUET)
    assert check_table(table) == []
    corrected = [r for r in table.to_pylist() if r["ChargeClass"] == "Correction"]
    # sub-a's lines: m-alpha input tokens (pay-as-you-go) and its PTU allocation
    assert {(r["x_CostCenter"], r["SkuMeter"]) for r in corrected} == {
        ("CC-X", "Input Tokens"), ("CC-X", "Provisioned Throughput Unit Hours")}
    assert all(r["x_CorrectionIds"] for r in corrected)
    assert sum((r["BilledCost"] for r in table.to_pylist()), Decimal(0)) == TOTAL  # a reassign moves, never adds


# Seeded mistakes: the conformance check must catch each of them.
def mutate(table: pa.Table, column: str, value: object) -> pa.Table:
    rows = table.to_pylist()
    rows[0][column] = value
    return pa.Table.from_pylist(rows, schema=table.schema)


@pytest.mark.parametrize(("column", "value", "words"), [
    ("BilledCost", None, "BilledCost is null"),
    ("ChargeCategory", "usage", "ChargeCategory 'usage'"),
    ("ChargeClass", "Restated", "ChargeClass 'Restated'"),
    ("ServiceSubcategory", "Compute", "ServiceSubcategory 'Compute'"),
    ("BillingCurrency", "XYZ", "BillingCurrency 'XYZ'"),
    ("PricingUnit", None, "PricingUnit must be null exactly"),
    ("Tags", '["a"]', "Tags is not a JSON object"),
    ("Tags", '{"a": {"b": 1}}', "object or an array"),
    ("SkuPriceDetails", '{"Region": "x"}', "does not start with x_"),
    ("ListCost", Decimal("999"), "ListCost 999"),
    ("ChargePeriodStart", datetime(2026, 9, 30, tzinfo=UTC), "not inside billing period"),
    ("PricingUnit", "tokens per million", "Unit Format"),
    ("ChargeDescription", " ", "empty string"),
    ("ServiceProviderName", None, "ServiceProviderName is null"),
    ("HostProviderName", None, "HostProviderName is null"),
    ("AllocatedResourceId", None, "AllocatedResourceId is null on an allocated row"),  # row 1 is a PTU share
    ("AllocatedMethodId", None, "is set on a row that is not allocated"),
])
def test_the_conformance_check_catches_seeded_mistakes(world: World, column: str, value: object,
                                                       words: str) -> None:
    table = pq.read_table(world.out / PARQUET)
    problems = check_table(mutate(table, column, value))
    assert any(words in problem for problem in problems), problems


def test_the_conformance_check_catches_schema_mistakes(world: World) -> None:
    table = pq.read_table(world.out / PARQUET)
    assert any("mandatory column BilledCost is missing" in p for p in check_table(table.drop_columns(["BilledCost"])))
    renamed = table.rename_columns([("CostCenter" if n == "x_CostCenter" else n) for n in table.column_names])
    assert any("neither a FOCUS column nor prefixed x_" in p for p in check_table(renamed))
    billed = table.column_names.index("BilledCost")
    as_float = table.set_column(billed, pa.field("BilledCost", pa.float64()),
                                table.column(billed).cast(pa.float64()))
    assert any("BilledCost: type double" in p for p in check_table(as_float))
    header, rows = read_csv(world.out / f"chargeback-{MONTH}-focus.csv")
    bad = [dict(rows[0], ChargePeriodStart="2026-10-01 00:00:00", BilledCost="1,000.00"), *rows[1:]]
    problems = check_csv(header, bad)
    assert any("not YYYY-MM-DDTHH:mm:ssZ" in p for p in problems)
    assert any("Numeric Format" in p for p in problems)


def test_billing_account_comes_from_the_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_FOCUS_BILLING_ACCOUNT_ID", "/providers/Microsoft.Billing/billingAccounts/123")
    monkeypatch.setenv("CHARGEBACK_FOCUS_BILLING_ACCOUNT_NAME", "Contoso")
    world.report("focus")
    rows = pq.read_table(world.out / PARQUET).to_pylist()
    assert {(r["BillingAccountId"], r["BillingAccountName"]) for r in rows} == {
        ("/providers/Microsoft.Billing/billingAccounts/123", "Contoso")}


@pytest.mark.parametrize(("recorded", "charge_class"), [
    (datetime(2026, 10, 20, tzinfo=UTC), None),  # within the billing period: a regular charge
    (datetime(2026, 11, 3, tzinfo=UTC), "Correction"),  # after it: a correction to an invoiced period
])
def test_charge_class_correction_only_for_corrections_recorded_after_the_period(
        world: World, recorded: datetime, charge_class: str | None) -> None:
    from pipeline.app import open_store, settings_reference
    from pipeline.domain.corrections import Corrections, Kind, correction
    from pipeline.lake.areas import SNAPSHOTS
    from pipeline.lake.warehouse import open_warehouse
    from pipeline.settings import Settings
    from pipeline.stages.report.build import build_report
    from pipeline.stages.report.focus import focus_rows

    settings = Settings.from_env()
    reassign = correction(kind=Kind.REASSIGN, reason="r", by="tester", at=recorded, subscription_id="sub-b",
                          cost_center="CC-X", start=datetime(2026, 10, 21, tzinfo=UTC),
                          end=datetime(2026, 10, 22, tzinfo=UTC))
    reference = settings_reference(settings)
    report = build_report(open_warehouse(open_store(settings, SNAPSHOTS), reference), reference, MONTH,
                          Corrections((reassign,)))
    moved = [r for r in focus_rows(report) if r["x_CostCenter"] == "CC-X"]
    assert {r["SkuMeter"] for r in moved} == {"Input Tokens", "Cached Input Tokens", "Output Tokens"}
    assert {(r["ChargeClass"], r["x_CorrectionIds"]) for r in moved} == {(charge_class, reassign.id)}
    assert {row.charge_class for row in report.rows if row.cost_center == "CC-X"} == {"Correction"}  # the CSV


def test_focus_1_2_is_the_output_of_the_release_before(world: World) -> None:
    world.report("focus-1.2")
    csv_key, parquet_key, manifest = focus_keys(MONTH, "1.2")
    assert (csv_key, parquet_key, manifest) == (f"chargeback-{MONTH}-focus-1.2.csv",
                                                f"chargeback-{MONTH}-focus-1.2.parquet", None)
    # what `--format focus` wrote before FOCUS 1.3 (only the file names differ: 1.2 is never in
    # the hubs layout, where the month's 1.3 Parquet is): the same CSV bytes, and a Parquet of the
    # same schema, metadata and values (now written a row group per day, so not the same bytes)
    assert (world.out / csv_key).read_bytes() == (BEFORE_1_3 / f"chargeback-{MONTH}-focus.csv").read_bytes()
    before = pq.read_table(BEFORE_1_3 / f"chargeback-{MONTH}-focus.parquet")
    assert pq.read_table(world.out / parquet_key).equals(before, check_metadata=True)
    assert pq.ParquetFile(world.out / parquet_key).metadata.num_row_groups == len(
        set(before.column("ChargePeriodStart").to_pylist()))
    table = pq.read_table(world.out / parquet_key)
    assert check_table_of(table, COLUMNS) == [] and table.column_names == list(COLUMN_NAMES_1_2)
    assert pq.read_schema(world.out / parquet_key).metadata[b"FocusVersion"] == b"1.2"
    assert sum((r["BilledCost"] for r in table.to_pylist()), Decimal(0)) == TOTAL


def test_ptu_rows_are_allocated_from_their_deployment_day(world: World) -> None:
    rows = pq.read_table(world.out / PARQUET).to_pylist()
    payg = [r for r in rows if r["x_ChargeKind"] == "PayAsYouGo"]
    assert payg and all(r[c] is None for r in payg for c in (
        "AllocatedMethodId", "AllocatedMethodDetails", "AllocatedResourceId", "AllocatedResourceName",
        "AllocatedTags", "ResourceId"))
    ptu = [r for r in rows if r["x_ChargeKind"] != "PayAsYouGo"]
    ratios: dict[object, Decimal] = {}
    for row in ptu:
        [element] = json.loads(row["AllocatedMethodDetails"], parse_float=Decimal)["Elements"]
        ratios[row["ChargePeriodStart"]] = ratios.get(row["ChargePeriodStart"], Decimal(0)) + element["AllocatedRatio"]
        assert (row["ResourceId"], row["ResourceName"]) == ("dep-ptu", "dep-ptu")
        assert row["AllocatedMethodId"] == ("chargeback-ptu-idle-owner" if row["x_ChargeKind"] == "ProvisionedIdle"
                                            else "chargeback-ptu-weighted-tokens")
        assert row["AllocatedResourceName"] == row["x_CostCenter"]
    assert ratios == {datetime(2026, 10, 1, tzinfo=UTC): 1, datetime(2026, 10, 2, tzinfo=UTC): 1}
    by_center = {r["x_CostCenter"]: r for r in ptu if r["ChargePeriodStart"].day == 1}
    # 6.50 + 17.50 + 48 = 72: 6.5 / 72 = 0.090277777777(7...) to 12 decimals; the owner's 48 / 72 takes the rest
    assert by_center["CC-A"]["AllocatedMethodDetails"].startswith('{"Elements":[{"AllocatedRatio":0.090277777778,')
    assert by_center["CC-A"]["AllocatedResourceId"] == "apim-subscription/sub-a"
    assert by_center["CC-OWNER"]["AllocatedResourceId"] == "cost-center/CC-OWNER"
    assert json.loads(by_center["CC-A"]["AllocatedTags"]) == {"chargeback/apimSubscription": "sub-a",
                                                              "chargeback/costCenter": "CC-A"}


def test_the_allocation_check_catches_ratios_that_do_not_sum_to_one(world: World) -> None:
    table = pq.read_table(world.out / PARQUET)
    rows = table.to_pylist()
    first = next(i for i, r in enumerate(rows) if r["AllocatedMethodId"])
    rows[first]["AllocatedMethodDetails"] = '{"Elements":[{"AllocatedRatio":0.5,"Weight":1}]}'
    problems = check_table(pa.Table.from_pylist(rows, schema=table.schema))
    assert any("sum to" in p for p in problems), problems
    assert any("'Weight' is not FOCUS-defined" in p for p in problems), problems


def test_a_re_export_replaces_the_hubs_file_and_focus_1_2_stays_out_of_the_hubs_folder(world: World) -> None:
    world.report("csv", "focus", "focus-1.2")
    world.report("csv", "focus", "focus-1.2")
    assert sorted(p.name for p in (world.out / HUBS).iterdir()) == [Path(PARQUET).name, "manifest.json"]


def test_a_pre_1_3_hubs_file_is_removed_by_the_next_export(world: World) -> None:
    world.report("focus")
    folder = next((world.out / "ingestion").rglob("manifest.json")).parent
    legacy = folder / f"chargeback-{MONTH}-focus.parquet"  # what releases before FOCUS 1.3 wrote
    legacy.write_bytes(b"PAR1 an export of an earlier release")
    world.report("focus")
    assert sorted(p.name for p in folder.iterdir()) == [
        f"apim-openai-chargeback-{MONTH}__chargeback-{MONTH}-focus.parquet", "manifest.json"]


NAMES = [None, 'cc, "3"', "", " padded ", "line\nbreak", "carriage\rreturn", "nul\x00byte", "ünïcødé", 'a"b']


def test_the_csv_writes_every_value_as_the_cell_formatter_does() -> None:
    """render_csv has DuckDB write the cells: each must be what the project's csv writer writes
    of what `csv_value` makes of its value (nulls, zero, negative and tiny
    decimals, whole amounts, flags, counts, instants, text that needs quotes, a lone carriage
    return among them, and text that does not), and read back by a CSV reader."""
    from pipeline.stages.report.focus import AMOUNT, INSTANT
    from pipeline.stages.report.focus_csv import csv_value, render_csv

    amounts = [None, Decimal(0), Decimal("-1.5"), Decimal("0.000000000001"), Decimal("1500"), Decimal("12.340")]
    instants = [None, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)]
    size = 8_200  # more than one slice of 8,192 rows
    table = pa.table({
        "cost": pa.array([amounts[i % len(amounts)] for i in range(size)], AMOUNT),
        "whole": pa.array([None if i % 6 == 0 else Decimal(i * 10) for i in range(size)], pa.decimal128(38, 0)),
        "at": pa.array([instants[i % len(instants)] for i in range(size)], INSTANT),
        "name": pa.array([NAMES[i % len(NAMES)] for i in range(size)], pa.string()),
        "flag": pa.array([(None, True, False)[i % 3] for i in range(size)], pa.bool_()),
        "count": pa.array([None if i % 4 == 0 else i - 100 for i in range(size)], pa.int64()),
    })
    expected = [table.column_names, *([csv_value(value) for value in row.values()] for row in table.to_pylist())]
    written = render_csv(table)  # made by DuckDB: byte for byte what the project's csv writer makes
    assert written == csv_table_bytes(expected[0], expected[1:])
    assert list(csv.reader(io.StringIO(written.decode(), newline=""))) == expected
    breaks = sum(NAMES[i % len(NAMES)] == "line\nbreak" for i in range(size))
    assert written.endswith(b"\n") and written.count(b"\n") == 1 + size + breaks
    assert b',"cc, ""3""",' in written and b',"line\nbreak",' in written and b',"carriage\rreturn",' in written
    assert {row["cost"] for row in csv.DictReader(io.StringIO(written.decode()))} == {
        "", "0", "-1.5", "0.000000000001", "1500", "12.34"}
