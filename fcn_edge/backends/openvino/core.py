"""What every OpenVINO model of the project is compiled with, and whether OpenVINO is here at all.

``import openvino`` happens only in :func:`import_openvino`, so the package imports on a machine
without the [openvino] extra. Three settings are explicit because OpenVINO's defaults are wrong
for this project:

- **precision.** On a CPU with AVX512_BF16 (or AMX) OpenVINO silently runs FP32 models in BF16.
  Here FP32 means FP32, and BF16 is its own precision with its own verification row.
- **shape.** A model compiled for the frame's exact size ran 1.6x faster than with the open
  (dynamic) input shape on the default model: the caller compiles once per size (see
  :class:`fcn_edge.backends.openvino.runner.OvRunner`).
- **threads and streams.** One stream of ``threads`` threads, latency hint: one frame at a time;
  or, for a runner with frames in flight, ``streams`` streams sharing the threads, throughput
  hint; threads not pinned to cores (measured under a camera's pacing, docs/cpu.md).

Compiled models are cached on disk (``cache_dir``): a second start at a size seen before
loads in a fifth of the time (0.17 s against 0.95 s for the default model at 640x480).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import FcnEdgeError

FLOAT_OPS = {"fp32": "f32", "bf16": "bf16"}  # capabilities.float_ops -> OpenVINO's inference precision hint
INSTALL = "pip install 'fcn_edge[openvino]'"


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as error:
        raise FcnEdgeError(f"OpenVINO is not installed ({error}): {INSTALL}, or use --backend onnxruntime") from None
    return openvino


def default_cache_dir() -> Path:
    """Where compiled models are kept: $FCN_EDGE_CACHE, else the user's cache folder."""
    if os.environ.get("FCN_EDGE_CACHE"):
        return Path(os.environ["FCN_EDGE_CACHE"]) / "openvino"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fcn_edge" / "openvino"


@dataclass(frozen=True)
class OvProbe:
    available: bool
    version: str | None
    reason: str
    bf16: bool  # the CPU runs BF16 natively (AVX512_BF16 or AMX)


def probe() -> OvProbe:
    """Is OpenVINO importable, which version, and can this CPU run BF16? Never raises."""
    try:
        openvino = import_openvino()
        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except FcnEdgeError as error:
        return OvProbe(False, None, str(error), False)
    version = openvino.__version__.split("-")[0]
    return OvProbe(True, version, f"OpenVINO {version} on the CPU", "BF16" in capabilities)


def check_precision(precision: str) -> str:
    """OpenVINO's inference precision for ``precision``; FcnEdgeError if unknown or the CPU cannot run it."""
    if precision not in FLOAT_OPS:
        raise FcnEdgeError(f"OpenVINO precision {precision!r} is unknown: choose one of {', '.join(FLOAT_OPS)}")
    if precision == "bf16" and not probe().bf16:
        raise FcnEdgeError("this CPU has no BF16 instructions (AVX512_BF16 or AMX): use an FP32 or INT8 artifact")
    return FLOAT_OPS[precision]


def compile_config(threads: int, precision: str, streams: int = 1) -> dict[str, Any]:
    """The properties every compiled model of the project gets (see the module docstring); ``streams`` > 1 splits
    the threads between that many frames in flight."""
    openvino = import_openvino()
    props, hints = openvino.properties, openvino.properties.hint
    mode = hints.PerformanceMode.LATENCY if streams == 1 else hints.PerformanceMode.THROUGHPUT
    return {
        hints.inference_precision: check_precision(precision),
        hints.performance_mode: mode,
        props.inference_num_threads: threads,
        props.num_streams: streams,
        # unpinned: a pinned thread waits for its core when anything else runs there; pinned was slower in 3 of 5
        # runs under a camera's pacing, with the longer tails (benchmarks/cpu_threads.py, docs/cpu.md)
        hints.enable_cpu_pinning: False,
    }


def new_core(cache_dir: Path | None) -> Any:
    """An OpenVINO Core, caching compiled models in ``cache_dir`` (None: no cache)."""
    openvino = import_openvino()
    core = openvino.Core()
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FcnEdgeError(f"cannot create the OpenVINO cache folder {cache_dir} ({error.strerror}): set FCN_EDGE_CACHE to a writable folder") from None
        core.set_property({openvino.properties.cache_dir: str(cache_dir)})
    return core


def compile_for_shape(core: Any, model: Any, shape: list[int], config: dict[str, Any]) -> Any:
    """``model`` (read once) compiled for one static input shape; the model itself is left open-shaped."""
    static = model.clone()
    static.reshape({static.inputs[0]: shape})
    return core.compile_model(static, "CPU", config)
