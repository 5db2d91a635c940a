"""The period's report (a month, or a range of days) as one self-contained HTML page: totals,
charts, tables, unpriced usage and anomalies. Nothing is fetched: the charts are inline SVG drawn
here, the style and the few lines of script are inline, so the file can be mailed, archived or
opened offline.

Charts: cost by cost center (pay-as-you-go and PTU stacked), cost over days, tokens by model.
Amounts are rounded to cents for people; every figure that is rounded carries the exact amount
in a `title` (hover) and in `data-exact`. The page is deterministic (no generation time), so a
month rewritten with the same content is byte-identical and is not restated.

The script only enhances (sortable tables); it marks `<html data-script="ok">` when it ran, and
an error anywhere in the page is written into the page (`#script-errors`), which is what the
headless-browser test reads.
"""

from __future__ import annotations

import functools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from importlib import resources

from pipeline.domain.pricing import money_sum
from pipeline.stages.report.html_parts import amount as _amount
from pipeline.stages.report.html_parts import count as _count
from pipeline.stages.report.html_parts import escape as _e
from pipeline.stages.report.html_parts import money as _money
from pipeline.stages.report.html_parts import table as _table
from pipeline.stages.report.html_sections import reconciliation_section, tiers_section
from pipeline.stages.report.model import Report, exact_text
from pipeline.stages.report.unassigned import FIX as UNASSIGNED_FIX
from pipeline.stages.report.unassigned import unassigned_usage

MAX_BARS = 15
SPIKE_FACTOR = 3  # a day costing more than 3x the median day is flagged
LOW_UTILIZATION = Decimal("0.5")  # a PTU deployment used less than half of its throughput is flagged
PAYG_COLOR, PTU_COLOR = "#2b6cb0", "#dd6b20"
TOKEN_COLORS = ("#2b6cb0", "#90cdf4", "#38a169")  # uncached input, cached input, output


@functools.cache
def _asset(name: str) -> str:
    """The page's style (report.css) or script (report.js), inlined into every page."""
    return (resources.files("pipeline.stages.report") / name).read_text(encoding="utf-8")





def render_html(report: Report) -> bytes:
    totals = report.totals
    currency = max(totals, key=lambda c: (totals[c], c)) if totals else ""
    sections = [
        _summary(report, currency),
        _chart_section("cost-by-cost-center", "Cost by cost center", _cost_center_chart(report, currency),
                       _legend([("pay-as-you-go", PAYG_COLOR), ("PTU capacity", PTU_COLOR)])),
        _chart_section("cost-by-day", "Cost over days", _daily_chart(report, currency),
                       _legend([("pay-as-you-go", PAYG_COLOR), ("PTU capacity", PTU_COLOR)])),
        _chart_section("tokens-by-model", "Tokens by model", _tokens_chart(report),
                       _legend(list(zip(("input", "cached input", "output"), TOKEN_COLORS, strict=True)))),
        _cost_center_table(report),
        tiers_section(report),
        reconciliation_section(report),
        _unpriced_section(report),
        _anomalies(report, currency),
    ]
    other = sorted(set(totals) - {currency})
    note = (f'<p class="note">Charts show {_e(currency)}; other currencies ({_e(", ".join(other))}) are in the '
            "tables.</p>") if other else ""
    total_text = ", ".join(_money(amount, c) for c, amount in totals.items()) or "nothing priced"
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chargeback {_e(report.period.title)}: {_e(total_text)}</title>
<script>
window.__errors = [];
window.addEventListener("error", function (event) {{
  window.__errors.push(String(event.message || event));
  var box = document.getElementById("script-errors");
  if (box) {{ box.hidden = false; box.textContent = window.__errors.join("\\n"); }}
}});
</script>
<style>{_asset("report.css")}</style>
</head>
<body>
<header>
<h1>Azure OpenAI chargeback {_e(report.period.title)}</h1>
<p class="meta">prices: catalog {_e(report.catalog_version)}{
        f" &middot; provisioned capacity: {_e(report.capacity_version)}" if report.capacity_version else ""}
 &middot; totals are exact; amounts shown are rounded to cents (hover for the exact value)</p>
</header>
<pre id="script-errors" hidden></pre>
{note}
{"".join(sections)}
<script>{_asset("report.js")}</script>
</body>
</html>
"""
    return page.encode("utf-8")


def _summary(report: Report, currency: str) -> str:
    totals, payg, ptu = report.totals, report.payg_totals, report.ptu_totals
    cards = []
    for c in sorted(totals, key=lambda c: (c != currency, c)):
        exact = _e(exact_text(totals[c]))
        split = f"pay-as-you-go {_amount(payg.get(c, Decimal(0)), c)} &middot; PTU {_amount(ptu.get(c, Decimal(0)), c)}"
        cards.append(f'<div class="card" data-currency="{_e(c)}"><div class="label">Total {_e(c)}</div>'
                     f'<div class="value total" id="total-{_e(c)}" data-exact="{exact}">{_e(_money(totals[c], c))}'
                     f'</div><div class="split">{split}</div></div>')
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in report.rows)
    cards.append(f'<div class="card"><div class="label">Requests</div><div class="value" id="requests">'
                 f"{_count(report.requests)}</div><div class=\"split\">{_count(tokens)} tokens</div></div>")
    cards.append(f'<div class="card warn-card"><div class="label">Unpriced requests</div>'
                 f'<div class="value" id="unpriced-requests">{_count(report.unpriced_requests)}</div>'
                 f'<div class="split">listed below with their reason</div></div>')
    return f'<section id="summary" class="cards">{"".join(cards)}</section>'


def _chart_section(ident: str, title: str, svg: str, legend: str) -> str:
    return f'<section class="chart" id="{ident}"><h2>{_e(title)}</h2>{legend}{svg}</section>'


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{color}"></i>{_e(label)}</span>' for label, color in items) + "</p>"


def _empty_svg(label: str) -> str:
    return (f'<svg class="chart-svg empty" role="img" aria-label="{_e(label)}" viewBox="0 0 600 40" '
            f'width="600" height="40"><text x="10" y="25">{_e(label)}</text></svg>')


def _hbars(rows: Sequence[tuple[str, Sequence[Decimal]]], colors: Sequence[str], unit: str, label: str,
           value_text: Iterable[str]) -> str:
    """Horizontal stacked bars: one row per label, segments in `colors`."""
    if not rows or not any(sum(values) > 0 for _, values in rows):
        return _empty_svg(f"{label}: nothing to show")
    width, left, right, bar, gap = 860, 190, 120, 18, 8
    top = 10
    height = top + len(rows) * (bar + gap) + 10
    largest = max(sum(values) for _, values in rows) or Decimal(1)
    scale = Decimal(width - left - right) / largest
    parts = [f'<svg class="chart-svg" role="img" aria-label="{_e(label)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" data-bars="{len(rows)}">']
    for index, ((name, values), text) in enumerate(zip(rows, value_text, strict=True)):
        y = top + index * (bar + gap)
        parts.append(f'<text class="axis" x="{left - 8}" y="{y + bar - 4}" text-anchor="end">{_e(name[:28])}</text>')
        x = Decimal(left)
        for value, color in zip(values, colors, strict=True):
            w = value * scale
            if w > 0:
                parts.append(f'<rect class="bar" x="{x:.1f}" y="{y}" width="{max(w, Decimal("0.5")):.1f}" '
                             f'height="{bar}" fill="{color}"><title>{_e(name)}: {_e(exact_text(value))} {_e(unit)}'
                             "</title></rect>")
            x += w
        parts.append(f'<text class="value-label" x="{x + 6:.1f}" y="{y + bar - 4}">{_e(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cost_center_chart(report: Report, currency: str) -> str:
    sums: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for row in report.rows:
        if row.currency != currency:
            continue
        entry = sums[row.cost_center]
        entry[0] = money_sum((entry[0], row.cost or Decimal(0)))
        entry[1] = money_sum((entry[1], row.ptu_cost or Decimal(0)))
    ranked = sorted(sums.items(), key=lambda item: (-(item[1][0] + item[1][1]), item[0]))
    if len(ranked) > MAX_BARS:
        rest = ranked[MAX_BARS - 1:]
        ranked = [*ranked[:MAX_BARS - 1], (f"{len(rest)} others", [money_sum(v[0] for _, v in rest),
                                                                    money_sum(v[1] for _, v in rest)])]
    return _hbars(ranked, (PAYG_COLOR, PTU_COLOR), currency, "cost by cost center",
                  [_money(v[0] + v[1], currency) for _, v in ranked])


def _daily_chart(report: Report, currency: str) -> str:
    daily = {day: values[currency] for day, values in report.daily().items() if currency in values}
    if not daily:
        return _empty_svg("cost over days: nothing to show")
    first, last = min(daily), max(daily)
    days = [date.fromordinal(n) for n in range(first.toordinal(), last.toordinal() + 1)]
    width, height, left, bottom, top = 860, 260, 70, 40, 10
    plot_w, plot_h = width - left - 10, height - top - bottom
    largest = max((p + t for p, t in daily.values()), default=Decimal(0)) or Decimal(1)
    step = Decimal(plot_w) / len(days)
    bar = max(step * Decimal("0.8"), Decimal(1))
    parts = [f'<svg class="chart-svg" role="img" aria-label="cost over days" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" data-bars="{len(daily)}">']
    for fraction in (0, Decimal("0.5"), 1):
        y = top + plot_h - Decimal(plot_h) * fraction
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{_e(_money(largest * fraction, ''))}</text>")
    for index, day in enumerate(days):
        x = Decimal(left) + step * index + (step - bar) / 2
        payg, ptu = daily.get(day, (Decimal(0), Decimal(0)))
        y = Decimal(top + plot_h)
        for value, color, name in ((payg, PAYG_COLOR, "pay-as-you-go"), (ptu, PTU_COLOR, "PTU")):
            h = Decimal(plot_h) * value / largest
            if h > 0:
                y -= h
                title = f"{day}: {name} {_e(exact_text(value))} {_e(currency)}"
                parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'fill="{color}"><title>{title}</title></rect>')
        if index % max(1, len(days) // 10) == 0 or index == len(days) - 1:
            parts.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{height - bottom + 16}" '
                         f'text-anchor="middle">{day:%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _tokens_chart(report: Report) -> str:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in report.rows:
        if not row.requests:
            continue
        entry = sums[row.model or "(unknown model)"]
        entry[0] += row.prompt_tokens - row.cached_tokens
        entry[1] += row.cached_tokens
        entry[2] += row.completion_tokens
    ranked = sorted(((m, v) for m, v in sums.items() if sum(v)), key=lambda item: (-sum(item[1]), item[0]))
    ranked = ranked[:MAX_BARS]
    return _hbars([(name, [Decimal(v) for v in values]) for name, values in ranked], TOKEN_COLORS, "tokens",
                  "tokens by model", [f"{_count(sum(values))} tokens" for _, values in ranked])





def _cost_center_table(report: Report) -> str:
    """One row per cost center: its usage, its unpriced requests, and its costs per currency."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    amounts: dict[str, dict[str, list[Decimal]]] = defaultdict(dict)
    for row in report.rows:
        count = counts[row.cost_center]
        count[0] += row.requests
        count[1] += row.prompt_tokens + row.completion_tokens
        if not row.currency:
            count[2] += row.requests
            continue
        entry = amounts[row.cost_center].setdefault(row.currency, [Decimal(0), Decimal(0)])
        entry[0] = money_sum((entry[0], row.cost or Decimal(0)))
        entry[1] = money_sum((entry[1], row.ptu_cost or Decimal(0)))

    def cell(center: str, index: int | None) -> str:
        values = [(c, v[0] + v[1] if index is None else v[index]) for c, v in sorted(amounts[center].items())]
        return "<br>".join(_amount(v, c) for c, v in values) or "-"

    def rank(center: str) -> tuple[Decimal, str]:
        return -sum((v[0] + v[1] for v in amounts[center].values()), Decimal(0)), center

    rows = [(_e(center), _count(counts[center][0]), _count(counts[center][1]), _count(counts[center][2]),
             cell(center, 0), cell(center, 1), cell(center, None)) for center in sorted(counts, key=rank)]
    return ('<section id="cost-centers"><h2>Cost centers</h2>'
            + _table("cost-center-table", ("cost center", "requests", "tokens", "unpriced requests",
                                           "pay-as-you-go", "PTU", "total"), rows, {1, 2, 3, 4, 5, 6})
            + "</section>")


def _unpriced_section(report: Report) -> str:
    if not report.unpriced:
        return ('<section id="unpriced"><h2>Unpriced usage</h2><p class="ok" id="no-unpriced">'
                "Every request with usage was priced.</p></section>")
    reasons: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    examples: dict[str, str] = {}
    models: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for line in sorted(report.unpriced, key=lambda line: -line.requests):
        reasons[line.reason][0] += line.requests
        reasons[line.reason][1] += line.prompt_tokens + line.completion_tokens
        examples.setdefault(line.reason, line.detail)
        if line.reason in ("no-price", "unknown-model", "no-capacity"):
            entry = models[(line.model or "(none)", line.deployment_type or "-", line.service_tier or "-",
                            line.reason)]
            entry[0] += line.requests
            entry[1] += line.prompt_tokens + line.completion_tokens
    parts = ['<section id="unpriced" class="warn"><h2>Unpriced usage</h2>',
             f"<p>{_count(report.unpriced_requests)} requests could not be priced; they stay in the CSV with an "
             "empty cost and in the <code>-unpriced.csv</code> file, never priced at zero.</p>",
             _table("unpriced-reasons", ("reason", "requests", "tokens", "for example"),
                    ((_e(reason), _count(n), _count(t), _e(examples[reason]))
                     for reason, (n, t) in sorted(reasons.items())), {1, 2})]
    if models:
        parts.append("<h3>Models without a price</h3><p>Add a row to the price catalog (or a capacity row for a "
                     "provisioned deployment), then run the report again.</p>")
        parts.append(_table("unpriced-models", ("model", "deployment type", "service tier", "reason", "requests",
                                                "tokens"),
                            ((_e(m), _e(t), _e(tier), _e(r), _count(n), _count(k))
                             for (m, t, tier, r), (n, k) in sorted(models.items(), key=lambda i: (-i[1][0], i[0]))),
                            {4, 5}))
    parts.append("</section>")
    return "".join(parts)


def _anomalies(report: Report, currency: str) -> str:
    items: list[str] = []
    daily = {day: p + t for day, values in report.daily().items() for c, (p, t) in values.items() if c == currency}
    if len(daily) >= 3:
        median = statistics.median(daily.values())
        for day, cost in sorted(daily.items()):
            if median > 0 and cost > median * SPIKE_FACTOR:
                items.append(f"<li class=\"spike\">{day}: {_amount(cost, currency)} is more than "
                             f"{SPIKE_FACTOR}x the median day ({_e(_money(median, currency))})</li>")
    for deployment_day in report.deployment_days:
        utilization = deployment_day.utilization
        if utilization is not None and utilization > 1:
            items.append(f"<li class=\"over-capacity\">{deployment_day.day} {_e(deployment_day.deployment)}: "
                         "weighted usage is "
                         f"{utilization:.0%} of the PTUs' published throughput: check the PTU weights and "
                         "throughput (or spill-over to another deployment)</li>")
    idle_share: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0), Decimal(0)])
    for deployment_day in report.deployment_days:
        if deployment_day.capacity is not None:
            entry = idle_share[(deployment_day.deployment, deployment_day.currency)]
            entry[0] = money_sum((entry[0], deployment_day.used))
            entry[1] = money_sum((entry[1], deployment_day.capacity))
            entry[2] = money_sum((entry[2], deployment_day.cost))
    for (deployment, ptu_currency), (used, capacity, cost) in sorted(idle_share.items()):
        if capacity and used / capacity < LOW_UTILIZATION:
            idle_cost = cost * (1 - used / capacity)
            items.append(f"<li class=\"low-utilization\">PTU deployment {_e(deployment)} was {used / capacity:.1%} "
                         f"used: about {_e(_money(idle_cost, ptu_currency))} of its capacity sat idle (fewer PTUs, "
                         "or pay-as-you-go, would cost less)</li>")
    unknown = sorted({d.deployment for d in report.deployment_days if d.capacity is None and d.used > 0})
    if unknown:
        items.append(f"<li class=\"throughput-unknown\">no published throughput per PTU for "
                     f"{_e(', '.join(unknown))}: idle capacity cannot be measured there and is spread over the "
                     "users</li>")
    unassigned = unassigned_usage(report)
    if unassigned is not None:
        items.append(f"<li class=\"unassigned\">{_e(unassigned.describe())}; {_e(UNASSIGNED_FIX)}</li>")
    if report.corrections:
        items.append(f"<li class=\"corrections\">{len(report.corrections)} recorded correction(s) applied; the "
                     "lines they set are marked Correction</li>")
    ptu_rows = []
    by_deployment: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0), Decimal(0)])
    idle_to: dict[str, set[str]] = defaultdict(set)
    for deployment_day in report.deployment_days:
        entry = by_deployment[(deployment_day.deployment, deployment_day.currency)]
        entry[0] = money_sum((entry[0], deployment_day.cost))
        entry[1] = money_sum((entry[1], deployment_day.used))
        entry[2] = money_sum((entry[2], deployment_day.capacity or Decimal(0)))
        if deployment_day.idle_to:
            idle_to[deployment_day.deployment].add(deployment_day.idle_to)
    for (deployment, ptu_currency), (cost, used, capacity) in sorted(by_deployment.items()):
        share = f"{used / capacity:.1%}" if capacity else "unknown"
        ptu_rows.append((_e(deployment), _amount(cost, ptu_currency), _e(share),
                         _e(", ".join(sorted(idle_to[deployment])) or "spread over users")))
    parts = ['<section id="anomalies"><h2>Anomalies and provisioned capacity</h2>']
    parts.append(f'<ul id="anomaly-list">{"".join(items)}</ul>' if items else
                 '<p class="ok" id="no-anomalies">No anomaly found.</p>')
    if ptu_rows:
        parts.append(_table("ptu-table", ("PTU deployment", "capacity cost", "utilisation", "idle charged to"),
                            ptu_rows, {1, 2}))
    parts.append("</section>")
    return "".join(parts)
