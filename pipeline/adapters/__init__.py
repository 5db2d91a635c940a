"""Adapters behind the ports of pipeline.ports: `embedded` (SQLite, a local folder) and `azure`
(Cosmos DB, Redis, Blob Storage, Event Hubs Capture). Only pipeline.app opens them."""
