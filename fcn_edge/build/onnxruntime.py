"""The ONNX Runtime backend: an artifact is a precision-specific .onnx plus the session options to run it.

ONNX Runtime optimises a graph when a session opens (Q/DQ units into integer kernels,
layout changes), so the artifact is the portable .onnx and not a pre-optimised file:
those embed instruction-set-specific kernels and would break on a different CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

from ..runtime.ort import session_options

VERSION = ort.__version__
THREADS = 2


def describe_options(threads: int = THREADS) -> dict:
    return {"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_num_threads": threads, "allow_spinning": False,
            "providers": ["CPUExecutionProvider"]}


def session(model: str | Path | onnx.ModelProto, threads: int = THREADS) -> ort.InferenceSession:
    """A CPU session for a file or an in-memory model (saved to a temporary file: protos over 2 GB need one)."""
    if isinstance(model, onnx.ModelProto):
        with tempfile.TemporaryDirectory(prefix="fcn_edge_ort_") as tmp:
            path = Path(tmp) / "model.onnx"
            onnx.save_model(model, path)
            return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    return ort.InferenceSession(str(model), session_options(threads), providers=["CPUExecutionProvider"])
