"""The pipeline's verbs (ingest, snapshot, replay, reconcile, llm_usage, correct, report): each
works on the ports it is given and returns a small result object that says what it did."""
