"""FP16 ONNX with the numerically sensitive ends kept in FP32, inputs and outputs unchanged.

Converted with ONNX Runtime's own ``float16`` tool (onnxconverter-common's, shipped with
onnxruntime). Kept in FP32:
  - pre-processing: every node before the first Conv (uint8 -> float, channel flip, mean/std):
    255/std needs more mantissa than FP16 has to land on the same normalised value;
  - the tail after the last Conv (crop, ArgMax, Softmax, Cast to labels): logits of
    near-tied classes must compare exactly as in FP32 or labels flicker;
  - op types whose FP16 form loses range or has no kernel (ONNX Runtime's default block
    list: TopK, Range, CumSum, Min/Max, ...).
Resize stays FP16: bilinear weights are convex combinations and keep FP16's precision.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from ..atomic import atomic_path

SENSITIVE_OPS = ("ArgMax", "ArgMin", "Softmax", "LogSoftmax", "Cast")


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes before the first and after the last Conv (pre- and post-processing)."""
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "ConvTranspose")]
    if not convs:
        return []
    return [n.name for i, n in enumerate(nodes) if i < convs[0] or i > convs[-1]]


def to_fp16(source: str | Path, output: str | Path) -> list[str]:
    """Write the mixed FP16 model; returns the names of the nodes kept in FP32 by position."""
    model = onnx.load(str(source))
    for index, node in enumerate(model.graph.node):  # the block list works by name
        node.name = node.name or f"{node.op_type}_{index}"
    kept = fp32_nodes(model)
    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *SENSITIVE_OPS], node_block_list=kept
    )
    with atomic_path(output) as tmp:
        onnx.save_model(converted, tmp)
    return kept
