"""The machine's own ceiling: a large matrix product in each framework, timed in the same run.

Achieved GFLOP/s of a model means little alone; as a share of what this machine does on a
dense matrix product (in the same framework and precision) it says how much room is left.
The same products are the reference workloads that latency baselines are normalised by.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from ..backends.onnxruntime.session import session_options

MATMUL_SIZE = 1024


def matmul_flops(n: int = MATMUL_SIZE) -> float:
    return 2.0 * n**3


def torch_matmul(n: int = MATMUL_SIZE) -> Callable[[], object]:
    a, b = torch.randn(n, n), torch.randn(n, n)

    def run() -> torch.Tensor:
        return a @ b

    return run


def _ort_session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])


def ort_matmul(n: int = MATMUL_SIZE, threads: int = 2, int8: bool = False) -> Callable[[], object]:
    """FP32 MatMul, or uint8 x int8 MatMulInteger (what INT8 convolutions reduce to)."""
    rng = np.random.default_rng(0)
    if int8:
        a = rng.integers(0, 255, (n, n), dtype=np.uint8)
        b = rng.integers(-127, 127, (n, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])]
        initializer = [helper.make_tensor("b", TensorProto.INT8, [n, n], b.tobytes(), raw=True)]
        output = helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])
    else:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
        inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])]
        initializer = [helper.make_tensor("b", TensorProto.FLOAT, [n, n], b.tobytes(), raw=True)]
        output = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([node], "ceiling", inputs, [output], initializer)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = _ort_session(model, threads)

    def run() -> object:
        return session.run(None, {"a": a})

    return run
