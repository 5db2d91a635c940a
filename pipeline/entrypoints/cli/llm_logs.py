"""`chargeback ingest-llm-logs`: store the token counts of APIM's LLM logs (GatewayLlmLogs)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pipeline.entrypoints.cli.options import console, user_errors
from pipeline.settings import Settings


@click.command("ingest-llm-logs", short_help="Store the token counts of APIM's LLM logs (GatewayLlmLogs) from FILES.")
@click.argument("files", nargs=-1, required=True)
@user_errors
def ingest_llm_logs_command(files: tuple[str, ...]) -> None:
    """Store the token counts of APIM's LLM logs from FILES (`-` for stdin): Azure Monitor
    envelopes {"records": [...]}, one per line or one per file. Only GatewayLlmLogs token counts
    are kept (never a message); reports use them for streamed requests that came without usage.
    Storing the same records again writes nothing.

    Example: chargeback ingest-llm-logs gateway-llm-logs-2026-11-03.jsonl
    """
    from pipeline.app import open_store
    from pipeline.entrypoints.cli.output import show_llm_ingest
    from pipeline.inputs.event_files import llm_log_messages
    from pipeline.lake.areas import LLM_USAGE
    from pipeline.lake.pandas_probe import skip_pandas_probe
    from pipeline.stages.llm_usage import LlmIngestResult, ingest_llm_logs

    skip_pandas_probe()  # this process never hands pyarrow a pandas object
    for name in files:
        if name != "-" and not Path(name).is_file():
            raise click.ClickException(f"{name}: no such file")
    store = open_store(Settings.from_env(), LLM_USAGE)
    total = LlmIngestResult()
    started = time.perf_counter()
    for name in files:
        total.add(ingest_llm_logs(llm_log_messages(name), store))
    total.seconds = time.perf_counter() - started
    show_llm_ingest(console, total)
