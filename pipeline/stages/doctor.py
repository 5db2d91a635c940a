"""Doctor: is a configuration ready to run? Each check looks at one thing through the ports and
says ok, warn or fail, with the fix. The entry point opens the backends (pipeline.app) and hands
them here; opening one that fails is a failed check too, with the adapter's one-line reason."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pipeline.domain.costing import Reference
from pipeline.domain.live import MICROS
from pipeline.domain.mappings import UNASSIGNED, is_provisioned_type
from pipeline.lake.manifests import latest_manifest
from pipeline.lake.rollups import rolled_up_note_key
from pipeline.ports import Counters, Ledger, ObjectStore
from pipeline.stages.llm_usage import StreamStatus

SNAPSHOT_AGE = timedelta(hours=1)  # the snapshot timer runs every 15 minutes
PROBE_AREA = "doctor"  # the store area the write probe goes to (nothing reads it)


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""
    unavailable: bool = False  # failed because a backend is unreachable now, not for a mistake


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def failed(name: str, error: Exception | str, fix: str = "") -> Check:
    return Check(name, Status.FAIL, str(error), fix)


def check_ledger(url: str, ledger: Ledger) -> Check:
    """The ledger answers reads (its events, what waits out its settle window) and takes a write
    (a probe item, removed again): an identity that may read but not write fails here."""
    events, pending = ledger.count(), ledger.pending()
    ledger.probe()
    waiting = f", {pending.events:,} settling" if pending.events else ""
    return ok("ledger", f"{url}: {events:,} events{waiting}; wrote and read a probe item")


def check_counters(url: str, counters: Counters, month: str) -> Check:
    """The counters answer reads and take a write (a probe key, removed again)."""
    subscriptions = counters.month_to_date(month)
    counters.probe()
    return ok("counters", f"{url}: {len(subscriptions):,} subscription(s) counted in {month}; wrote and read a "
                          "probe key")


def check_store(store: ObjectStore) -> Check:
    """Write a probe object and read it back (a role that can read but not write fails here)."""
    key, data = "probe.txt", f"chargeback doctor {uuid.uuid4()}\n".encode()
    store.put(key, data, overwrite=True)
    if store.get(key) != data:
        return failed("store", f"{store.url}/{key}: written, but read back other bytes",
                      "check that nothing else writes this area of the store")
    return ok("store", f"{store.url.removesuffix('/' + PROBE_AREA)}: wrote and read a probe object")


def check_snapshots(snapshots: ObjectStore, now: datetime, max_age: timedelta = SNAPSHOT_AGE) -> Check:
    last = latest_manifest(snapshots)
    if last is None:
        return Check("snapshots", Status.WARN, f"{snapshots.url}: no snapshot committed yet",
                     "run `chargeback snapshot` (in Azure the snapshot timer runs every 15 minutes)")
    age = now - last.created
    detail = f"{snapshots.url}: manifest {last.number}, {age.total_seconds() / 3600:,.1f} h old"
    if age > max_age:
        return Check("snapshots", Status.WARN, detail, "the snapshot timer should commit every 15 minutes when "
                     "events arrive: check the Function App's snapshot_usage runs (or run `chargeback snapshot`)")
    if not snapshots.exists(rolled_up_note_key()):  # a store begun before rollups, not yet backfilled
        return Check("snapshots", Status.WARN, f"{detail}; files committed before rollups may have none "
                     "(reports read their events: the same numbers, slower)",
                     "run `chargeback snapshot --rollups` (in Azure the snapshot timer rolls up 50 files a run)")
    return ok("snapshots", detail)


def check_llm_logs(status: StreamStatus) -> Check:
    last = f"newest record {status.last_record:%Y-%m-%d %H:%M} UTC" if status.last_record else "no record stored"
    detail = f"{status.pending:,} streamed request(s) of the last 24 h waiting; {last}"
    if status.stale:
        return Check("llm logs", Status.WARN, detail, "streams came but no GatewayLlmLogs record did: check the "
                     "APIM diagnostic setting, the API's LLM logging (terraform/modules/apim) and ingest_llm_logs")
    return ok("llm logs", detail)


def check_cost_centers(counters: Counters, reference: Reference, month: str, today: date) -> Check:
    """No live spend of the month is charged to `unassigned` (a subscription with no cost center
    in the map, whose events sent none): found while the month runs, not on its report. The
    subscriptions named are those the map has no cost center for today (the counters do not keep
    which subscription's spend went where; one whose events send a costCenter is named too)."""
    spend = counters.cost_center_spend(month).get(UNASSIGNED, 0)
    if spend <= 0:
        return ok("centers", f"no live spend of {month} is charged to `{UNASSIGNED}`")
    unmapped = sorted(row.subscription_id for row in counters.month_to_date(month)
                      if reference.cost_centers.cost_center(row.subscription_id, today, None) == UNASSIGNED)
    currency = ", ".join(sorted({price.currency for price in reference.catalog.prices}))
    which = (f"; subscription(s) of {month} with no cost center in the map on {today}: " + ", ".join(unmapped[:5])
             + (", ..." if len(unmapped) > 5 else "")) if unmapped else ""
    return Check("centers", Status.WARN,
                 f"{Decimal(spend) / MICROS:,.2f} {currency} of {month}'s live spend is charged to "
                 f"`{UNASSIGNED}`{which}",
                 "map them in the cost-center file (CHARGEBACK_COST_CENTERS); for days already past, a reassign "
                 "correction (`chargeback correct`) moves their cost in the reports")


def check_coverage(reference: Reference, first: date, last: date | None = None) -> Check:
    """Every deployment of the map is priced on every day from `first` to `last` (default: just
    `first`): by the catalog, or (provisioned) by a capacity row. Prices and rows change only on
    their boundaries, so the first day and each boundary day are the days to look at. A
    deployment the map gives no model is priced by the model its events name: not checked."""
    last = last or first
    count = len(reference.deployments)
    if not count:
        return Check("prices", Status.WARN, "the deployment map is empty: every request will be unpriced "
                     "(unknown-deployment)", "write $CHARGEBACK_HOME/deployments.csv (or set CHARGEBACK_DEPLOYMENTS)")
    days = sorted({first} | {day for day in reference.boundaries()
                             if first <= day <= last})
    missing: dict[str, str] = {}  # deployment -> why, from the first day it is not priced
    unchecked = 0
    for deployment in reference.deployments:
        if deployment.model is None and not is_provisioned_type(deployment.deployment_type):
            unchecked += 1
            continue
        for day in days:
            if is_provisioned_type(deployment.deployment_type):
                why = None if reference.capacity.on(deployment.name, day) else "provisioned, no capacity row"
            else:
                assert deployment.model is not None
                found = reference.catalog.find(deployment.model, deployment.deployment_type, deployment.region, day)
                why = None if found else f"{deployment.model}, {deployment.deployment_type}"
            if why is not None:
                missing[deployment.name] = f"{deployment.name} ({why}{'' if day == first else f', from {day}'})"
                break
    span = f"on {first}" if last == first else f"from {first} to {last}"
    if missing:
        listed = list(missing.values())
        return failed("prices", f"{len(listed)} of {count} deployment(s) have no price {span}: "
                      + ", ".join(listed[:5]) + (", ..." if len(listed) > 5 else ""),
                      "add their prices to the catalog (check it with `chargeback prices check FILE`) or "
                      "their rows to the capacity file")
    also = f" ({unchecked} priced by the model their events name)" if unchecked else ""
    return ok("prices", f"catalog {reference.catalog.version[:12]} prices all {count} deployment(s) of the map "
                        f"{span}{also}")
