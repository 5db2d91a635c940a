"""How results look in a terminal (rich). Amounts are rounded here, and only here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.domain.corrections import Kind
from pipeline.domain.live import MICROS, BudgetAlert, Budgets, BudgetScope, SubscriptionMonth
from pipeline.domain.pricing import STANDARD, money_sum

if TYPE_CHECKING:  # the results of stages that load pyarrow: imported by the commands that run them
    from pipeline.stages.ingest import IngestResult
    from pipeline.stages.llm_usage import LlmIngestResult, StreamStatus
    from pipeline.stages.report.model import Report, ReportRow
    from pipeline.stages.report.restate import Restatement
    from pipeline.stages.snapshot import SnapshotResult

MAX_ROWS = 40
CENT = Decimal("0.01")


def money(amount: Decimal | None, currency: str = "") -> str:
    if amount is None:
        return "unpriced"
    rounded = amount.quantize(CENT, rounding=ROUND_HALF_EVEN)
    return f"{rounded:,.2f} {currency}".strip()


def show_ingest(console: Console, result: IngestResult) -> None:
    console.print(
        f"received [bold]{result.received:,}[/]: ingested [green]{result.ingested:,}[/], "
        f"duplicates {result.duplicates:,}, dead-lettered [red]{result.dead_lettered:,}[/]"
        + (f" ({result.events_per_second:,.0f} events/s)" if result.seconds else ""), markup=True)
    for code, count in sorted(result.reasons.items()):
        console.print(f"  dead letter: {code} x{count}")
    for alert in result.alerts:
        console.print(f"  [yellow]budget alert[/] {alert.scope.value} {escape(alert.key)}: {alert.threshold}% of "
                      f"{_micros(alert.budget_micros, alert.currency)} reached in {alert.month}", markup=True)
    if result.dead_letter_objects:
        folder = result.dead_letter_objects[-1].rsplit("/", 2)[0]
        console.print(f"  {len(result.dead_letter_objects)} dead-letter file(s) under {folder}")
    if result.counters_degraded:
        console.print(f"warning: the live counters were unavailable ({result.counters_error}); "
                      f"{result.uncounted:,} event(s) are in the ledger but not counted. Once they are back run: "
                      + "; ".join(f"chargeback reconcile --apply --month {month}"
                                  for month in sorted(result.uncounted_months)), style="yellow", markup=False)


def show_llm_ingest(console: Console, result: LlmIngestResult) -> None:
    discarded, rejected = sum(result.discarded.values()), sum(result.rejected.values())
    console.print(f"read {result.messages:,} envelope(s), {result.records:,} record(s): kept {result.kept:,} usage "
                  f"record(s), discarded {discarded:,}, rejected {rejected:,}; {result.files_written:,} new file(s), "
                  f"{result.files_present:,} already stored", markup=False)
    for reason, count in sorted(result.discarded.items()):
        console.print(f"  discarded: {reason} x{count:,}", markup=False)
    for reason, count in sorted(result.rejected.items()):
        console.print(f"  rejected: {reason} x{count:,}", markup=False)
    for rejection in result.examples[:5]:
        console.print(f"    {rejection.where}: {rejection.detail}", markup=False)


def show_snapshot(console: Console, result: SnapshotResult) -> None:
    if not result.rows:
        console.print("snapshot: nothing new" + (" yet" if result.pending.events else ""))
    else:
        console.print(f"snapshot: {result.rows:,} events -> {len(result.files)} new Parquet file(s), committed as "
                      f"manifest {', '.join(str(n) for n in result.manifests)}")
    if result.pending.events:
        console.print(f"snapshot: {pending_text(result)}; `chargeback snapshot --wait` waits for them", markup=False)


def pending_text(result: SnapshotResult) -> str:
    """`3,002 event(s) in the ledger are not taken yet: they settle until 10:02:14 UTC`."""
    pending = result.pending
    until = f" until {pending.until:%Y-%m-%d %H:%M:%S} UTC" if pending.until else ""
    return (f"{pending.events:,} event(s) in the ledger are not taken yet: they settle{until} "
            "(CHARGEBACK_COSMOS_SETTLE_SECONDS)")


def show_unassigned(console: Console, report: Report) -> None:
    """Usage charged to `unassigned` is named, so that no one's spend goes unbilled unnoticed."""
    from pipeline.stages.report.unassigned import FIX, unassigned_usage

    found = unassigned_usage(report)
    if found is not None:
        console.print(f"warning: {found.describe()}; {FIX}", style="yellow", markup=False, highlight=False,
                      soft_wrap=True)


def show_report(console: Console, report: Report, restatement: tuple[Restatement, str] | None = None) -> None:
    """Summaries that fit a terminal; the CSV has every cost center x subscription x model row.
    `restatement`: the one written when publishing, and where it was written."""
    by_center = _summary(report, lambda row: (row.cost_center,))
    console.print(_summary_table(f"Chargeback {report.period.title} by cost center", ("cost center",), by_center))
    by_model = _summary(report, lambda row: (row.model or "-", row.deployment_type or "-"))
    console.print(_summary_table(f"Chargeback {report.period.title} by model", ("model", "type"), by_model))
    totals = report.totals
    total_text = ", ".join(money(amount, currency) for currency, amount in totals.items()) or "nothing priced"
    others = sorted({row.catalog_version for row in report.rows if row.catalog_version} - {report.catalog_version})
    console.print(f"[bold]Total {total_text}[/] over {report.requests:,} requests "
                  f"(prices: catalog {report.catalog_version}"
                  + (f"; repriced by corrections with catalog {', '.join(others)})" if others else ")"), markup=True)
    show_ptu(console, report)
    show_tiers(console, report)
    show_unassigned(console, report)
    if report.rollups_warning:
        console.print(f"warning: {report.rollups_warning}", markup=False, highlight=False, soft_wrap=True)
    if report.true_ups:
        trued = ", ".join(money(amount, currency) for currency, amount in report.true_up_totals.items())
        console.print(f"of which true-up {trued}: billed cost the metered usage does not explain, allocated to "
                      f"{len({t.cost_center for t in report.true_ups}):,} cost center(s) (lines of charge class "
                      "True-up)", markup=False)
    if report.states:
        origins = ", ".join(f"{origin} {count:,}" for origin, count in report.origins.items() if origin != "none")
        console.print("usage: " + ", ".join(f"{state} {count:,}" for state, count in report.states.items())
                      + (f" (numbers from: {origins})" if origins else ""), markup=False)
    if report.llm_unmatched:
        console.print(f"LLM-log usage records with no request event (not priced): {report.llm_unmatched:,}; "
                      "chargeback query \"SELECT * FROM llm_usage_unmatched\" lists them", markup=False)
    if report.cached_unknown_requests:
        most = ", ".join(money(amount, currency) for currency, amount in report.max_overcharge.items()) or "nothing"
        console.print(f"cached share unknown: {report.cached_unknown_requests:,} streamed request(s) priced from "
                      "APIM's LLM logs, which carry no cached-token count, were charged every prompt token at the "
                      f"input price: over-charged by at most {most} (column cached_unknown_max_overcharge)",
                      markup=False)
    if report.llm_mismatched:
        console.print(f"LLM-log records naming another deployment or model than their request event: "
                      f"{report.llm_mismatched:,} (the event's attribution is used)", markup=False)
    if report.corrections:
        console.print(f"corrections applied: {len(report.corrections)} (lines they set are marked "
                      "charge_class=Correction)")
        for correction in report.corrections:
            voided = (f", {report.voided.get(correction.id, 0):,} requests voided"
                      if correction.kind is Kind.VOID else "")
            console.print(f"  {correction.id} {correction.describe()}{voided}: {correction.reason} "
                          f"(by {correction.by})", markup=False)
    if report.unpriced:
        console.print(f"[yellow]warning: {report.unpriced_requests:,} requests are unpriced; they stay in the "
                      "report with an empty cost:[/]", markup=True)
        reasons: dict[tuple[str, str], list[int]] = {}  # (reason, usage state): no-usage has two causes
        examples: dict[tuple[str, str], str] = {}
        for line in sorted(report.unpriced, key=lambda line: -line.requests):
            sums = reasons.setdefault((line.reason, line.usage_state), [0, 0])
            sums[0] += line.requests
            sums[1] += line.prompt_tokens + line.completion_tokens
            examples.setdefault((line.reason, line.usage_state), line.detail)
        table = Table("reason", "requests", "tokens", "for example")
        for (reason, state), (requests, tokens) in sorted(reasons.items()):
            table.add_row(reason, f"{requests:,}", f"{tokens:,}", examples[(reason, state)])
        console.print(table)
    show_unpriced_models(console, report)
    if restatement is not None:
        show_restatement(console, *restatement)


def show_restatement(console: Console, restatement: Restatement, where: str) -> None:
    previous = restatement.version - 1
    console.print(f"[yellow]restated {restatement.month}[/]: version {restatement.version} replaces version "
                  f"{previous}, kept as {escape(', '.join(restatement.history))}", markup=True)
    if not restatement.lines:
        console.print("  no cost center's total changed")
    else:
        table = Table("cost center", "old", "new", "delta", "corrections",
                      title=f"Restatement {restatement.month} (v{previous} -> v{restatement.version})",
                      title_justify="left")
        for line in restatement.lines:
            table.add_row(line.cost_center, money(line.old, line.currency), money(line.new, line.currency),
                          f"{'+' if line.delta > 0 else ''}{money(line.delta, line.currency)}",
                          " ".join(line.corrections) or "-")
        console.print(table)
    console.print(f"wrote {where}", highlight=False, soft_wrap=True)


Summary = dict[tuple[str, ...], tuple[int, int, dict[str, Decimal]]]


def _summary(report: Report, key: Callable[[ReportRow], tuple[str, ...]]) -> Summary:
    sums: dict[tuple[str, ...], list[object]] = {}
    for row in report.rows:
        entry = sums.setdefault(key(row), [0, 0, {}])
        entry[0] += row.requests  # type: ignore[operator]
        entry[1] += row.prompt_tokens + row.completion_tokens  # type: ignore[operator]
        total = row.total_cost  # pay-as-you-go + allocated PTU capacity
        if total is not None:
            costs: dict[str, Decimal] = entry[2]  # type: ignore[assignment]
            costs[row.currency] = money_sum((costs.get(row.currency, Decimal(0)), total))
    return {k: (int(v[0]), int(v[1]), v[2]) for k, v in sums.items()}  # type: ignore[call-overload, misc]


def _summary_table(title: str, names: tuple[str, ...], summary: Summary) -> Table:
    table = Table(title=title, title_justify="left")
    for name in names:
        table.add_column(name)
    for name in ("requests", "tokens", "cost"):
        table.add_column(name, justify="right")
    ranked = sorted(summary.items(), key=lambda item: (-sum(item[1][2].values(), Decimal(0)), item[0]))
    for labels, (requests, tokens, costs) in ranked[:MAX_ROWS]:
        cost = ", ".join(money(amount, currency) for currency, amount in sorted(costs.items())) or "unpriced"
        table.add_row(*labels, f"{requests:,}", f"{tokens:,}", cost)
    if len(ranked) > MAX_ROWS:
        table.add_row(f"... {len(ranked) - MAX_ROWS} more in the CSV", *[""] * (len(names) + 2))
    return table


@dataclass(frozen=True, slots=True)
class LiveUsage:
    month: str
    subscriptions: list[SubscriptionMonth]
    cost_centers: dict[str, int]
    alerts: list[BudgetAlert]
    budgets: Budgets


def _micros(amount: int, currency: str = "") -> str:
    return money(Decimal(amount) / MICROS, currency)


def _budget_cells(budgets: Budgets, scope: BudgetScope, key: str, spend: int) -> tuple[str, str]:
    budget = budgets.get(scope, key)
    if budget is None:
        return "-", "-"
    return _micros(budget.monthly_micros, budget.currency), f"{spend * 100 / budget.monthly_micros:.0f}%"


def show_usage(console: Console, live: LiveUsage, subscription: str | None = None, every: bool = False) -> None:
    """The live usage per subscription and cost center. Past MAX_ROWS of either (a tenant of
    thousands of subscriptions), only the MAX_ROWS that spent the most, in that order, and a line
    saying how many more there are: a table of thousands of lines is unread, and takes rich
    seconds to lay out. `every` shows them all, in their usual order."""
    rows = [s for s in live.subscriptions if subscription is None or s.subscription_id == subscription]
    table = Table(title=f"Live usage {live.month} (month to date, priced at ingest)", title_justify="left")
    for name in ("subscription", "requests", "tokens", "unpriced", "spend", "budget", "used"):
        table.add_column(name, justify="left" if name == "subscription" else "right")
    shown = _most_spent(rows, lambda row: (-row.spend_micros, row.subscription_id), every)
    for row in shown:
        budget, used = _budget_cells(live.budgets, BudgetScope.SUBSCRIPTION, row.subscription_id, row.spend_micros)
        table.add_row(row.subscription_id, f"{row.requests:,}", f"{row.total_tokens:,}",
                      f"{row.unpriced_requests:,}", _micros(row.spend_micros), budget, used)
    _more(table, len(rows) - len(shown), "subscriptions")
    console.print(table)
    if subscription is None and live.cost_centers:
        centers = Table("cost center", "spend", "budget", "used", title="By cost center", title_justify="left")
        spends = list(live.cost_centers.items())
        top = _most_spent(spends, lambda item: (-item[1], item[0]), every)
        for cost_center, spend in top:
            centers.add_row(cost_center, _micros(spend), *_budget_cells(live.budgets, BudgetScope.COST_CENTER,
                                                                         cost_center, spend))
        _more(centers, len(spends) - len(top), "cost centers")
        console.print(centers)
    for alert in live.alerts:
        if subscription is None or alert.key == subscription:
            console.print(f"[yellow]budget alert[/] {alert.scope.value} {escape(alert.key)}: {alert.threshold}% of "
                          f"{_micros(alert.budget_micros, alert.currency)} reached at "
                          f"{alert.raised_at:%Y-%m-%d %H:%M} UTC ({_micros(alert.spend_micros, alert.currency)})",
                          markup=True)
    if not rows:
        console.print("no live usage recorded for this month" + (f" and {subscription}" if subscription else ""))


_Item = TypeVar("_Item")


def _most_spent(items: list[_Item], rank: Callable[[_Item], tuple[int, str]], every: bool) -> list[_Item]:
    """All the items, as they are, when they fit the table (or `every`), else the MAX_ROWS that rank first."""
    return items if every or len(items) <= MAX_ROWS else sorted(items, key=rank)[:MAX_ROWS]


def _more(table: Table, left_out: int, what: str) -> None:
    if left_out > 0:
        table.caption = f"... {left_out:,} more {what}: --all shows every one"
        table.caption_justify = "left"


UNPRICED_MODEL_REASONS = ("no-price", "unknown-model", "no-capacity")


def show_ptu(console: Console, report: Report) -> None:
    """Pay-as-you-go and allocated PTU capacity side by side, and how busy each PTU deployment was."""
    if not report.deployment_days:
        return
    payg, ptu = report.payg_totals, report.ptu_totals
    console.print("of which pay-as-you-go " + ", ".join(money(payg.get(c, Decimal(0)), c) for c in sorted(ptu))
                  + ", provisioned (PTU) capacity " + ", ".join(money(a, c) for c, a in ptu.items())
                  + f" (capacity file {report.capacity_version})", markup=False)
    days: dict[str, list[Decimal]] = {}
    idle: dict[str, set[str]] = {}
    for day in report.deployment_days:
        entry = days.setdefault(day.deployment, [Decimal(0), Decimal(0), Decimal(0)])
        entry[0] = money_sum((entry[0], day.cost))
        entry[1] = money_sum((entry[1], day.used))
        entry[2] = money_sum((entry[2], day.capacity or Decimal(0)))
        if day.idle_to:
            idle.setdefault(day.deployment, set()).add(day.idle_to)
    currencies = {day.deployment: day.currency for day in report.deployment_days}
    for deployment, (cost, used, capacity) in sorted(days.items()):
        busy = f"{used / capacity:.1%} used" if capacity else "utilisation unknown (no throughput per PTU)"
        owner = ", ".join(sorted(idle.get(deployment, ()))) or "spread over its users"
        console.print(f"  PTU {deployment}: {money(cost, currencies[deployment])} capacity, {busy} (weighted "
                      f"tokens); idle capacity: {owner}", markup=False)


def show_tiers(console: Console, report: Report) -> None:
    """The spilled-over requests, and the pay-as-you-go cost of each tier other than standard."""
    spilled: dict[str, list[Decimal]] = defaultdict(list)
    spilled_requests = 0
    tiers: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for (tier, spillover, currency), total in report.tier_totals().items():
        if spillover:
            spilled[currency].append(total.cost)
            spilled_requests += total.requests
        if tier != STANDARD:
            tiers[(tier, currency)].append(total.cost)
            counts[tier] += total.requests
    if spilled:
        console.print(f"  spillover: {spilled_requests:,} requests that provisioned deployments spilled over, billed "
                      "pay-as-you-go at their spillover deployment's prices: "
                      + ", ".join(money(money_sum(amounts), c) for c, amounts in sorted(spilled.items())), markup=False)
    for (tier, currency), amounts in sorted(tiers.items()):
        console.print(f"  service tier {tier}: {counts[tier]:,} requests, {money(money_sum(amounts), currency)}",
                      markup=False)


def unpriced_models(report: Report) -> list[tuple[str, str, str, int, int]]:
    """(model, deployment type, reason, requests, tokens) of the traffic no price or capacity
    row covered, most requests first."""
    sums: dict[tuple[str, str, str], list[int]] = {}
    for line in report.unpriced:
        if line.reason in UNPRICED_MODEL_REASONS:
            kind = line.deployment_type or "-"
            if line.service_tier not in ("", STANDARD):  # the tier has no row: say which
                kind = f"{kind}, tier {line.service_tier}"
            entry = sums.setdefault((line.model or "(none)", kind, line.reason), [0, 0])
            entry[0] += line.requests
            entry[1] += line.prompt_tokens + line.completion_tokens
    return sorted(((*key, n, t) for key, (n, t) in sums.items()), key=lambda r: (-r[3], r[:3]))


def show_unpriced_models(console: Console, report: Report) -> None:
    """The models the catalog (or the capacity file) has no price for: what to add."""
    models = unpriced_models(report)
    if not models:
        return
    table = Table("model", "deployment type", "reason", "requests", "tokens",
                  title="Unpriced models: add them to the price catalog (or the capacity file)", title_justify="left")
    for model, deployment_type, reason, requests, tokens in models:
        table.add_row(model, deployment_type, reason, f"{requests:,}", f"{tokens:,}")
    console.print(table)


def show_stream_status(console: Console, status: StreamStatus) -> None:
    """Streamed requests still waiting for their usage from APIM's LLM logs, and how fresh those are."""
    oldest = f", the oldest since {status.oldest_pending:%Y-%m-%d %H:%M} UTC" if status.oldest_pending else ""
    console.print(f"streamed requests of the last 24 h waiting for LLM-log usage: {status.pending:,}{oldest}",
                  markup=False)
    if status.last_record is None:
        console.print("newest LLM-log record: none stored", markup=False)
    else:
        hours = (status.now - status.last_record).total_seconds() / 3600
        console.print(f"newest LLM-log record: {status.last_record:%Y-%m-%d %H:%M} UTC ({hours:,.1f} h ago)",
                      markup=False)
    if status.stale:
        limit = status.stale_after.total_seconds() / 3600
        console.print(f"warning: {status.recent_streams:,} streamed request(s) in the last {limit:g} h but no LLM-log "
                      f"record for {limit:g} h: check the APIM diagnostic setting (GatewayLlmLogs) and the "
                      "ingest_llm_logs function; until they come, these requests stay unpriced", style="yellow",
                      markup=False)
