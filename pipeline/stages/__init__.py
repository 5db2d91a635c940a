"""The pipeline's verbs: ingest, snapshot, report. Each returns a small result object."""
