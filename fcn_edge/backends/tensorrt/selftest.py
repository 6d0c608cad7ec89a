"""Engines of the default model at FP32, FP16 and INT8, built here and run on frames: the doctor's TensorRT path.

Each graph is first checked by :mod:`.compat`, built by :func:`.build.build_engine` with a
frame profile, run by :class:`.runner.TrtRunner` on the frames the caller gives (the doctor: held-out
synthetic scenes), and its labels compared with the same graph run by ONNX Runtime on the CPU (the
artifact the build verified): a failure anywhere in build, parse, run or numerics shows up as a row.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .build import TrtBuildOptions, build_engine
from .runner import TrtRunner, write_sidecar
from .timing import median_latency_ms

SCENE = (256, 512)  # (H, W) of the frames compared
LATENCY = (512, 1024)
PROFILE = dict(min_shape=(1, 128, 128, 3), opt_shape=(1, *SCENE, 3), max_shape=(1, *LATENCY, 3))
MIN_AGREEMENT = 0.98  # the build's default budget


def run_precision(
    precision: str, graph: Path, workdir: Path, frames: Sequence[np.ndarray], latency_frame: np.ndarray
) -> dict[str, Any]:
    """Build ``graph`` at ``precision``, run it on ``frames`` (uint8 HxWx3 within the profile); agreement with ONNX
    Runtime on the CPU, and the latency on ``latency_frame``."""
    import onnxruntime as ort

    started = time.perf_counter()
    engine = workdir / f"default.{precision}.engine"
    facts = build_engine(graph, engine, TrtBuildOptions(precision=precision, progress=False, **PROFILE))
    write_sidecar(engine, facts)
    cpu = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    same = total = 0
    with TrtRunner(engine) as runner:
        for frame in frames:
            (expected,) = cpu.run(["labels"], {cpu.get_inputs()[0].name: frame[None]})
            labels = runner.infer(frame)
            same += int((labels == expected[0]).sum())
            total += labels.size
    latency = median_latency_ms(engine, facts, latency_frame)
    agreement = same / total
    return {
        "precision": precision, "ok": agreement >= MIN_AGREEMENT, "agreement": round(agreement, 5),
        "latency_ms": round(latency, 3), "layer_precisions": facts["layer_precisions"],
        "build_seconds": facts["build_seconds"], "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
