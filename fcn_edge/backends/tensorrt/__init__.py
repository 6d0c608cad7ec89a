"""TensorRT: engines built on the GPU they run on (desktop CUDA, Jetson), from the Q/DQ or FP16 ONNX.

``import tensorrt`` happens inside the functions that need it (:func:`api.import_tensorrt`),
so importing this package costs nothing on a machine without TensorRT. :mod:`.api` holds
the per-version table, :mod:`.build` makes engines, :mod:`.runner` runs them.
"""

from __future__ import annotations

from pathlib import Path

from ...sidecar import Sidecar
from .build import TrtBuildOptions, TrtProbe, build_engine, probe
from .runner import TrtRunner

__all__ = ["TrtBuildOptions", "TrtProbe", "TrtRunner", "build_engine", "make_runner", "probe"]


def make_runner(path: str | Path, *, cuda_binding: str = "auto", check_inputs: bool = True,
                sidecar: Sidecar | None = None) -> TrtRunner:  # fmt: skip
    """An inactive runner for a serialized engine and the sidecar beside it (``sidecar``: already read)."""
    return TrtRunner(path, cuda_binding=cuda_binding, check_inputs=check_inputs, sidecar=sidecar)
