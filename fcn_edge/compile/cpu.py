"""Which CPU runtime runs an artifact: each one installed verifies and times it, and the faster wins.

ONNX Runtime and OpenVINO run the same .onnx files (OpenVINO also runs FP32 models in BF16),
at speeds that differ by model, precision and CPU (docs/cpu.md), so the build measures rather than guesses: every
installed runtime that runs the precision gets its own verification row and latency, and the
sidecar names the faster, which ``--backend auto`` then runs (:func:`fcn_edge.backends.backend_for`):
ONNX Runtime unless OpenVINO is faster beyond the spread of the interleaved timing (:mod:`.timing`).
"""

from __future__ import annotations

from pathlib import Path

from ..backends import onnxruntime as ort_backend
from ..capabilities import LABELS, float_ops
from ..runner import Runner


def label(precision: str, backend: str) -> str:
    return f"{precision.upper()} ({LABELS[backend]})"


def runner(backend: str, precision: str, model: Path, threads: int, cache_dir: Path) -> Runner:
    """The inactive runner the stream opens for ``model`` (:func:`fcn_edge.backends.open_runner` with the sidecar the build
    will write): ``backend`` at ``threads``, float ops as ``precision`` runs them there; the build verifies and times
    through it. ``cache_dir``: OpenVINO's compiled models of the build's temporary files, kept with them."""
    if backend == "openvino":
        from ..backends import openvino

        return openvino.make_runner(model, threads=threads, precision=float_ops(backend, precision), cache_dir=cache_dir)
    return ort_backend.make_runner(model, threads=threads)


def sidecar_entry(
    backend: str, precision: str, measured: dict[str, float], why: str, openvino_version: str | None, threads: int
) -> dict:
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
