"""The `pricing_keys` table of the `costs` view is made once per key and reference period, then
given to each day by DuckDB: it must hold, for every distinct day key of the usage, exactly what
resolving that key on its own day gives (a fresh reference for each key: no period, no sharing),
across a price change (2026-10-16), a cost-center move (2026-10-20), a reassign correction over
days in between, and unpriced keys whose detail names their day."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pipeline.app import Pipeline
from pipeline.domain.corrections import Corrections, Kind, correction
from pipeline.lake.pricing_keys import KEY_WIDTH, usage_key
from pipeline.lake.views import KEY_COLUMNS
from pipeline.lake.warehouse import open_warehouse
from pipeline.stages.snapshot import snapshot
from tests.conftest import Feed, ReferenceFiles, local
from tests.factories import jsonl, usage
from tests.test_report import EVENTS, NOW, ev

MORE = [ev("sub-b", "dep-beta", f"2026-10-{day:02d}T08:00:00Z", usage(1000, 10)) for day in range(11, 24)]
MORE += [ev("sub-a", "dep-noprice", f"2026-10-{day:02d}T09:00:00Z", usage(100, 50)) for day in (9, 10, 17)]
REASSIGN = correction(kind=Kind.REASSIGN, reason="moved early", by="t", at=datetime(2026, 10, 30, tzinfo=UTC),
                      subscription_id="sub-b", cost_center="CC-X", start=datetime(2026, 10, 13, tzinfo=UTC),
                      end=datetime(2026, 10, 15, tzinfo=UTC))
COLUMNS = ("cost_center", "model", "deployment_type", "currency", "input_per_token", "cached_input_per_token",
           "output_per_token", "catalog_version", "unpriced_reason", "unpriced_detail", "charge_class", "pricing")


def test_each_day_key_holds_what_its_own_day_resolves_to(pipeline: Pipeline, feed: Feed,
                                                         reference_files: ReferenceFiles) -> None:
    assert feed(jsonl(EVENTS + MORE)).ingested == len(EVENTS + MORE)
    snapshot(pipeline.ledger, pipeline.snapshots)
    corrections = Corrections((REASSIGN,))
    connection = open_warehouse(local(pipeline.snapshots), reference_files.load(), corrections=corrections,
                                now=NOW).connection
    table = connection.execute(f"SELECT {KEY_COLUMNS.replace('u.', '')} FROM usage "
                               "GROUP BY ALL ORDER BY ALL").fetchall()
    made = connection.execute(
        "SELECT date, subscription_id, cost_center_sent, deployment, model_sent, state, billing_tier, spilled, "
        f"audio_classes, {', '.join(COLUMNS)} FROM pricing_keys ORDER BY ALL").fetchall()
    assert [row[:KEY_WIDTH] for row in made] == table  # each day key once (both in DuckDB's order)
    expected = []
    for key in table:
        resolved = Corrections((REASSIGN,)).resolve(reference_files.load(), usage_key(key))
        price = resolved.price
        per_token = ([rate / Decimal(1_000_000) for rate in (price.input_per_1m, price.cached_input_per_1m,
                                                             price.output_per_1m)] if price else [None] * 3)
        expected.append((*key, resolved.cost_center, resolved.model, resolved.deployment_type,
                         resolved.currency or None, *per_token, resolved.catalog_version or None,
                         resolved.unpriced.value if resolved.unpriced else None, resolved.detail or None,
                         resolved.charge_class or None, "pay-as-you-go" if price else None))
    assert made == expected
    centers = {(row[0].isoformat(), row[9]) for row in made if row[1] == "sub-b"}
    assert {center for day, center in centers if "2026-10-13" <= day < "2026-10-15"} == {"CC-X"}
    assert {center for day, center in centers if day >= "2026-10-20"} == {"CC-B2"}
    details = sorted(row[18] for row in made if row[3] == "dep-noprice")
    assert [detail[-10:] for detail in details] == ["2026-10-08", "2026-10-09", "2026-10-10", "2026-10-17"]
