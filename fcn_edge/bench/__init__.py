"""Benchmarks: latency statistics, machine fingerprints and in-run normalised baselines."""
