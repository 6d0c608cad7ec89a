"""Timing that survives a shared, noisy machine: warm-up, interleaved runs, robust statistics.

Figures are compared only as ratios measured in one run: ``interleaved`` times several
workloads round-robin, so a burst of load from a neighbour hits all of them alike.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class LatencyStats:
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int

    @property
    def throughput(self) -> float:
        """Inferences per second at the median latency."""
        return 1000.0 / self.median_ms if self.median_ms else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "throughput_per_s": self.throughput}


def stats_from_ms(samples: list[float] | np.ndarray) -> LatencyStats:
    values = np.asarray(samples, dtype=np.float64)
    return LatencyStats(
        median_ms=float(np.median(values)),
        p90_ms=float(np.percentile(values, 90)),
        p99_ms=float(np.percentile(values, 99)),
        mean_ms=float(values.mean()),
        runs=int(values.size),
    )


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def interleaved(workloads: dict[str, Callable[[], object]], rounds: int = 7, per_round: int = 3, warmup: int = 5) -> dict[str, LatencyStats]:
    """Round-robin timing: each round runs every workload ``per_round`` times in turn."""
    for fn in workloads.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(rounds):
        for name, fn in workloads.items():
            samples[name].extend(time_call(fn) for _ in range(per_round))
    return {name: stats_from_ms(values) for name, values in samples.items()}

