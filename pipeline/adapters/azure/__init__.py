"""The Azure adapters: Cosmos DB ledger, Redis counters (Entra ID), Blob Storage store, Event
Hubs Capture files and the pyarrow filesystem over Blob. The SDKs load only when one is used."""
