"""STAND-INS FOR TESTS AND CI ONLY: TensorRT and CUDA where there is no GPU.

``FCN_EDGE_TENSORRT_STANDIN=8.6|10.3|10.13|11.4`` makes ``import tensorrt`` resolve to a
stand-in of that release's Python API (:mod:`.tensorrt_api`), and the CUDA bindings
(``cuda.bindings.runtime``/``driver`` of cuda-python, ``pycuda.driver``) to stand-ins over
one numpy-backed GPU (:mod:`.device`; ``FCN_EDGE_STANDIN_DEVICE=desktop|orin-agx|orin-nano``
picks which GPU it plays). fcn_edge's own code is not touched: its ``import`` statements
get these modules, so ``fcn-edge build`` and the stream run their GPU paths end
to end on a CPU. The engine runs its ONNX graph with ONNX Runtime at the engine's
precision, so a wrong precision, cache or profile changes labels or fails as on a GPU.
docs/tensorrt.md says what they check and what only a real GPU shows.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types

ENV = "FCN_EDGE_TENSORRT_STANDIN"


def install(line: str) -> None:
    """Put the stand-in modules where ``import tensorrt``, cuda-python and PyCUDA imports look first."""
    from . import cuda_driver, cuda_runtime, pycuda_driver, tensorrt_api

    cuda = types.ModuleType("cuda", "cuda-python STAND-IN (fcn_edge.standin)")
    bindings = types.ModuleType("cuda.bindings")
    utils = types.ModuleType("cuda.bindings.utils")
    utils.get_cuda_native_handle = lambda obj: int(obj)
    cuda.__path__, bindings.__path__ = [], []
    cuda.bindings, bindings.driver, bindings.runtime, bindings.utils = bindings, cuda_driver, cuda_runtime, utils
    pycuda = types.ModuleType("pycuda", "PyCUDA STAND-IN (fcn_edge.standin)")
    pycuda.__path__, pycuda.driver = [], pycuda_driver
    trt = tensorrt_api.module(line)
    for made in (trt, cuda, bindings, utils, pycuda):  # importlib.util.find_spec (the doctor's "is it installed") reads it
        made.__spec__ = importlib.machinery.ModuleSpec(made.__name__, None, is_package=made in (cuda, bindings, pycuda))
    sys.modules.update({
        "tensorrt": trt, "cuda": cuda, "cuda.bindings": bindings,
        "cuda.bindings.driver": cuda_driver, "cuda.bindings.runtime": cuda_runtime, "cuda.bindings.utils": utils,
        "pycuda": pycuda, "pycuda.driver": pycuda_driver,
    })  # fmt: skip


def install_from_environment() -> None:
    line = os.environ.get(ENV, "").strip()
    if line:
        install(line)
