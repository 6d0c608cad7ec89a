"""Which CPU runtime runs an artifact: each one installed verifies and times it, and the faster wins.

ONNX Runtime and OpenVINO run the same .onnx files (OpenVINO also runs FP32 models in BF16),
at speeds that differ by model, precision and CPU (docs/cpu.md), so the build measures rather than guesses: every
installed runtime that runs the precision gets its own verification row and latency, and the
sidecar names the faster, which ``--backend auto`` then runs (:func:`fcn_edge.backends.backend_for`):
ONNX Runtime unless OpenVINO is faster beyond the spread of the interleaved timing (:mod:`.timing`).
"""

from __future__ import annotations

from typing import Callable

from ..backends import onnxruntime as ort_backend
from ..capabilities import LABELS, float_ops


def label(precision: str, backend: str) -> str:
    return f"{precision.upper()} ({LABELS[backend]})"


def opener(backend: str, precision: str, threads: int = ort_backend.THREADS) -> Callable:
    """A function opening a verification (or, for a model the runners do not take, latency) session of ``backend``."""
    if backend == "openvino":
        from ..backends import openvino

        return lambda model: openvino.session(model, threads, float_ops(backend, precision))
    return lambda model: ort_backend.session(model, threads)


def facts(backend: str, precision: str, measured: dict[str, float], why: str, openvino_version: str | None, threads: int) -> dict:
    """The sidecar's ``backend`` entry for a CPU artifact: what runs it, with what settings (``threads``: as timed), and why."""
    if len(measured) > 1:
        why += "; measured: " + ", ".join(f"{LABELS[b]} {ms:.1f} ms" for b, ms in sorted(measured.items(), key=lambda kv: kv[1]))
        if min(measured, key=measured.get) != backend:
            why += f" (within the spread: {LABELS[backend]}, the default, runs it)"
    if backend == "openvino":
        inference = "bf16" if float_ops(backend, precision) == "bf16" else "f32"
        settings = {"version": openvino_version, "inference_precision": inference,
                    "threads": threads, "performance_hint": "LATENCY", "streams": 1}  # fmt: skip
    else:
        settings = {"version": ort_backend.VERSION, "session_options": ort_backend.describe_options(threads)}
    return {"name": backend, "device": "CPU", **settings, "why": why}
