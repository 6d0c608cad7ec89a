"""ONNX Runtime: the CPU backend on every machine (CUDA/TensorRT providers where installed).

An artifact for it is a precision-specific .onnx run with :func:`session_options`; the stream,
the benchmarks and the build's verification and timing run :class:`OrtRunner`. :func:`session`
is ONNX Runtime's own API for what is not an artifact run: the build's FP32 reference and the
logits it compares, calibration, the INT8 search's float-graph evaluations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .runner import OrtRunner, resolve_providers
from .session import (
    THREAD_POLICY,
    THREADS,
    VERSION,
    apply_thread_policy,
    default_threads,
    describe_options,
    session,
    session_options,
)

__all__ = [
    "THREAD_POLICY", "THREADS", "VERSION", "OrtRunner", "apply_thread_policy", "default_threads", "describe_options",
    "make_runner", "resolve_providers", "session", "session_options",
]  # fmt: skip


def make_runner(
    path: str | Path,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    check_inputs: bool = True,
    optimize: bool = True,
    inflight: int = 1,
) -> OrtRunner:
    """An inactive runner; ``optimize=False`` (graph optimisations off) only shows that the latency tests catch it."""
    return OrtRunner(path, providers=providers, threads=threads, check_inputs=check_inputs, optimize=optimize,
                     inflight=inflight)  # fmt: skip
