"""The INT8 graph OpenVINO runs: the ONNX Runtime artifact with its hard-swish put back in OpenVINO's shape.

ONNX Runtime's preparation inlines HardSwish as ``x * HardSigmoid(x)`` (it has no HardSwish kernel),
and its placement quantizes each conv's output (its integer conv needs a QuantizeLinear there).
OpenVINO fuses ``Conv -> HardSwish -> FakeQuantize`` into one INT8 kernel (NNCF quantizes after the
activation), but given ``Conv -> Q/DQ -> HardSigmoid x Mul -> Q/DQ`` it runs a conv, then a float
convert, subtract, multiply, HardSigmoid and a reorder per block: on the trained LR-ASPP
(docs/compile.md) those took 4.6 of 20 ms and the INT8 model ran 1.14x FP32's latency. So for
OpenVINO the pair becomes one HardSwish again (the same arithmetic) and the Q/DQ between a conv
and its HardSwish goes, as the placement's ``activation`` rule does for Relu: one rounding fewer,
every INT8 conv and activation range unchanged.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from ..atomic import atomic_path
from . import placement

HARD_SWISH_OPSET = 14
HARD_SWISH_GATE = {"alpha": 1 / 6, "beta": 0.5}  # HardSwish(x) = x * HardSigmoid(x; alpha, beta)


def write(source: Path, output: Path) -> int:
    """Write ``source`` (an ONNX Runtime INT8 artifact) as OpenVINO's graph at ``output``; returns the hard-swishes fused."""
    model = onnx.load(str(source))
    fused = fuse_hard_swish(model)
    placement.apply(model, ("activation",))
    with atomic_path(output) as tmp:
        onnx.save_model(model, tmp)
    return fused


def fuse_hard_swish(model: onnx.ModelProto) -> int:
    """Replace each ``Mul(x, HardSigmoid(x; 1/6, 1/2))`` by ``HardSwish(x)``; returns how many (none below opset 14)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < HARD_SWISH_OPSET:
        return 0
    graph = model.graph
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)
    gates, swishes = set(), {}
    for gate in graph.node:
        if gate.op_type != "HardSigmoid" or not _is_hard_swish_gate(gate):
            continue
        users = readers.get(gate.output[0], [])
        mul = users[0] if len(users) == 1 else None
        if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([gate.input[0], gate.output[0]]):
            continue
        gates.add(id(gate))
        swishes[id(mul)] = helper.make_node("HardSwish", [gate.input[0]], list(mul.output), name=mul.name)
    nodes = [swishes.get(id(n), n) for n in graph.node if id(n) not in gates]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(swishes)


def _is_hard_swish_gate(node: onnx.NodeProto) -> bool:
    values = {a.name: a.f for a in node.attribute}
    defaults = {"alpha": 0.2, "beta": 0.5}  # HardSigmoid's own
    return all(abs(values.get(name, defaults[name]) - want) < 1e-6 for name, want in HARD_SWISH_GATE.items())
