"""Event Hub trigger for APIM's diagnostic logs: each batch of Azure Monitor envelopes from the
gateway-logs hub (GatewayLogs and GatewayLlmLogs) goes through `ingest_llm_batch` once, which
keeps the GatewayLlmLogs token counts and nothing else.

No `from __future__ import annotations` here: the Functions worker reads the trigger's
parameter annotations at indexing time and expects real types, not strings.

App settings: CHARGEBACK_LLM_LOGS_EVENTHUB_NAME (the hub the diagnostic setting streams to),
CHARGEBACK_LLM_LOGS_CONSUMER_GROUP (this app's own group on it), and the identity-based
connection `EVENTHUB_LLM_LOGS__fullyQualifiedNamespace` (the app's identity needs "Azure Event
Hubs Data Receiver" on that hub). See docs/functions.md.
"""

import logging
import typing
from collections.abc import Sequence

import azure.functions as func

from pipeline.app import open_store
from pipeline.entrypoints.functions.eventhub import batch_trigger, describe_batch, raw_messages
from pipeline.lake.areas import LLM_USAGE
from pipeline.ports import ObjectStore
from pipeline.settings import Settings
from pipeline.stages.llm_usage import LlmIngestResult, ingest_llm_batch

# Binding expressions the Functions host resolves from app settings.
EVENTHUB_NAME_SETTING = "CHARGEBACK_LLM_LOGS_EVENTHUB_NAME"
CONSUMER_GROUP_SETTING = "CHARGEBACK_LLM_LOGS_CONSUMER_GROUP"
CONNECTION = "EVENTHUB_LLM_LOGS"  # app settings EVENTHUB_LLM_LOGS__fullyQualifiedNamespace (+ __credential, __clientId)

bp = func.Blueprint()  # type: ignore[no-untyped-call]


# The usage trigger's registration and retry policy (batch_trigger): a batch is never skipped
# while the store is down. Bad records never raise; only a failing store write does.
@batch_trigger(bp, "ingest_llm_logs", CONNECTION, EVENTHUB_NAME_SETTING, CONSUMER_GROUP_SETTING)
def ingest_llm_logs(events: typing.List[func.EventHubEvent], context: func.Context) -> None:  # noqa: UP006
    settings = Settings.from_env()
    try:
        result = ingest_llm_events(events, open_store(settings, LLM_USAGE), llm_logs_source(settings))
    except Exception:
        logging.exception("LLM-log ingest of %s failed (retry %s); the host retries it before checkpointing",
                          describe_batch(events), getattr(context.retry_context, "retry_count", "?"))
        raise
    logging.info("LLM-log ingest of %s: %d record(s), kept %d, discarded %d, rejected %d (%s), %d new file(s)",
                 describe_batch(events), result.records, result.kept, sum(result.discarded.values()),
                 sum(result.rejected.values()), dict(result.rejected), result.files_written)


def ingest_llm_events(events: Sequence[func.EventHubEvent], store: ObjectStore, source: str) -> LlmIngestResult:
    """One trigger batch of envelopes into the `llm-usage` area. Any store failure propagates, so
    that the host retries the whole batch; a retried or redelivered batch writes nothing new."""
    return ingest_llm_batch(raw_messages(events, source), store)


def llm_logs_source(settings: Settings) -> str:
    """`eventhub:<namespace>/<hub>` from the trigger's app settings."""
    namespace, hub = settings.llm_logs_eventhub_namespace, settings.llm_logs_eventhub_name
    return f"eventhub:{namespace or 'unknown'}/{hub or 'unknown'}"
