"""ONNX Runtime sessions: the options every session of the project runs with, for the runner and the build.

An ONNX Runtime artifact is a precision-specific .onnx plus these options.

ONNX Runtime optimises a graph when a session opens (Q/DQ units into integer kernels,
layout changes), so the artifact is the portable .onnx and not a pre-optimised file:
those embed instruction-set-specific kernels and would break on a different CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import onnxruntime as ort

from ...paths import utf8_path
from ...scratch import scratch_folder

VERSION = ort.__version__
THREADS = 2
# How intra-op threads wait, for every session of the project: chosen under camera-like pacing with
# benchmarks/cpu_threads.py (docs/cpu.md has the tables and the reasons). Workers sleep instead of spinning:
# on a quiet machine spinning saved ~10%, but whenever anything else wanted the cores (the stream's own
# threads, other processes) every spinning policy lost 20-60%, and sleeping never lost more than noise.
THREAD_POLICY = {"session.intra_op.allow_spinning": "0"}


def default_threads() -> int:
    """The cores this process may use (what ``taskset``/cgroups allow), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def session_options(threads: int, optimize: bool = True, policy: dict[str, str] | None = None) -> ort.SessionOptions:
    """The options every ONNX Runtime session of the project runs with (runtime, build verification).

    ``policy`` replaces :data:`THREAD_POLICY` only to measure alternatives (benchmarks/cpu_threads.py).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3  # errors only: failures reach the user as exceptions anyway
    return apply_thread_policy(options, policy)


def apply_thread_policy(options: ort.SessionOptions, policy: dict[str, str] | None = None) -> ort.SessionOptions:
    """``options`` with the project's thread policy; for sessions that need other optimisation levels (calibration)."""
    for key, value in (THREAD_POLICY if policy is None else policy).items():
        options.add_session_config_entry(key, value)
    return options


def describe_options(threads: int = THREADS) -> dict:
    return {
        "graph_optimization_level": "ORT_ENABLE_ALL",
        "intra_op_num_threads": threads,
        "thread_policy": THREAD_POLICY,
        "providers": ["CPUExecutionProvider"],
    }


def session(model: str | Path | onnx.ModelProto, threads: int = THREADS) -> ort.InferenceSession:
    """A CPU session for a file or an in-memory model (saved to a temporary file: protos over 2 GB need one)."""
    if isinstance(model, onnx.ModelProto):
        with scratch_folder("ort") as tmp:
            path = Path(tmp) / "model.onnx"
            onnx.save_model(model, path)
            return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    with utf8_path(model) as name:  # ORT refuses a name that is not UTF-8
        return ort.InferenceSession(name, session_options(threads), providers=["CPUExecutionProvider"])
