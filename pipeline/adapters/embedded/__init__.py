"""The embedded adapters: SQLite ledger and counters and a local-folder object store, the
defaults that need no server."""
