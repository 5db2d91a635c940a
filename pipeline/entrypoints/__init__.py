"""The entry points: the `chargeback` CLI and the Azure Functions triggers. They translate input
into calls of pipeline.app and the stages, and nothing more."""
