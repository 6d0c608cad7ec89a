"""What OpenVINO reads for an .onnx artifact: the same model, with two patterns put in the shape OpenVINO fuses.

The runner applies this in memory when it opens a model, so ONNX Runtime and OpenVINO still share one file
(an INT8 artifact the build chose for either runtime, or a user's ``--backend`` override), and the
build verifies and times exactly what the stream runs. Measured on the trained LR-ASPP and DeepLabV3
MobileNetV3 (docs/compile.md, 2-core AVX2 EPYC, 256x256):

- **HardSwish.** ONNX Runtime's preparation inlines it as ``x * HardSigmoid(x)`` (it has no HardSwish
  kernel), and its placement quantizes each conv's output (its integer conv needs a QuantizeLinear
  there). OpenVINO fuses ``Conv -> HardSwish -> FakeQuantize`` into one INT8 kernel (NNCF quantizes
  after the activation), but ran ``Conv -> Q/DQ -> HardSigmoid x Mul -> Q/DQ`` as a conv, then a
  float convert, subtract, multiply, HardSigmoid and reorder per block: 4.6 of 20 ms, INT8 at 1.14x
  FP32's latency. So the pair becomes one HardSwish again (the same arithmetic), and the Q/DQ between
  a conv and its HardSwish goes, as the placement's ``activation`` rule does for Relu (only here:
  ONNX Runtime's integer conv needs that Q): one rounding fewer, every INT8 conv and activation
  range unchanged. INT8 then ran at 0.89x (LR-ASPP) and 0.83x (DeepLabV3) of FP32.
- **ArgMax over the class scores.** OpenVINO turns it into TopK, which over channels in the
  channel-last memory its INT8 and resize kernels leave took 6.2 ms of a 16 ms LR-ASPP frame (0.9 ms
  on planar memory). ``ReduceMax``, ``Equal``, ``Where``, ``ReduceMin`` over the channels give the same
  first index of the maximum and run as fused element-wise and reduce kernels in any layout.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


HARD_SWISH_OPSET = 14
HARD_SWISH_GATE = {"alpha": 1 / 6, "beta": 0.5}  # HardSwish(x) = x * HardSigmoid(x; alpha, beta)
AXES_AS_INPUT_OPSET = 18  # ReduceMax/ReduceMin take their axes as an input from opset 18
NOT_A_CLASS = float(1 << 24)  # larger than any class index; exact in float32


def read(path: Path) -> bytes:
    """The model at ``path`` as OpenVINO should read it: serialized ONNX, rewritten as the module docstring says.
    A damaged file raises protobuf's DecodeError (the runner names the file)."""
    model = onnx.load(str(path))
    fuse_hard_swish(model)
    quantize_after_hard_swish(model)
    argmax_as_reductions(model)
    return model.SerializeToString()


def fuse_hard_swish(model: onnx.ModelProto) -> int:
    """Replace each ``Mul(x, HardSigmoid(x; 1/6, 1/2))`` by ``HardSwish(x)``; returns how many (none below opset 14)."""
    if _opset(model) < HARD_SWISH_OPSET:
        return 0
    graph = model.graph
    readers = _readers(graph)
    gates, swishes = set(), {}
    for gate in graph.node:
        if gate.op_type != "HardSigmoid" or not _is_hard_swish_gate(gate):
            continue
        users = readers.get(gate.output[0], [])
        mul = users[0] if len(users) == 1 else None
        if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([gate.input[0], gate.output[0]]):
            continue
        gates.add(gate.output[0])
        swishes[mul.output[0]] = helper.make_node("HardSwish", [gate.input[0]], list(mul.output), name=mul.name)
    _replace(graph, swishes, gates)
    return len(swishes)


def quantize_after_hard_swish(model: onnx.ModelProto) -> int:
    """Feed each HardSwish that reads ``DequantizeLinear(QuantizeLinear(conv output))`` the conv output itself, and drop
    the pair where nothing else reads it; returns how many HardSwish inputs it freed."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    pairs = []
    for swish in [n for n in graph.node if n.op_type == "HardSwish"]:
        dq = producer.get(swish.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        conv = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        if conv is not None and conv.op_type == "Conv":
            swish.input[0] = q.input[0]
            pairs.append((q, dq))
    reads = Counter(tensor for node in graph.node for tensor in node.input) + Counter(o.name for o in graph.output)
    unread = {dq.output[0] for _, dq in pairs if not reads[dq.output[0]]}
    unread |= {q.output[0] for q, dq in pairs if dq.output[0] in unread and reads[q.output[0]] == 1}  # read by that DQ only
    _replace(graph, {}, unread)
    return len(pairs)


def argmax_as_reductions(model: onnx.ModelProto) -> int:
    """Replace each ArgMax (first index, input of known rank) by the reductions in the module docstring; returns how many."""
    graph = model.graph
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except (onnx.shape_inference.InferenceError, ValueError):  # shapes ONNX cannot infer, or a model over 2 GB: as it is
        return 0
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.value_info, *inferred.input, *inferred.output]
             if v.type.tensor_type.HasField("shape")}  # fmt: skip
    axes_as_input = _opset(model) >= AXES_AS_INPUT_OPSET
    replaced = {}
    for node in [n for n in graph.node if n.op_type == "ArgMax"]:
        attributes = {a.name: a.i for a in node.attribute}
        rank = ranks.get(node.input[0])
        if not rank or attributes.get("select_last_index", 0):
            continue
        axis, keep = attributes.get("axis", 0) % rank, attributes.get("keepdims", 1)
        replaced[node.output[0]] = _reductions(graph, node, rank, axis, keep, axes_as_input)
    _replace(graph, replaced)
    return len(replaced)


def _reductions(graph, argmax, rank: int, axis: int, keep: int, axes_as_input: bool) -> list[onnx.NodeProto]:
    """min(i where x[i] == max(x)) along ``axis``, as int64 like ArgMax; the class indices come from x's own shape."""
    scores, name = argmax.input[0], argmax.name or f"argmax_{argmax.output[0]}"
    at = f"{name}_as_reductions"
    index_shape = [1] * rank
    index_shape[axis] = -1
    graph.initializer.extend([
        numpy_helper.from_array(np.array([axis], np.int64), f"{at}_axis"),
        numpy_helper.from_array(np.array(axis, np.int64), f"{at}_axis_index"),
        numpy_helper.from_array(np.array(index_shape, np.int64), f"{at}_index_shape"),
        numpy_helper.from_array(np.array(0, np.int64), f"{at}_zero"),
        numpy_helper.from_array(np.array(1, np.int64), f"{at}_one"),
        numpy_helper.from_array(np.array(NOT_A_CLASS, np.float32), f"{at}_not_a_class"),
    ])  # fmt: skip

    def reduce(op: str, source: str, output: str, keepdims: int) -> onnx.NodeProto:
        if axes_as_input:
            return helper.make_node(op, [source, f"{at}_axis"], [output], name=f"{at}_{op}", keepdims=keepdims)
        return helper.make_node(op, [source], [output], name=f"{at}_{op}", axes=[axis], keepdims=keepdims)

    return [
        helper.make_node("Shape", [scores], [f"{at}_shape"], name=f"{at}_shape"),
        helper.make_node("Gather", [f"{at}_shape", f"{at}_axis_index"], [f"{at}_classes"], name=f"{at}_classes"),
        helper.make_node("Range", [f"{at}_zero", f"{at}_classes", f"{at}_one"], [f"{at}_range"], name=f"{at}_range"),
        helper.make_node("Cast", [f"{at}_range"], [f"{at}_indices"], name=f"{at}_indices", to=onnx.TensorProto.FLOAT),
        helper.make_node("Reshape", [f"{at}_indices", f"{at}_index_shape"], [f"{at}_index"], name=f"{at}_index"),
        reduce("ReduceMax", scores, f"{at}_max", 1),
        helper.make_node("Equal", [scores, f"{at}_max"], [f"{at}_is_max"], name=f"{at}_is_max"),
        helper.make_node("Where", [f"{at}_is_max", f"{at}_index", f"{at}_not_a_class"], [f"{at}_where"], name=f"{at}_where"),
        reduce("ReduceMin", f"{at}_where", f"{at}_first", keep),
        helper.make_node("Cast", [f"{at}_first"], list(argmax.output), name=name, to=onnx.TensorProto.INT64),
    ]


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)
    return readers


def _replace(graph: onnx.GraphProto, replacements: dict, removed: set = frozenset()) -> None:
    """Each node keyed (by its first output) in ``replacements`` becomes that node or list of nodes, in place;
    the nodes keyed in ``removed`` go."""
    nodes = []
    for node in graph.node:
        if node.output[0] in removed:
            continue
        new = replacements.get(node.output[0], node)
        nodes.extend(new if isinstance(new, list) else [new])
    del graph.node[:]
    graph.node.extend(nodes)


def _is_hard_swish_gate(node: onnx.NodeProto) -> bool:
    values = {a.name: a.f for a in node.attribute}
    defaults = {"alpha": 0.2, "beta": 0.5}  # HardSigmoid's own
    return all(abs(values.get(name, defaults[name]) - want) < 1e-6 for name, want in HARD_SWISH_GATE.items())
