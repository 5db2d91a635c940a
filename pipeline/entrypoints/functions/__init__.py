"""The Azure Functions entry points (Python v2 programming model), as blueprints that the root
`function_app.py` registers:

    eventhub.bp   ingest_usage_events   Event Hub trigger, batches of usage events -> ingest
    llm_logs.bp   ingest_llm_logs       Event Hub trigger, APIM diagnostic logs -> LLM-log usage records
    timers.bp     snapshot_usage        every 15 minutes: ledger -> Parquet snapshots
                  refresh_reports       daily: this month's (and early on, last month's) report

Each trigger body only translates the host's input into one call of a plain function in the
same module; tests call those functions directly. App settings, host.json choices and the
retry semantics are described in docs/functions.md.
"""
