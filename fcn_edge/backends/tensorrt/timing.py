"""Median latency of a built engine on one frame: how a build on a GPU compares precisions.

The automatic precision choice asks "is INT8 (or FP16) faster than FP32 here?", and only
the engine on the GPU it will run on can answer it: timed with ONNX Runtime on the CPU,
FP16 is slower than FP32 and would never be chosen. The frame sits in the runner's frame
pool, so what is timed is what the stream does per frame: one copy in, the engine, the
labels out, one synchronize.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .runner import TrtRunner, write_sidecar


def median_latency_ms(engine: Path, facts: dict[str, Any], frame: np.ndarray, runs: int = 20, warmup: int = 5) -> float:
    """Median wall time of ``infer`` on ``frame`` (HxWx3 uint8); writes the sidecar the runner needs beside ``engine``."""
    write_sidecar(engine, facts)
    with TrtRunner(engine, check_inputs=False) as runner:
        buffer = runner.frame_buffer(frame.shape)
        buffer[:] = frame
        for _ in range(warmup):
            runner.infer(buffer)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            runner.infer(buffer)  # returns after the stream synchronize: the whole frame's work
            times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))
