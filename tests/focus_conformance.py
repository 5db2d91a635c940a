"""A FOCUS 1.2 and 1.3 conformance check, written from the specification's column definitions and
attributes (FinOps Foundation, FOCUS_Spec at tag v1.2: `specification/columns/*.md` and
`specification/attributes/*.md`), for the export of pipeline.stages.report.focus.

`focus-validator` cannot be the judge: its only release installable on Python 3.11 (1.0.0)
predates the FOCUS 1.0 column names and fails valid files.

What is checked, per the spec text (MUST unless marked SHOULD):
- every Mandatory column is present; every other column is a FOCUS 1.2 column or starts with `x_`
  (ColumnHandling), FOCUS columns come first (SHOULD) and custom ones are PascalCase after `x_`;
- types: Decimal columns are decimals, Date/Time columns UTC date-times, String columns strings,
  JSON columns serialized JSON objects (Parquet); in CSV, numbers match NumericFormat and
  date-times the extended ISO 8601 form `YYYY-MM-DDTHH:mm:ssZ` (DateTimeFormat);
- "Allows nulls: False" columns have no nulls; empty strings are never used for a value
  (NullHandling); the conditional nullability rules of ChargeClass, PricingQuantity and
  PricingUnit, ConsumedQuantity and ConsumedUnit, ListUnitPrice, PricingCategory, SkuId,
  SkuPriceId, SkuMeter and SkuPriceDetails;
- allowed values of ChargeCategory, ChargeClass, ChargeFrequency, PricingCategory,
  ServiceCategory and ServiceSubcategory (with its one parent category);
- BillingCurrency is an ISO 4217 national currency code (CurrencyFormat);
- Tags and SkuPriceDetails are JSON objects with unique keys and scalar values
  (KeyValueFormat), SkuPriceDetails keys start with `x_` (no FOCUS-defined properties are used);
- PricingUnit and ConsumedUnit follow UnitFormat (SHOULD);
- ListCost = ListUnitPrice x PricingQuantity when both are not null and the row is not a
  correction; ListUnitPrice and ContractedUnitPrice are non-negative; the charge period lies in
  the billing period, start before end.

FOCUS 1.3 (ratified 2025-12-05; Cost and Usage dataset, `specification/datasets/cost_and_usage/`):
the same rules over its column table (COLUMNS_1_3: ServiceProviderName and HostProviderName
Mandatory and not null, ProviderName and PublisherName DEPRECATED but still Mandatory, the
Allocated* and ContractApplied columns Conditional), and check_allocations: AllocatedMethodDetails
is a JSON object whose only non-`x_` key is `Elements`, an array of objects with a Decimal
`AllocatedRatio` (NumericFormat), `UsageUnit` present whenever `UsageQuantity` is, other keys `x_`;
the Allocated* columns are null on rows that are not allocated and AllocatedMethodId and
AllocatedResourceId are set on those that are; AllocatedTags follows KeyValueFormat; and the
AllocatedRatio values of all rows allocated from one origin charge sum to exactly 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from pipeline.domain.currencies import is_currency
from tests.focus_allocations import ALLOCATED, check_allocations

# specification/columns/*.md at v1.2: Column ID -> (Feature level, Allows nulls, Data type)
COLUMNS: dict[str, tuple[str, bool, str]] = {
    "AvailabilityZone": ("Recommended", True, "String"),
    "BilledCost": ("Mandatory", False, "Decimal"),
    "BillingAccountId": ("Mandatory", False, "String"),
    "BillingAccountName": ("Mandatory", True, "String"),
    "BillingAccountType": ("Conditional", False, "String"),
    "BillingCurrency": ("Mandatory", False, "String"),
    "BillingPeriodEnd": ("Mandatory", False, "Date/Time"),
    "BillingPeriodStart": ("Mandatory", False, "Date/Time"),
    "CapacityReservationId": ("Conditional", True, "String"),
    "CapacityReservationStatus": ("Conditional", True, "String"),
    "ChargeCategory": ("Mandatory", False, "String"),
    "ChargeClass": ("Mandatory", True, "String"),
    "ChargeDescription": ("Mandatory", True, "String"),
    "ChargeFrequency": ("Recommended", False, "String"),
    "ChargePeriodEnd": ("Mandatory", False, "Date/Time"),
    "ChargePeriodStart": ("Mandatory", False, "Date/Time"),
    "CommitmentDiscountCategory": ("Conditional", True, "String"),
    "CommitmentDiscountId": ("Conditional", True, "String"),
    "CommitmentDiscountName": ("Conditional", True, "String"),
    "CommitmentDiscountQuantity": ("Conditional", True, "Decimal"),
    "CommitmentDiscountStatus": ("Conditional", True, "String"),
    "CommitmentDiscountType": ("Conditional", True, "String"),
    "CommitmentDiscountUnit": ("Conditional", True, "String"),
    "ConsumedQuantity": ("Conditional", True, "Decimal"),
    "ConsumedUnit": ("Conditional", True, "String"),
    "ContractedCost": ("Mandatory", False, "Decimal"),
    "ContractedUnitPrice": ("Conditional", True, "Decimal"),
    "EffectiveCost": ("Mandatory", False, "Decimal"),
    "InvoiceId": ("Recommended", True, "String"),
    "InvoiceIssuerName": ("Mandatory", False, "String"),
    "ListCost": ("Mandatory", False, "Decimal"),
    "ListUnitPrice": ("Conditional", True, "Decimal"),
    "PricingCategory": ("Conditional", True, "String"),
    "PricingCurrency": ("Conditional", True, "String"),
    "PricingCurrencyContractedUnitPrice": ("Conditional", True, "Decimal"),
    "PricingCurrencyEffectiveCost": ("Conditional", True, "Decimal"),
    "PricingCurrencyListUnitPrice": ("Conditional", True, "Decimal"),
    "PricingQuantity": ("Mandatory", True, "Decimal"),
    "PricingUnit": ("Mandatory", True, "String"),
    "ProviderName": ("Mandatory", False, "String"),
    "PublisherName": ("Mandatory", False, "String"),
    "RegionId": ("Conditional", True, "String"),
    "RegionName": ("Conditional", True, "String"),
    "ResourceId": ("Conditional", True, "String"),
    "ResourceName": ("Conditional", True, "String"),
    "ResourceType": ("Conditional", True, "String"),
    "ServiceCategory": ("Mandatory", False, "String"),
    "ServiceName": ("Mandatory", False, "String"),
    "ServiceSubcategory": ("Recommended", False, "String"),
    "SkuId": ("Conditional", True, "String"),
    "SkuMeter": ("Conditional", True, "String"),
    "SkuPriceDetails": ("Conditional", True, "JSON"),
    "SkuPriceId": ("Conditional", True, "String"),
    "SubAccountId": ("Conditional", True, "String"),
    "SubAccountName": ("Conditional", True, "String"),
    "SubAccountType": ("Conditional", True, "String"),
    "Tags": ("Conditional", True, "JSON"),
}
MANDATORY = sorted(name for name, (level, _, _) in COLUMNS.items() if level == "Mandatory")
# the Cost and Usage dataset's column table at 1.3: the 1.2 columns and these
COLUMNS_1_3: dict[str, tuple[str, bool, str]] = {
    **COLUMNS,
    "AllocatedMethodDetails": ("Recommended", True, "JSON"),
    "AllocatedMethodId": ("Conditional", True, "String"),
    "AllocatedResourceId": ("Conditional", True, "String"),
    "AllocatedResourceName": ("Conditional", True, "String"),
    "AllocatedTags": ("Conditional", True, "JSON"),
    "ContractApplied": ("Conditional", True, "JSON"),
    "HostProviderName": ("Mandatory", False, "String"),
    "ServiceProviderName": ("Mandatory", False, "String"),
}
MANDATORY_1_3 = sorted(name for name, (level, _, _) in COLUMNS_1_3.items() if level == "Mandatory")

# Allowed values (chargecategory.md, chargeclass.md, chargefrequency.md, pricingcategory.md,
# servicesubcategory.md, whose parent categories are exactly servicecategory.md's values).
CHARGE_CATEGORIES = {"Usage", "Purchase", "Tax", "Credit", "Adjustment"}
CHARGE_CLASSES = {"Correction"}
CHARGE_FREQUENCIES = {"One-Time", "Recurring", "Usage-Based"}
PRICING_CATEGORIES = {"Standard", "Dynamic", "Committed", "Other"}
SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "AI and Machine Learning": ("AI Platforms", "Bots", "Generative AI", "Machine Learning",
                                "Natural Language Processing", "Other (AI and Machine Learning)"),
    "Analytics": ("Analytics Platforms", "Business Intelligence", "Data Processing", "Search", "Streaming Analytics",
                  "Other (Analytics)"),
    "Business Applications": ("Productivity and Collaboration", "Other (Business Applications)"),
    "Compute": ("Containers", "End User Computing", "Quantum Compute", "Serverless Compute", "Virtual Machines",
                "Other (Compute)"),
    "Databases": ("Caching", "Data Warehouses", "Ledger Databases", "NoSQL Databases", "Relational Databases",
                  "Time Series Databases", "Other (Databases)"),
    "Developer Tools": ("Developer Platforms", "Continuous Integration and Deployment", "Development Environments",
                        "Source Code Management", "Quality Assurance", "Other (Developer Tools)"),
    "Identity": ("Identity and Access Management", "Other (Identity)"),
    "Integration": ("API Management", "Messaging", "Workflow Orchestration", "Other (Integration)"),
    "Internet of Things": ("IoT Analytics", "IoT Platforms", "Other (Internet of Things)"),
    "Management and Governance": ("Architecture", "Compliance", "Cost Management", "Data Governance",
                                  "Disaster Recovery", "Endpoint Management", "Observability", "Support",
                                  "Other (Management and Governance)"),
    "Media": ("Content Creation", "Gaming", "Media Streaming", "Mixed Reality", "Other (Media)"),
    "Migration": ("Data Migration", "Resource Migration", "Other (Migration)"),
    "Mobile": ("Other (Mobile)",),
    "Multicloud": ("Multicloud Integration", "Other (Multicloud)"),
    "Networking": ("Application Networking", "Content Delivery", "Network Connectivity", "Network Infrastructure",
                   "Network Routing", "Network Security", "Other (Networking)"),
    "Security": ("Secret Management", "Security Posture Management", "Threat Detection and Response",
                 "Other (Security)"),
    "Storage": ("Backup Storage", "Block Storage", "File Storage", "Object Storage", "Storage Platforms",
                "Other (Storage)"),
    "Web": ("Application Platforms", "Other (Web)"),
    "Other": ("Other (Other)",),
}
SERVICE_CATEGORIES = set(SUBCATEGORIES)

# attributes/datetime_format.md, numeric_format.md, unit_format.md
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
NUMERIC = re.compile(r"^-?(\d+(\.\d+)?|\.\d+)(E-?\d+)?$")
_TIME_UNITS = "(Year|Month|Day|Hour|Minute|Second)s"
_WORD = r"[A-Z][A-Za-z]*"
UNIT = re.compile(rf"^({_WORD}s?|\d+ {_WORD}s?|{_WORD}-{_TIME_UNITS}|{_WORD}s?/({_TIME_UNITS[:-1]}|"
                  rf"\d+ {_TIME_UNITS}))$")
PASCAL = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def check_table(table: pa.Table, columns: dict[str, tuple[str, bool, str]] = COLUMNS) -> list[str]:
    """Problems of a FOCUS dataset read from Parquet (types are checked on the Arrow schema)."""
    problems = _check_columns(table.column_names, columns)
    for name in table.column_names:
        spec = columns.get(name)
        if spec is None:
            continue
        kind = table.schema.field(name).type
        wanted = spec[2]
        if wanted == "Decimal" and not pa.types.is_decimal(kind):
            problems.append(f"{name}: type {kind}, the spec says Decimal")
        if wanted == "Date/Time" and not (pa.types.is_timestamp(kind) and kind.tz in ("UTC", "+00:00", "Etc/UTC")):
            problems.append(f"{name}: type {kind}, the spec says a UTC Date/Time")
        if wanted in ("String", "JSON") and not pa.types.is_string(kind) and not pa.types.is_large_string(kind):
            problems.append(f"{name}: type {kind}, the spec says {wanted} (a string)")
    problems += check_rows(table.to_pylist(), table.column_names, columns)
    return problems


def check_csv(header: list[str], rows: Iterable[dict[str, str]],
              columns: dict[str, tuple[str, bool, str]] = COLUMNS) -> list[str]:
    """Problems of a FOCUS dataset read from CSV: values are text, formats are checked."""
    problems = _check_columns(header, columns)
    parsed = []
    for number, row in enumerate(rows, start=2):
        values: dict[str, Any] = {}
        for name, text in row.items():
            spec = columns.get(name)
            if text == "":
                values[name] = None
                continue
            if spec is not None and spec[2] == "Decimal":
                if not NUMERIC.match(text):
                    problems.append(f"line {number}: {name} {text!r} does not follow the Numeric Format")
                    continue
                values[name] = Decimal(text)
            elif spec is not None and spec[2] == "Date/Time":
                if not DATETIME.match(text):
                    problems.append(f"line {number}: {name} {text!r} is not YYYY-MM-DDTHH:mm:ssZ")
                    continue
                values[name] = datetime.fromisoformat(text.replace("Z", "+00:00"))
            else:
                values[name] = text
        parsed.append(values)
    return problems + check_rows(parsed, header, columns)


def _check_columns(names: list[str], columns: dict[str, tuple[str, bool, str]]) -> list[str]:
    mandatory = [name for name, (level, _, _) in columns.items() if level == "Mandatory"]
    problems = [f"mandatory column {name} is missing" for name in mandatory if name not in names]
    if len(set(names)) != len(names):
        problems.append("a column name is repeated")
    custom_seen = False
    for name in names:
        if name in columns:
            if custom_seen:
                problems.append(f"FOCUS column {name} comes after custom columns (SHOULD be first)")
        elif name.startswith("x_"):
            custom_seen = True
            if not PASCAL.match(name[2:]):
                problems.append(f"custom column {name} is not PascalCase after x_ (SHOULD)")
        else:
            problems.append(f"column {name} is neither a FOCUS column nor prefixed x_")
    return problems


def check_rows(rows: Iterable[dict[str, Any]], names: Iterable[str],
               columns: dict[str, tuple[str, bool, str]] = COLUMNS) -> list[str]:
    problems: list[str] = []
    present = set(names)
    rows = list(rows)
    if present & set(ALLOCATED):
        problems += check_allocations(rows)
    for index, row in enumerate(rows):
        where = f"row {index + 1}"

        def get(name: str, row: dict[str, Any] = row) -> Any:
            return row.get(name)

        for name in present & set(columns):
            value = get(name)
            if value is None and not columns[name][1]:
                problems.append(f"{where}: {name} is null; the spec does not allow nulls")
            if isinstance(value, str) and not value.strip():
                problems.append(f"{where}: {name} is an empty string (use null)")
        category, charge_class = get("ChargeCategory"), get("ChargeClass")
        if category not in CHARGE_CATEGORIES:
            problems.append(f"{where}: ChargeCategory {category!r} is not an allowed value")
        if charge_class is not None and charge_class not in CHARGE_CLASSES:
            problems.append(f"{where}: ChargeClass {charge_class!r} is not null nor Correction")
        billable = category in ("Usage", "Purchase") and charge_class != "Correction"
        if "ChargeFrequency" in present:
            frequency = get("ChargeFrequency")
            if frequency not in CHARGE_FREQUENCIES:
                problems.append(f"{where}: ChargeFrequency {frequency!r} is not an allowed value")
            if category == "Purchase" and frequency == "Usage-Based":
                problems.append(f"{where}: ChargeFrequency is Usage-Based on a Purchase")
        if "PricingCategory" in present:
            pricing = get("PricingCategory")
            if pricing is None and billable:
                problems.append(f"{where}: PricingCategory is null on a Usage/Purchase row")
            if category == "Tax" and pricing is not None:
                problems.append(f"{where}: PricingCategory must be null on Tax")
            if pricing is not None and pricing not in PRICING_CATEGORIES:
                problems.append(f"{where}: PricingCategory {pricing!r} is not an allowed value")
        service = get("ServiceCategory")
        if service not in SERVICE_CATEGORIES:
            problems.append(f"{where}: ServiceCategory {service!r} is not an allowed value")
        if "ServiceSubcategory" in present:
            subcategory = get("ServiceSubcategory")
            if subcategory not in SUBCATEGORIES.get(service, ()):
                problems.append(f"{where}: ServiceSubcategory {subcategory!r} is not allowed under {service!r}")
        currency = get("BillingCurrency")
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency) and is_currency(currency)):
            problems.append(f"{where}: BillingCurrency {currency!r} is not an ISO 4217 national currency code")
        quantity, unit = get("PricingQuantity"), get("PricingUnit")
        if (quantity is None) != (unit is None):
            problems.append(f"{where}: PricingUnit must be null exactly when PricingQuantity is")
        if quantity is None and billable:
            problems.append(f"{where}: PricingQuantity is null on a Usage/Purchase row")
        if category == "Tax" and quantity is not None:
            problems.append(f"{where}: PricingQuantity must be null on Tax")
        for unit_column in ("PricingUnit", "ConsumedUnit"):
            value = get(unit_column)
            if value is not None and not UNIT.match(value):
                problems.append(f"{where}: {unit_column} {value!r} does not follow the Unit Format (SHOULD)")
        if "ConsumedQuantity" in present:
            consumed = get("ConsumedQuantity")
            if (consumed is None) != (get("ConsumedUnit") is None):
                problems.append(f"{where}: ConsumedUnit must be null exactly when ConsumedQuantity is")
            if category != "Usage" and consumed is not None:
                problems.append(f"{where}: ConsumedQuantity must be null when ChargeCategory is not Usage")
            if category == "Usage" and charge_class != "Correction" and consumed is None \
                    and get("CommitmentDiscountStatus") != "Unused":
                problems.append(f"{where}: ConsumedQuantity is null on a Usage row")
        for price_column in ("ListUnitPrice", "ContractedUnitPrice", "SkuId", "SkuPriceId"):
            if price_column in present:
                value = get(price_column)
                if value is None and billable:
                    problems.append(f"{where}: {price_column} is null on a Usage/Purchase row")
                if isinstance(value, Decimal) and value < 0:
                    problems.append(f"{where}: {price_column} is negative")
        if "SkuMeter" in present and get("SkuId") is None and get("SkuMeter") is not None:
            problems.append(f"{where}: SkuMeter must be null when SkuId is")
        if "SkuPriceDetails" in present and get("SkuPriceId") is None and get("SkuPriceDetails") is not None:
            problems.append(f"{where}: SkuPriceDetails must be null when SkuPriceId is")
        for json_column in ("Tags", "SkuPriceDetails", "AllocatedTags"):
            if json_column in present and get(json_column) is not None:
                found = _key_value_problems(get(json_column), x_keys_only=json_column == "SkuPriceDetails")
                problems += [f"{where}: {json_column} {p}" for p in found]
        list_price, list_cost = get("ListUnitPrice"), get("ListCost")
        if list_price is not None and quantity is not None and charge_class != "Correction":
            try:
                if list_price * quantity != list_cost:
                    problems.append(f"{where}: ListCost {list_cost} != ListUnitPrice {list_price} x PricingQuantity "
                                    f"{quantity}")
            except (TypeError, InvalidOperation):
                problems.append(f"{where}: ListCost, ListUnitPrice or PricingQuantity is not a number")
        start, end = get("ChargePeriodStart"), get("ChargePeriodEnd")
        period_start, period_end = get("BillingPeriodStart"), get("BillingPeriodEnd")
        if None not in (start, end, period_start, period_end) and not (period_start <= start < end <= period_end):
            problems.append(f"{where}: charge period {start}..{end} is not inside billing period "
                            f"{period_start}..{period_end}")
        for instant in (start, end, period_start, period_end):
            offset = instant.utcoffset() if isinstance(instant, datetime) else None
            if isinstance(instant, datetime) and (offset is None or offset.total_seconds()):
                problems.append(f"{where}: date-time {instant} is not UTC")
    return problems


def _key_value_problems(text: object, x_keys_only: bool) -> list[str]:
    if not isinstance(text, str):
        return ["is not a serialized JSON string"]
    pairs: list[tuple[str, object]] = []

    def keep_pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        pairs.extend(items)
        return dict(items)

    try:
        parsed = json.loads(text, object_pairs_hook=keep_pairs)
    except json.JSONDecodeError:
        return ["is not JSON"]
    if not isinstance(parsed, dict):
        return ["is not a JSON object"]
    problems = []
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        problems.append("repeats a key")
    for key, value in parsed.items():
        if isinstance(value, dict | list):
            problems.append(f"value of {key!r} is an object or an array")
        if x_keys_only and not key.startswith("x_"):
            problems.append(f"key {key!r} is not a FOCUS-defined property and does not start with x_")
    return problems

