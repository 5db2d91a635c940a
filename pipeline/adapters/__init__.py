"""Storage adapters behind the ports in pipeline.ports: embedded (SQLite, local folder) first."""
