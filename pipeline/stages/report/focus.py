"""FOCUS 1.3 export of a month's report (format `focus`; `focus-1.2` the FOCUS 1.2 export of
earlier releases, unchanged): the shape finance tools and the Microsoft FinOps hubs read.

One row per cost center x APIM subscription x model x meter x day, where a meter is one priced
token kind (uncached input, cached input, output) at one catalog price, or one provisioned
deployment's PTU-hours allocated to that cost center (`x_ChargeKind` ProvisionedAllocation) or
left idle and charged to its owner (ProvisionedIdle). Unpriced usage has no cost to state and
is not exported (it is in the report's `-unpriced.csv`): so the sum of `BilledCost` equals the
report's total, pay-as-you-go plus PTU, to the last digit.

Column values follow the FOCUS 1.2 column definitions (FinOps Foundation, FOCUS_Spec,
`specification/columns/`; checked by tests/test_focus.py); FOCUS 1.3 (ratified 2025-12-05,
Cost and Usage dataset) keeps them and adds the provider and split cost allocation columns of
pipeline.stages.report.focus_allocation (ServiceProviderName, HostProviderName, ResourceId and
ResourceName of the PTU deployment, Allocated* on PTU rows); the 1.2 rows are the 1.3 rows
without those columns, so `focus-1.2` is byte for byte the export of earlier releases:
- costs are exact decimals (Parquet decimal128(38, 12); CSV plain decimal text, no exponent);
  ListCost = ListUnitPrice x PricingQuantity exactly. Token meters are priced per
  `1000000 Tokens` (PricingQuantity = tokens / 1,000,000; ConsumedQuantity = tokens), so
  ListCost = BilledCost; PTU rows are priced per `PTU-Hours`, their PricingQuantity being the
  allocated amount / price per PTU-hour rounded to 6 decimals (ListCost may then differ from
  BilledCost, the allocated amount, in the 7th decimal). There are no negotiated or commitment
  discounts here: ContractedCost = EffectiveCost = BilledCost.
- date-times are UTC (`2026-10-05T00:00:00Z` in CSV, timestamp[s, UTC] in Parquet); the charge
  period is the UTC day, the billing period the month.
- ChargeClass is `Correction` on lines a recorded correction set (pipeline.domain.corrections)
  when that correction was recorded after the billing period ended (a correction to a
  previously invoiced period), else null, as chargeclass.md requires: a correction recorded within
  the month is part of the month's regular charges (its ids stay in `x_CorrectionIds`; the report
  CSV marks every corrected line). ChargeCategory `Usage`; ServiceCategory `AI and Machine
  Learning`.
- Tags and SkuPriceDetails are JSON objects (string keys, scalar values); Tags carries the
  provider-defined `chargeback/` keys.
- our own columns start with `x_`, after the FOCUS columns.

Files: `chargeback-YYYY-MM-focus.csv`, and the same rows as Parquet where a FinOps hub ingests
custom FOCUS data,
`ingestion/Costs/{yyyy}/{mm}/apim-openai-chargeback/{ingestion-id}__chargeback-YYYY-MM-focus.parquet`,
followed by an empty `manifest.json` in that folder (hubs with Data Explorer start ingesting a
custom folder when its manifest.json appears, so it is written last). The layout and the
`{ingestion-id}__{original-file-name}` name are the FinOps toolkit's ("About the ingestion
container", microsoft/finops-toolkit docs, hubs data processing): the folder path and the
ingestion id keep data from being duplicated, so the id is the same on every export of a month
(pipeline.stages.report.restate.ingestion_id) and a re-export overwrites the one file.
`focus-1.2` writes `chargeback-YYYY-MM-focus-1.2.csv` and `.parquet` next to the report, never in
the hubs folder (one dataset of a month there, not two versions of it). Copy the `ingestion/` tree
into the hub's storage account as it is. A report of a range of days
(`chargeback-2026-10-05_2026-10-20-focus.csv`) has its Parquet next to its CSV and no manifest: a hub
replaces a month folder's data with what it finds there, so a part of a month must not land in it.
Each row's billing period is the calendar month of its day, in a range as in a month.
"""

from __future__ import annotations

import functools
import json
import operator
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Protocol

import pyarrow as pa

from pipeline.domain.costing import CORRECTION, CostLine
from pipeline.domain.periods import is_month_label, midnight, month_start, next_month
from pipeline.domain.pricing import MONEY, STANDARD, TOKENS_PER_UNIT, Price
from pipeline.stages.report.focus_allocation import (
    ADDED_COLUMNS,
    HOST_PROVIDER,
    SERVICE_PROVIDER,
    capacity_rows,
    tags_json,
    true_up_rows,
)
from pipeline.stages.report.model import Report
from pipeline.stages.report.restate import FOCUS_1_2, focus_keys_of

FOCUS_VERSION = "1.3"  # format `focus`; `focus-1.2` writes the FOCUS 1.2 rows of earlier releases
PROVIDER = "Microsoft"
SERVICE_NAME = "Azure OpenAI"
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
TOKEN_UNIT = "1000000 Tokens"
CONSUMED_TOKEN_UNIT = "Tokens"
PAY_AS_YOU_GO = "PayAsYouGo"

_midnight = functools.cache(midnight)  # a few days: each row's four period bounds
AMOUNT = pa.decimal128(38, 12)
INSTANT = pa.timestamp("s", tz="UTC")
# FOCUS columns first (alphabetical), then ours (x_). Types from the spec's column definitions.
FOCUS_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("BilledCost", AMOUNT), ("BillingAccountId", pa.string()), ("BillingAccountName", pa.string()),
    ("BillingCurrency", pa.string()), ("BillingPeriodEnd", INSTANT), ("BillingPeriodStart", INSTANT),
    ("ChargeCategory", pa.string()), ("ChargeClass", pa.string()), ("ChargeDescription", pa.string()),
    ("ChargeFrequency", pa.string()), ("ChargePeriodEnd", INSTANT), ("ChargePeriodStart", INSTANT),
    ("ConsumedQuantity", AMOUNT), ("ConsumedUnit", pa.string()), ("ContractedCost", AMOUNT),
    ("EffectiveCost", AMOUNT), ("InvoiceIssuerName", pa.string()), ("ListCost", AMOUNT),
    ("ListUnitPrice", AMOUNT), ("PricingCategory", pa.string()), ("PricingQuantity", AMOUNT),
    ("PricingUnit", pa.string()), ("ProviderName", pa.string()), ("PublisherName", pa.string()),
    ("ServiceCategory", pa.string()), ("ServiceName", pa.string()), ("ServiceSubcategory", pa.string()),
    ("SkuId", pa.string()), ("SkuMeter", pa.string()), ("SkuPriceDetails", pa.string()),
    ("SkuPriceId", pa.string()), ("Tags", pa.string()),
)
EXTRA_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("x_CostCenter", pa.string()), ("x_ApimSubscriptionId", pa.string()), ("x_Model", pa.string()),
    ("x_DeploymentType", pa.string()), ("x_Deployment", pa.string()), ("x_ChargeKind", pa.string()),
    ("x_PriceCatalogVersion", pa.string()), ("x_CapacityVersion", pa.string()),
    ("x_SourceEventCount", pa.int64()), ("x_CorrectionIds", pa.string()),
)
FOCUS_1_3_COLUMNS = tuple(sorted(FOCUS_COLUMNS + ADDED_COLUMNS))
# ours since 1.3 (not in focus-1.2, which keeps the columns of earlier releases): the service tier
# a pay-as-you-go row is billed at, and whether it is spilled-over usage of a provisioned deployment
EXTRA_1_3_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (("x_ServiceTier", pa.string()), ("x_Spillover", pa.bool_()))


def _schema(columns: tuple[tuple[str, pa.DataType], ...], version: str,
            extra: tuple[tuple[str, pa.DataType], ...] = ()) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in columns + EXTRA_COLUMNS + extra],
                     metadata={b"FocusVersion": version.encode(), b"DataGenerator": b"apim-openai-chargeback"})


SCHEMAS = {"1.3": _schema(FOCUS_1_3_COLUMNS, "1.3", EXTRA_1_3_COLUMNS), "1.2": _schema(FOCUS_COLUMNS, "1.2")}
FOCUS_SCHEMA = SCHEMAS[FOCUS_VERSION]
_NO_VALUES: dict[str, Any] = dict.fromkeys(name for schema in SCHEMAS.values() for name in schema.names)
COLUMN_NAMES = tuple(FOCUS_SCHEMA.names)
COLUMN_NAMES_1_2 = tuple(SCHEMAS["1.2"].names)



class _Tokens(Protocol):
    """Token counts of a cost line, or of a group of them (the meters are sums of the lines')."""

    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    audio_prompt_tokens: int
    audio_completion_tokens: int


def _uncached(line: _Tokens) -> int:
    return line.prompt_tokens - line.cached_tokens - line.audio_prompt_tokens


def _cached(line: _Tokens) -> int:
    return line.cached_tokens


def _completion(line: _Tokens) -> int:
    return line.completion_tokens - line.audio_completion_tokens


def _audio_prompt(line: _Tokens) -> int:
    return line.audio_prompt_tokens


def _audio_completion(line: _Tokens) -> int:
    return line.audio_completion_tokens


def _input_price(price: Price) -> Decimal:
    return price.input_per_1m


def _cached_price(price: Price) -> Decimal:
    return price.cached_input_per_1m


def _output_price(price: Price) -> Decimal:
    return price.output_per_1m


def _audio_input_price(price: Price) -> Decimal:
    return price.audio_input_per_1m or Decimal(0)  # a line with audio tokens is priced only with its price


def _audio_output_price(price: Price) -> Decimal:
    return price.audio_output_per_1m or Decimal(0)


# token meters: (SkuMeter, kind, tokens of a line, price per 1M tokens)
_METERS: tuple[tuple[str, str, Callable[[_Tokens], int], Callable[[Price], Decimal]], ...] = (
    ("Input Tokens", "input", _uncached, _input_price),
    ("Cached Input Tokens", "cached-input", _cached, _cached_price),
    ("Output Tokens", "output", _completion, _output_price),
    ("Audio Input Tokens", "audio-input", _audio_prompt, _audio_input_price),
    ("Audio Output Tokens", "audio-output", _audio_completion, _audio_output_price),
)


@dataclass(frozen=True, slots=True)
class FocusContext:
    """Who the data is about: the billing account of the rows. Settings (CHARGEBACK_FOCUS_BILLING_
    ACCOUNT_ID and _NAME) name your Azure billing account (its fully-qualified id) so that the
    rows join Microsoft's own exports."""

    billing_account_id: str = "apim-openai-chargeback"
    billing_account_name: str = "APIM OpenAI chargeback"


def focus_rows(report: Report, context: FocusContext | None = None,
               version: str = FOCUS_VERSION) -> list[dict[str, Any]]:
    """The period's FOCUS rows (of FOCUS `version`), sorted by day, cost center, subscription,
    model and meter. The billing period of a row is the calendar month of its day, also in a
    report of a range. The 1.2 rows are the 1.3 rows without the columns 1.3 added."""
    rows: list[dict[str, Any]] = focus_table(report, context, version).to_pylist()
    return rows


def focus_table(report: Report, context: FocusContext | None = None, version: str = FOCUS_VERSION) -> pa.Table:
    """`focus_rows` as a table of the version's schema, built column by column, a day at a time."""
    tables = list(focus_day_tables(report, context, version))
    return pa.concat_tables(tables) if tables else SCHEMAS[version].empty_table()


def focus_day_tables(report: Report, context: FocusContext | None = None,
                     version: str = FOCUS_VERSION) -> Iterator[pa.Table]:
    """The rows of `focus_table`, one day's at a time: the day's token rows and its capacity and
    true-up rows each made a table column by column (a column the same on every token row of the
    day, repeated in Arrow), then sorted together in Arrow (a stable sort, as `focus_rows`)."""
    import pyarrow.compute as pc  # here: the report's other formats do not need it

    schema = SCHEMAS[version]
    for day in _rows_by_day(report, context):
        parts = [_table(schema, day.constants, rows) for rows in (day.tokens, day.others) if rows]
        if not parts:  # a day of unpriced usage only
            continue
        table = pa.concat_tables(parts)
        keys = pa.table({name: pc.fill_null(table.column(name), "") if pa.types.is_string(table.schema.field(name).type)
                         else table.column(name) for name in _ORDER})
        yield table.take(pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in _ORDER]))


_ORDER = ("ChargePeriodStart", "x_CostCenter", "x_ApimSubscriptionId", "x_Model", "SkuPriceId", "ChargeClass")


def _table(schema: pa.Schema, constants: dict[str, Any], rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of one shape (the keys of the first; a key they lack has its `constants` value) as a
    table of the schema: their own keys column by column, the others repeated."""
    count, own = len(rows), rows[0].keys()
    columns = [pa.array(list(map(operator.itemgetter(f.name), rows)), f.type) if f.name in own
               else pa.nulls(count, f.type) if constants[f.name] is None
               else pa.repeat(pa.scalar(constants[f.name], f.type), count) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass(frozen=True, slots=True)
class _Day:
    """A day's FOCUS rows: the values every row of the day has (`constants`: every column of either
    version, null where none), its pay-as-you-go token rows (one shape, their own values only) and
    its capacity and true-up rows (a few, each with every column)."""

    constants: dict[str, Any]
    tokens: list[dict[str, Any]]
    others: list[dict[str, Any]]


def _rows_by_day(report: Report, context: FocusContext | None) -> Iterator[_Day]:
    """The FOCUS rows a day at a time, the days in order (each day's rows are sorted when made
    a table, so all of them are sorted as one)."""
    context = context or FocusContext()
    common = {**_NO_VALUES, "ServiceProviderName": SERVICE_PROVIDER, "HostProviderName": HOST_PROVIDER,
        "BillingAccountId": context.billing_account_id, "BillingAccountName": context.billing_account_name,
        "ChargeCategory": "Usage", "InvoiceIssuerName": PROVIDER, "ProviderName": PROVIDER,
        "PublisherName": PROVIDER, "ServiceCategory": SERVICE_CATEGORY, "ServiceName": SERVICE_NAME,
        "ServiceSubcategory": SERVICE_SUBCATEGORY, "PricingCategory": "Standard",
    }
    lines_of: dict[date, list[CostLine]] = defaultdict(list)
    for line in report.lines:
        lines_of[line.key.day].append(line)
    others: dict[date, list[dict[str, Any]]] = defaultdict(list)  # capacity and true-up rows: few
    for row in (*capacity_rows(report.deployment_days, report.capacity_version), *true_up_rows(report.true_ups)):
        others[row["ChargePeriodStart"].date()].append(row)
    recorded = {c.id: c.at for c in report.corrections}
    for day in sorted(lines_of.keys() | others.keys()):
        start, end = _midnight(month_start(day)), _midnight(next_month(day))
        constants = {**common, "BillingPeriodStart": start, "BillingPeriodEnd": end}
        tokens = list(_token_rows(lines_of.get(day, [])))
        rest = [{**constants, **row} for row in others.get(day, [])]
        for row in (*tokens, *rest):
            if row["ChargeClass"] == CORRECTION:
                ids = set((row["x_CorrectionIds"] or "").split(";")) - {""}
                if not any(recorded[i] >= end for i in ids if i in recorded):  # recorded before the period ended
                    row["ChargeClass"] = None  # a correction within the billing period: a regular charge
        yield _Day(constants, tokens, rest)


def focus_keys(label: str, version: str = FOCUS_VERSION) -> tuple[str, str, str | None]:
    """(CSV, Parquet, hubs manifest) keys of a period's FOCUS files: a month's 1.3 Parquet and
    manifest in the hubs layout; a range of days, and FOCUS 1.2, have their Parquet next to the CSV
    and no manifest (one dataset per month in a hub, never two versions of it)."""
    csv_key, parquet_key = focus_keys_of(label, FOCUS_1_2 if version == "1.2" else "focus")
    in_hubs = is_month_label(label) and version != "1.2"
    return csv_key, parquet_key, f"{parquet_key.rpartition('/')[0]}/manifest.json" if in_hubs else None


@dataclass(slots=True)
class _Group:
    """The summed lines of one FOCUS key (a _Tokens: each meter's tokens are those of the sums)."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    audio_prompt_tokens: int = 0
    audio_completion_tokens: int = 0
    corrections: frozenset[str] = frozenset()


def _token_rows(lines: list[CostLine]) -> Iterator[dict[str, Any]]:
    """Priced pay-as-you-go lines, grouped by day x cost center x subscription x model x price."""
    groups: dict[tuple[Any, ...], _Group] = defaultdict(_Group)
    for line in lines:
        resolved, price = line.resolution, line.resolution.price
        if price is None:  # unpriced, or provisioned (its cost is in the capacity rows)
            continue
        key = (line.key.day, resolved.cost_center, line.key.subscription_id, resolved.model or "",
               resolved.deployment_type or "", price, resolved.catalog_version, resolved.charge_class,
               resolved.service_tier, resolved.spillover)
        group = groups[key]
        group.requests += line.requests
        group.prompt_tokens += line.prompt_tokens
        group.cached_tokens += line.cached_tokens
        group.completion_tokens += line.completion_tokens
        group.audio_prompt_tokens += line.audio_prompt_tokens
        group.audio_completion_tokens += line.audio_completion_tokens
        if resolved.corrections:
            group.corrections |= set(resolved.corrections)
    for (day, cost_center, subscription, model, deployment_type, price, catalog, charge_class, tier,
         spilled), group in groups.items():
        for meter, kind, tokens_of, unit_price in _METERS:
            tokens = tokens_of(group)
            if tokens == 0:
                continue
            row = _token_row(day, cost_center, subscription, model, deployment_type, price, catalog, charge_class,
                             group, meter, kind, tokens, unit_price(price))
            row["x_ServiceTier"], row["x_Spillover"] = tier or None, spilled
            if spilled:
                _mark_spilled(row)
            yield row


def _token_row(day: date, cost_center: str, subscription: str, model: str, deployment_type: str, price: Price,
               catalog: str, charge_class: str, group: _Group, meter: str, kind: str, tokens: int,
               unit_price: Decimal) -> dict[str, Any]:
    quantity = MONEY.divide(tokens, TOKENS_PER_UNIT)
    cost = MONEY.multiply(quantity, unit_price)
    sku = f"{price.model}/{price.deployment_type}"
    tier = "" if price.service_tier == STANDARD else f"{price.service_tier}/"
    return {
        "BilledCost": cost, "ContractedCost": cost, "EffectiveCost": cost, "ListCost": cost,
        "ListUnitPrice": unit_price, "PricingQuantity": quantity, "PricingUnit": TOKEN_UNIT,
        "ConsumedQuantity": Decimal(tokens), "ConsumedUnit": CONSUMED_TOKEN_UNIT,
        "BillingCurrency": price.currency, "ChargeClass": CORRECTION if charge_class else None,
        "ChargeDescription": f"{model} {deployment_type} {meter.lower()} for {cost_center}",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": _midnight(day), "ChargePeriodEnd": _midnight(day + timedelta(days=1)),
        "SkuId": sku, "SkuMeter": meter,
        # a tier other than standard is a price of its own: in the price id and its details
        "SkuPriceId": f"{sku}/{price.region}/{tier}{kind}/{price.effective_from}@{catalog}",
        "SkuPriceDetails": _price_details(price, kind),
        "Tags": tags_json(cost_center, subscription),
        "x_CostCenter": cost_center, "x_ApimSubscriptionId": subscription or None, "x_Model": model,
        "x_DeploymentType": deployment_type, "x_Deployment": None, "x_ChargeKind": PAY_AS_YOU_GO,
        "x_PriceCatalogVersion": catalog, "x_CapacityVersion": None, "x_SourceEventCount": group.requests,
        "x_CorrectionIds": ";".join(sorted(group.corrections)) or None,
    }


@functools.cache  # one text per price and token kind, not per row
def _price_details(price: Price, kind: str) -> str:
    tiered = price.service_tier != STANDARD
    details = {"x_TokenKind": kind, "x_Region": price.region, "x_EffectiveFrom": price.effective_from.isoformat(),
               **({"x_ServiceTier": price.service_tier} if tiered else {})}
    return json.dumps(details, sort_keys=True, separators=(",", ":"))


def _mark_spilled(row: dict[str, Any]) -> None:
    """Spilled-over usage of a provisioned deployment, billed at its spillover deployment's price."""
    details = json.loads(row["SkuPriceDetails"])
    details["x_Spillover"] = True
    row["SkuPriceDetails"] = json.dumps(details, sort_keys=True, separators=(",", ":"))
