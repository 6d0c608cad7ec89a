"""The post-processing between the network's class scores and ArgMax stays float.

Multi-scale averaging and the guided filter (:mod:`fcn_edge.models.multiscale`,
:mod:`fcn_edge.models.refine`) start at a Softmax and end at ArgMax: probabilities in 0..1,
a variance computed as ``E[g^2] - E[g]^2`` (cancellation that 8 bits cannot hold) and
per-pixel divisions. In INT8 they cost 10-17 mIoU points on the default model (measured,
docs/boundaries.md) and run slower than in float, since the ops are element-wise and cheap.
The tail is every node downstream of a Softmax up to the ArgMax, plus every node all of
whose readers are in the tail (the frame's guide branch, the score Resize feeding the
Softmax), never crossing a weighted layer. Graphs without a Softmax have no tail.
"""

from __future__ import annotations

import onnx

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def score_tail(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes between the first Softmax and the ArgMax, and of the branches only they read."""
    nodes = list(model.graph.node)
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    tail: set[str] = set()
    frontier = [n for n in nodes if n.op_type == "Softmax"]
    while frontier:  # downstream of every Softmax
        node = frontier.pop()
        if node.name in tail or node.op_type == "ArgMax":
            continue
        tail.add(node.name)
        frontier += [r for out in node.output for r in readers.get(out, [])]
    changed = bool(tail)
    while changed:  # upstream: nodes read only by the tail
        changed = False
        for node in nodes:
            if node.name in tail or node.op_type in WEIGHTED:
                continue
            read_by = [r for out in node.output for r in readers.get(out, [])]
            if read_by and all(r.name in tail for r in read_by):
                tail.add(node.name)
                changed = True
    return [n.name for n in nodes if n.name in tail]
