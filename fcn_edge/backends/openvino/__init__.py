"""OpenVINO: the fastest CPU backend where the [openvino] extra is installed.

It runs the artifacts ONNX Runtime runs (FP32 and Q/DQ INT8 .onnx, and FP32 models in BF16
on CPUs with AVX512_BF16), so no artifact is made for it: :mod:`.graph` rewrites what OpenVINO
reads in memory (HardSwish and ArgMax in the shape it fuses), :mod:`.runner` compiles per frame
size (the stream runs it, and the build verifies and times through it), :mod:`.core` holds the
settings and the lazy import (nothing here imports openvino until it is used).
"""

from __future__ import annotations

from pathlib import Path

from .core import FLOAT_OPS, OvProbe, default_cache_dir, probe
from .runner import OvRunner

__all__ = ["FLOAT_OPS", "OvProbe", "OvRunner", "default_cache_dir", "make_runner", "probe"]


def make_runner(path: str | Path, *, threads: int, precision: str = "fp32", check_inputs: bool = True, inflight: int = 1,
                cache_dir: Path | None = None) -> OvRunner:  # fmt: skip
    """An inactive runner; ``precision`` is how float ops run (fp32 or bf16), INT8 ops run INT8 either way;
    ``cache_dir`` (default: the user's cache) is where compiled models are kept: the build times temporary files."""
    return OvRunner(path, threads=threads, precision=precision, check_inputs=check_inputs, inflight=inflight, cache_dir=cache_dir)
