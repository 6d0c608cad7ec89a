"""GPU tests run where a CUDA GPU is visible (and TensorRT, for the TensorRT ones); elsewhere they skip with the reason."""

from __future__ import annotations

import functools
import os
from typing import Iterator

import pytest

from fcn_edge.backends.tensorrt import api as trt_api
from fcn_edge.errors import FcnEdgeError
from fcn_edge.backends.cuda import CudaBinding, find_gpu, open_cuda


@functools.cache
def _gpu_problem() -> str | None:
    gpu, problem = find_gpu()
    return None if gpu is not None else problem


def skip_or_fail(reason: str) -> None:
    """Skip, or with FCN_EDGE_REQUIRE_GPU=1 (a GPU machine where every path must run) fail."""
    if os.environ.get("FCN_EDGE_REQUIRE_GPU") == "1":
        pytest.fail(f"FCN_EDGE_REQUIRE_GPU=1 and {reason}")
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = _gpu_problem() if item.get_closest_marker("gpu") else None
    if problem:
        skip_or_fail(f"no CUDA GPU: {problem}")


@pytest.fixture(scope="session")
def trt():
    """The tensorrt module; skips when it is not installed (the type stubs alone do not count)."""
    try:
        return trt_api.import_tensorrt()
    except FcnEdgeError as error:
        skip_or_fail(f"tensorrt not installed: {error}")


@pytest.fixture(params=["cuda-python", "pycuda"])
def cuda(request: pytest.FixtureRequest) -> Iterator[CudaBinding]:
    """Each CUDA binding on device 0; skips a binding that is not installed (a GPU is known to be here)."""
    try:
        binding = open_cuda(request.param)
    except FcnEdgeError as error:
        if "not installed" in str(error) or "cannot be imported" in str(error):
            skip_or_fail(f"{request.param}: {error}")
        raise
    yield binding
    binding.close()
