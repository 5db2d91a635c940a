"""What people hand the pipeline as files: the price catalog, the maps, provisioned capacity,
budgets, corrections, JSON-lines events and LLM-log envelopes (and the demo's synthetic traffic)."""
