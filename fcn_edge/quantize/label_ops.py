"""Convolutions that only place class scores for ArgMax stay float on every placement.

The export's label pass (:mod:`fcn_edge.export.lean`) interpolates the final scores with a
fixed-weight convolution feeding ArgMax directly. In INT8 its bilinear taps (down to 1/256)
round away and its output's rounding creates ties between classes: labels change where the
float graph is exact. It costs little in float, so the quantizer leaves it alone.
"""

from __future__ import annotations

import onnx

SHAPE_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity")


def label_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Convs whose output reaches an ArgMax through shape-only ops, and nothing else."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def only_argmax(tensor: str) -> bool:
        nodes = readers.get(tensor, [])
        return bool(nodes) and all(n.op_type == "ArgMax" or (n.op_type in SHAPE_OPS and only_argmax(n.output[0])) for n in nodes)

    return [n.name for n in model.graph.node if n.op_type == "Conv" and only_argmax(n.output[0])]
