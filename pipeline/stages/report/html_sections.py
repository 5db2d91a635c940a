"""Sections of the HTML report about how usage was billed: service tiers and spillover, and the
reconciliation with Azure Monitor when one was published with the report."""

from __future__ import annotations

from pipeline.domain.pricing import STANDARD
from pipeline.stages.report.html_parts import amount, count, escape, table
from pipeline.stages.report.model import Report


def tiers_section(report: Report) -> str:
    """Pay-as-you-go usage by service tier and spillover, with its audio tokens."""
    totals = report.tier_totals()
    if all(tier == STANDARD and not spilled and not total.audio_tokens for (tier, spilled, _), total in totals.items()):
        return ('<section id="tiers"><h2>Service tiers and spillover</h2><p class="ok" id="standard-only">'
                "All pay-as-you-go usage was billed at the standard tier: no flex or priority requests, no "
                "spillover from provisioned deployments, no audio tokens.</p></section>")
    return ('<section id="tiers"><h2>Service tiers and spillover</h2><p>Pay-as-you-go usage by the tier Azure '
            "served it at, and the requests it spilled over from provisioned deployments (billed at their "
            "spillover deployment's prices).</p>"
            + table("tier-costs", ("service tier", "spillover", "requests", "audio tokens", "cost"),
                    ((escape(tier), "yes" if spilled else "no", count(total.requests), count(total.audio_tokens),
                      amount(total.cost, currency)) for (tier, spilled, currency), total in totals.items()),
                    {2, 3, 4})
            + "</section>")


def reconciliation_section(report: Report) -> str:
    """Metered vs Azure Monitor per deployment, when a reconciliation was published with the report."""
    if not report.reconciliation:
        return ""
    gaps = sum(line.gap_days for line in report.reconciliation)
    verdict = (f'<p class="warn" id="reconciliation-gaps">{gaps:,} deployment-day(s) differ from Azure Monitor by more '
               "than the tolerance: lost events, missing LLM logs or traffic around APIM "
               "(<code>reconciliation-*.csv</code> has every day).</p>" if gaps else
               '<p class="ok" id="reconciliation-ok">Every deployment-day is within the tolerance of Azure '
               "Monitor.</p>")
    rows = ((escape(line.deployment) + (" &#9888;" if line.gap_days else ""), count(line.metered_requests),
             count(line.azure_requests), f"{line.azure_requests - line.metered_requests:+,}",
             f"{line.prompt_tokens_gap:+,}", f"{line.completion_tokens_gap:+,}", f"{line.worst_pct}%",
             count(line.gap_days), amount(line.gap_cost, line.currency) if line.gap_cost is not None else "-")
            for line in report.reconciliation)
    return ('<section id="reconciliation"><h2>Reconciliation with Azure Monitor</h2>' + verdict
            + table("reconciliation-deployments", ("deployment", "metered requests", "Azure requests", "gap",
                                                     "prompt tokens gap", "completion tokens gap", "worst day",
                                                     "days over", "gap cost"), rows, {1, 2, 3, 4, 5, 6, 7, 8})
            + "</section>")
