"""Where Q/DQ pairs must NOT sit: two rules applied after ONNX Runtime's quantizer placed them.

ORT's quantizer puts a Q/DQ pair on every input of the ops it quantizes and, for ONNX
Runtime's placement, on their outputs too. Two of those pairs cost speed and buy nothing:

- **between an op and the activation that follows** (Conv -> Q/DQ -> Relu): the engine fuses
  the activation into the op, and the pair in between splits the fusion. The pair after the
  activation stays; with a zero point at the low end, ONNX Runtime folds the Relu into its
  integer conv (measured at 1024x512 on 2 cores: 30.2 ms against 33.7 ms, 99.98% same labels).
- **on the main branch of a residual Add**: TensorRT fuses ``Conv + Add (+ Relu)`` only when
  the conv output reaches the Add un-quantized and the other (residual) input carries the
  Q/DQ, the rule NVIDIA's TensorRT Model Optimizer adopted (``build_non_residual_input_map``):
  of two inputs that both come from a conv, the one on the longer path back to their lowest
  common ancestor is the main branch; of one, that one, unless the other input branches off
  that very conv. Not applied for ONNX Runtime: its integer conv needs a Q on its output, and
  without it the same model ran 2.3x slower (119 ms against 52 ms).

One more rule, ``float_weights``, for ONNX Runtime, where a conv whose output (or its
activation's) reaches no QuantizeLinear (ASPP's branches before their Concat, the depthwise
convs feeding a squeeze-excitation) runs in float anyway: its weight then arrives through a
DequantizeLinear, and ONNX Runtime runs such a conv with its generic kernel instead of the NCHWc
one the float graph gets. Those convs get the dequantized values as a float initializer (the
same numbers): DeepLabV3-MobileNetV3's three dilated ASPP convs took 15.3 ms each, 46 ms of an
82 ms INT8 model whose FP32 graph spent 35 ms on all its convs (docs/compile.md).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import onnx
from onnx import numpy_helper

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu")
FUSING_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")  # ops an engine fuses a following activation into
BACKBONES = ("Conv", "ConvTranspose")  # what a residual Add fuses into
RULES = ("activation", "residual", "float_weights")
FLOAT_WEIGHT_SUFFIX = "_float"  # names the float initializers float_weights writes: the INT8 weights' values


class _Graph:
    """Producers of the graph's tensors, and which tensors are constants (weights, Constant chains)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.producer = {out: node for node in graph.node for out in node.output}
        self.constant = {t.name for t in graph.initializer}
        for node in graph.node:  # graph.node is topologically sorted
            if all(i in self.constant for i in node.input if i):
                self.constant.update(node.output)

    def dequantized(self, tensor: str) -> str | None:
        """``t`` when ``tensor`` is DequantizeLinear(QuantizeLinear(t)) of a computed ``t``, else None."""
        dq = self.producer.get(tensor)
        q = self.producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in self.constant:
            return None
        return q.input[0]

    def float_producer(self, tensor: str) -> onnx.NodeProto | None:
        """The node computing ``tensor``, looking through a Q/DQ pair."""
        return self.producer.get(self.dequantized(tensor) or tensor)

    def distances(self, node: onnx.NodeProto) -> dict[str, int]:
        """Every computing ancestor of ``node`` (by name) with its distance in non-Q/DQ nodes."""
        found = {node.name: 0}
        todo = deque([node])
        while todo:
            current = todo.popleft()
            for tensor in current.input:
                parent = self.producer.get(tensor)
                if parent is None or tensor in self.constant or parent.name in found:
                    continue
                found[parent.name] = found[current.name] + (parent.op_type not in QDQ_OPS)
                todo.append(parent)
        return found

    def main_branch(self, add: onnx.NodeProto) -> int | None:
        """Which input of a two-input Add is the main (non-residual) branch, or None if neither is."""
        first, second = (self.float_producer(t) for t in add.input[:2])
        if first is None or second is None:
            return None
        near, far = self.distances(first), self.distances(second)
        common = set(near) & set(far)
        ancestor = min(common, key=lambda name: near[name] + far[name]) if common else None
        conv_first, conv_second = first.op_type in BACKBONES, second.op_type in BACKBONES
        if conv_first and conv_second:
            return 0 if ancestor is None or near[ancestor] >= far[ancestor] else 1
        if conv_first and ancestor != first.name:
            return 0
        if conv_second and ancestor != second.name:
            return 1
        return None


def edges_to_free(graph: onnx.GraphProto, rules: tuple[str, ...]) -> list[tuple[onnx.NodeProto, int]]:
    """(node, input index) of every input the ``rules`` say must not be quantized."""
    unknown = set(rules) - set(RULES)
    if unknown:
        raise ValueError(f"unknown placement rules {sorted(unknown)}: choose from {RULES}")
    view = _Graph(graph)
    found = []
    for node in graph.node:
        if "activation" in rules and node.op_type in ACTIVATIONS and view.dequantized(node.input[0]):
            producer = view.float_producer(node.input[0])
            if producer is not None and producer.op_type in FUSING_OPS:
                found.append((node, 0))
        if "residual" in rules and node.op_type == "Add" and len(node.input) == 2:
            if all(view.dequantized(t) for t in node.input):
                branch = view.main_branch(node)
                if branch is not None:
                    found.append((node, branch))
    return found


def apply(model: onnx.ModelProto, rules: tuple[str, ...]) -> list[str]:
    """Rewire the inputs the rules free to the un-quantized tensor; drop the Q/DQ nodes left unused.

    Returns "node:input" for each freed input, for the build's report.
    """
    graph = model.graph
    view = _Graph(graph)
    freed = []
    for node, index in edges_to_free(graph, rules):
        node.input[index] = view.dequantized(node.input[index])
        freed.append(f"{node.name}:{index}")
    _drop_unused(graph)
    if "float_weights" in rules:  # after the Q/DQ the other rules left unread are gone: they feed nothing
        _float_weights(graph)
        _drop_unused(graph)
    return freed


def float_convs(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Convs whose output, directly or after an activation, reaches no QuantizeLinear: ONNX Runtime runs them in float."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)
    found = []
    for node in graph.node:
        if node.op_type not in BACKBONES:
            continue
        after = list(readers.get(node.output[0], []))
        after += [r for a in after if a.op_type in ACTIVATIONS for r in readers.get(a.output[0], [])]
        if after and not any(r.op_type == "QuantizeLinear" for r in after):
            found.append(node)
    return found


def _float_weights(graph: onnx.GraphProto) -> None:
    """Give each of :func:`float_convs` its weight and bias as float initializers, dequantized exactly as the graph would."""
    constants = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    for conv in float_convs(graph):
        for index in range(1, len(conv.input)):
            dq = producer.get(conv.input[index])
            if dq is None or dq.op_type != "DequantizeLinear" or not all(i in constants for i in dq.input if i):
                continue
            name = f"{conv.input[index]}{FLOAT_WEIGHT_SUFFIX}"
            if name not in constants:  # a weight two float convs share is written once
                constants[name] = numpy_helper.from_array(_dequantized(dq, constants), name)
                graph.initializer.append(constants[name])
            conv.input[index] = name


def _dequantized(dq: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> np.ndarray:
    """What a DequantizeLinear of constants outputs, per tensor or per ``axis``, in float32."""
    q, scale = (numpy_helper.to_array(constants[t]).astype(np.float32) for t in dq.input[:2])
    zero = numpy_helper.to_array(constants[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] else 0
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [-1 if d == axis % q.ndim else 1 for d in range(q.ndim)] if np.ndim(scale) else []
    return ((q - np.reshape(zero, shape)) * np.reshape(scale, shape)).astype(np.float32)


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove Q/DQ nodes nothing reads any more, then the initializers nothing reads."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for node in graph.node for i in node.input} | outputs
        dead = [n for n in graph.node if n.op_type in QDQ_OPS and not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {i for node in graph.node for i in node.input}
    for tensor in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(tensor)
