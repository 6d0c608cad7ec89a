"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization", section 4.1).

For two convs joined by a ReLU (or by nothing), ``B(relu(A x))``, output channel ``i`` of A
can be divided by any ``s_i > 0`` and input channel ``i`` of B multiplied by it: ReLU is
positively homogeneous, so the float function does not change. With
``s_i = sqrt(r1_i * r2_i) / r2_i`` (``r1_i`` the range of A's output-channel weights, ``r2_i``
that of B's input-channel weights) both get the same range ``sqrt(r1_i r2_i)``, which helps
per-tensor weight scales most and spreads the intermediate tensor's channels more evenly
over its one activation scale. A depthwise B takes channel ``i`` as its only input.
Pairs through HardSwish or anything else not homogeneous are left alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

ITERATIONS = 8  # chains A -> B -> C share B: a few sweeps converge (Nagel et al. iterate to convergence)


def _pairs(graph: onnx.GraphProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
    """(A, B): Conv A's output reaches only Conv B's data input, through at most one Relu that nothing else reads."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    weights = {t.name for t in graph.initializer}
    uses = {name: len(nodes) for name, nodes in readers.items()}

    def conv(node: onnx.NodeProto) -> bool:
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        return (node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights and uses[node.input[1]] == 1
                and (len(node.input) < 3 or not node.input[2] or (node.input[2] in weights and uses[node.input[2]] == 1))
                and groups >= 1)  # fmt: skip

    found = []
    for a in graph.node:
        if not conv(a) or a.output[0] in outputs:
            continue
        tensor = a.output[0]
        nxt = readers.get(tensor, [])
        if len(nxt) == 1 and nxt[0].op_type == "Relu" and nxt[0].output[0] not in outputs:
            tensor, nxt = nxt[0].output[0], readers.get(nxt[0].output[0], [])
        if len(nxt) == 1 and conv(nxt[0]) and nxt[0].input[0] == tensor:
            found.append((a, nxt[0]))
    return found


def equalize(model: onnx.ModelProto, iterations: int = ITERATIONS) -> list[str]:
    """Equalize every pair of :func:`_pairs` in place; returns "A->B" for each pair changed."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    arrays = {name: numpy_helper.to_array(t).astype(np.float64) for name, t in initializers.items()}
    changed = []
    pairs = _pairs(graph)
    for _ in range(iterations):
        for a, b in pairs:
            wa, wb = arrays[a.input[1]], arrays[b.input[1]]
            groups_b = next((x.i for x in b.attribute if x.name == "group"), 1)
            channels = wa.shape[0]
            if groups_b == 1 and wb.shape[1] == channels:
                r2 = np.abs(wb).max(axis=(0, *range(2, wb.ndim)))
            elif groups_b == channels and wb.shape[0] == channels and wb.shape[1] == 1:  # depthwise
                r2 = np.abs(wb).reshape(channels, -1).max(axis=1)
            else:
                continue
            r1 = np.abs(wa).reshape(channels, -1).max(axis=1)
            scale = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 * r2) / np.maximum(r2, 1e-30), 1.0)
            shape = (-1,) + (1,) * (wa.ndim - 1)
            arrays[a.input[1]] = wa / scale.reshape(shape)
            if len(a.input) > 2 and a.input[2]:
                arrays[a.input[2]] = arrays[a.input[2]] / scale
            if groups_b == 1:
                arrays[b.input[1]] = wb * scale.reshape((1, -1) + (1,) * (wb.ndim - 2))
            else:
                arrays[b.input[1]] = wb * scale.reshape(shape)
            name = f"{a.name}->{b.name}"
            if name not in changed:
                changed.append(name)
    for a, b in pairs:
        for tensor in (a.input[1], b.input[1], *(a.input[2:3] if len(a.input) > 2 and a.input[2] else [])):
            initializers[tensor].CopyFrom(numpy_helper.from_array(arrays[tensor].astype(np.float32), tensor))
    return changed
