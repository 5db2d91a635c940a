"""The `chargeback` command. Each command lives in a module of its own, imported only when it
runs (or its help is asked for), so that `chargeback --help` loads click and nothing else.

Each command parses its arguments, asks `pipeline.app` for the wired ports and calls one stage;
user mistakes become one clear line and exit 1, never a traceback.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click


@dataclass(frozen=True, slots=True)
class Entry:
    module: str  # under pipeline.entrypoints.cli
    attribute: str
    summary: str  # the command's short help (SUMMARY_WIDTH), listed by `chargeback --help`; a test keeps it current


COMMANDS: dict[str, Entry] = {  # in the order `chargeback --help` lists them
    "demo": Entry("demo", "demo_command",
                  "Generate a month of realistic APIM traffic, then ingest, snapshot and report it."),
    "ingest": Entry("ingest", "ingest_command",
                    "Ingest usage events from JSON-lines FILES (`-` for stdin) into the ledger and counters."),
    "consume": Entry("consume", "consume_command",
                     "Ingest the usage Event Hub's events until stopped; checkpoints after each ledger write."),
    "send": Entry("consume", "send_command",
                  "Send usage events (a JSON-lines FILE or --synthetic N) to an Event Hub: a smoke test."),
    "snapshot": Entry("snapshot", "snapshot_command",
                      "Write new ledger events to Parquet snapshots (usage/date=YYYY-MM-DD/*.parquet)."),
    "report": Entry("report", "report_command",
                    "Price a month (or any range of days) of usage and write the report files."),
    "query": Entry("query", "query_command",
                   "Run DuckDB SQL over the snapshots and the finance views."),
    "usage": Entry("usage", "usage_command",
                   "Show month-to-date requests, tokens and spend from the live counters, against budgets."),
    "budgets": Entry("budgets", "budgets_command",
                     "Show every budget's spend, forecast and state; --publish sets the gateway's."),
    "reconcile": Entry("reconcile", "reconcile_command",
                       "Compare a month's live counters with the ledger; --apply rebuilds them."),
    "reconcile-azure": Entry("reconcile_azure", "reconcile_azure_command",
                             "Compare the ledger with Azure Monitor's counts and the billed cost."),
    "replay": Entry("replay", "replay_command",
                    "Re-drive events through ingest from Capture files, dead letters or JSON lines."),
    "correct": Entry("correct", "correct_command",
                     "Record corrections from a YAML or CSV FILE; every report applies them from then on."),
    "corrections": Entry("correct", "corrections_command",
                         "List the recorded corrections, in the order they were recorded."),
    "ingest-llm-logs": Entry("llm_logs", "ingest_llm_logs_command",
                             "Store the token counts of APIM's LLM logs (GatewayLlmLogs) from FILES."),
    "doctor": Entry("doctor", "doctor_command",
                    "Check the settings, backends, reference files and data flow; print the fix for each "
                    "problem."),
    "prices": Entry("prices", "prices_group",
                    "Price catalogs (CSV, prices per 1M tokens): check one, or import one from the Retail Prices API."),
}


SUMMARY_WIDTH = 100


class LazyGroup(click.Group):
    """A group whose commands are imported when one is run or its help shown; the group's own
    help lists their summaries from COMMANDS without importing them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(f"{__name__}.{entry.module}"), entry.attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.summary) for name, entry in COMMANDS.items()])


@click.group(cls=LazyGroup)
@click.version_option(package_name="apim-openai-chargeback")
def main() -> None:
    """Chargeback for Azure OpenAI traffic through Azure API Management.

    Data lives under $CHARGEBACK_HOME (default ./.chargeback). Start with `chargeback demo`.
    """
