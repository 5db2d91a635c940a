"""Benchmarks of the chargeback pipeline against bare baselines: `make bench` (docs/benchmarks.md)."""
