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


def interleaved(workloads: dict[str, Callable[[], object]], rounds: int = 7, per_round: int = 3, warmup: int = 5,
                quiet_by: str | None = None) -> dict[str, LatencyStats]:  # fmt: skip
    """Round-robin timing: each round runs every workload ``per_round`` times in turn.

    ``quiet_by`` names a reference workload: only the rounds in which it ran at or below its median
    round time count (the quieter half of the rounds: a burst of load elsewhere slows the reference too).
    """
    rounds_ms = round_robin(workloads, rounds, per_round, warmup)
    if quiet_by is not None:
        level = float(np.median([np.median(r[quiet_by]) for r in rounds_ms]))
        rounds_ms = [r for r in rounds_ms if np.median(r[quiet_by]) <= level]
    return {name: stats_from_ms([t for r in rounds_ms for t in r[name]]) for name in workloads}


def round_robin(
    workloads: dict[str, Callable[[], object]], rounds: int, per_round: int, warmup: int
) -> list[dict[str, list[float]]]:
    """Per round, each workload's ``per_round`` times (ms), run back to back: the first call after another
    workload pays for the switch (caches, waking threads), so a round's median is its steady state."""
    for fn in workloads.values():
        for _ in range(warmup):
            fn()
    return [{name: [time_call(fn) for _ in range(per_round)] for name, fn in workloads.items()} for _ in range(rounds)]
