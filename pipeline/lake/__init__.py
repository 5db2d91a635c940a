"""The lake: how the pipeline lays out what it keeps in the object store (the Arrow schema of an
event, the snapshot manifests, the LLM-usage files, the dead letters) and DuckDB over it."""
