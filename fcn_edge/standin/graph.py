"""What the stand-in's ONNX parser accepts, and the graph its "engine" runs: the ONNX at the engine's precision.

The parser keeps the rules of onnx-tensorrt's importer that decide whether fcn_edge's
graphs build: an op without an importer, UINT8 anywhere but a network input feeding a
Cast to float, Resize modes the importer rejects, asymmetric or per-channel activation
Q/DQ, an implicit-batch network. The 8.x parser imports opsets up to 17; a newer model is
imported anyway (with onnx-tensorrt's warning) and the reductions whose ``axes`` became
an input in opset 18 lose it, reducing over every axis, as the 8.6 importer does.

The engine runs the graph with ONNX Runtime (on the CPU) at the precision the build gave it:

- as written where the network is strongly typed (Q/DQ and FP16 tensors as the ONNX has them);
- BuilderFlag.FP16 (weak typing): every float tensor rounded to FP16, weights included (the
  builder may pick FP16 for any layer; layer precision constraints are not modelled);
- BuilderFlag.INT8 with a calibration cache: every tensor the cache gives a scale to is
  fake-quantized (symmetric INT8 at that scale), and the weights of the convolutions
  that read one per output channel, as TensorRT does.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET_CEILING = {"8": 17}  # onnx-tensorrt release/8.6-GA: opsets 7-17
AXES_INPUT_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
                 "ReduceLogSumExp", "ReduceSumSquare")  # fmt: skip
FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)


class ParseError(Exception):
    """One node the parser rejects, as onnx-tensorrt words it."""


def opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def parse(model: onnx.ModelProto, line: str, explicit_batch: bool, warn) -> onnx.ModelProto:
    """The graph the network holds after parsing ``model`` on TensorRT ``line``; ParseError for what the parser rejects."""
    from fcn_edge.backends.tensorrt.onnx_ops import OPS_8, OPS_10

    if not explicit_batch:
        raise ParseError("the ONNX parser only supports networks with an explicit batch dimension")
    model = typed(model)
    types = types_of(model)
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    ops = OPS_8 if line == "8" else OPS_10
    for node in model.graph.node:
        where = f"node {node.name or node.output[0]} ({node.op_type})"
        if node.domain not in ("", "ai.onnx") or node.op_type not in ops:
            raise ParseError(f"{where}: No importer registered for op: {node.op_type}")
        for name in node.input:
            if types.get(name) == TensorProto.UINT8 and (name not in inputs or not _cast_to_float(node)):
                raise ParseError(
                    f"{where}: UINT8 tensor {name} is read by a {node.op_type}; UINT8 only converts to FP32/FP16 at the network input"
                )
        for name in node.output:
            if types.get(name) == TensorProto.UINT8 and (name not in outputs or node.op_type != "Cast"):
                raise ParseError(f"{where}: makes the UINT8 tensor {name}; UINT8 only as a network output made by a Cast")
        if node.op_type == "Resize":
            _check_resize(node, model, where)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq(node, model, where, line)
    version = opset(model)
    ceiling = OPSET_CEILING.get(line)
    if ceiling is not None and version > ceiling:
        warn(
            f"Your ONNX model has been generated with opset {version}, but this version of the parser supports opsets up to {ceiling}"
        )
        model = _drop_axes_inputs(model)
    return model


def typed(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - the parser reads what types the graph states
        return model


def types_of(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    found = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    found.update({t.name: t.data_type for t in graph.initializer})
    return found


def _cast_to_float(node: onnx.NodeProto) -> bool:
    to = next((a.i for a in node.attribute if a.name == "to"), None)
    return node.op_type == "Cast" and to in FLOATS


def _constant(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
    return None


def _check_resize(node: onnx.NodeProto, model: onnx.ModelProto, where: str) -> None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("coordinate_transformation_mode", b"half_pixel") == b"tf_crop_and_resize":
        raise ParseError(f"{where}: TensorRT does not support tf_crop_and_resize")
    inner = {b"linear": 3, b"cubic": 2}.get(attrs.get("mode", b"nearest"))
    if inner:  # onnx-tensorrt canUseNDResize: linear over the innermost 3 axes, cubic over the innermost 2
        scales = _constant(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scales is not None and scales.size > inner and not np.allclose(scales[: scales.size - inner], 1):
            raise ParseError(f"{where}: {attrs['mode'].decode()} resize only over the innermost {inner} dimensions")


def _check_qdq(node: onnx.NodeProto, model: onnx.ModelProto, where: str, line: str) -> None:
    if line == "8" and (len(node.input) < 3 or not node.input[2]):  # 8.6 QuantDequantLinearHelper reads input 2 unchecked
        raise ParseError(f"{where}: Assertion failed: a zero-point input is required")
    scale = _constant(model, node.input[1])
    if scale is None:
        raise ParseError(f"{where}: the scale must be a constant")
    zero = _constant(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero is not None and zero.any():
        raise ParseError(f"{where}: TensorRT only supports symmetric quantization (zero point 0)")
    if scale.size > 1 and _constant(model, node.input[0]) is None and node.op_type == "QuantizeLinear":
        raise ParseError(f"{where}: per-channel quantization of an activation")


def _drop_axes_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """The 8.x importer reads opset-13 reductions: an ``axes`` input is ignored, so they reduce over every axis."""
    model = _copy(model)
    for node in model.graph.node:
        if node.op_type in AXES_INPUT_18 and len(node.input) > 1:
            del node.input[1:]
    return model


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def executable(model: onnx.ModelProto, fp16: bool, scales: dict[str, float]) -> onnx.ModelProto:
    """``model`` as a weakly typed engine runs it: see the module docstring."""
    if not fp16 and not scales:
        return model
    types = types_of(typed(model))
    model = _copy(model)
    graph = model.graph
    conv_weights = {n.input[1] for n in graph.node if n.op_type in ("Conv", "ConvTranspose") and n.input[0] in scales}
    if fp16 or conv_weights:
        for tensor in graph.initializer:
            if tensor.data_type != TensorProto.FLOAT:
                continue
            array = numpy_helper.to_array(tensor)
            if tensor.name in conv_weights:
                array = _per_channel_int8(array)
            elif fp16:
                array = array.astype(np.float16).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    outputs = {o.name for o in graph.output}  # network outputs keep their values and names
    nodes: list[onnx.NodeProto] = []
    rename: dict[str, str] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
        nodes.append(node)
        for out in node.output:
            if types.get(out) != TensorProto.FLOAT or out in outputs:
                continue
            if out in scales:
                nodes += _fake_quant(out, scales[out], graph)
                rename[out] = f"{out}__standin_q"
            elif fp16:
                nodes += _round_fp16(out)
                rename[out] = f"{out}__standin_h"
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _round_fp16(name: str) -> list[onnx.NodeProto]:
    half = f"{name}__standin_half"
    return [
        helper.make_node("Cast", [name], [half], to=TensorProto.FLOAT16),
        helper.make_node("Cast", [half], [f"{name}__standin_h"], to=TensorProto.FLOAT),
    ]


def _fake_quant(name: str, scale: float, graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    scale_name, zero_name = f"{name}__standin_scale", f"{name}__standin_zero"
    graph.initializer.extend([
        numpy_helper.from_array(np.array(scale, np.float32), scale_name),
        numpy_helper.from_array(np.array(0, np.int8), zero_name),
    ])  # fmt: skip
    quantized = f"{name}__standin_int8"
    return [
        helper.make_node("QuantizeLinear", [name, scale_name, zero_name], [quantized]),
        helper.make_node("DequantizeLinear", [quantized, scale_name, zero_name], [f"{name}__standin_q"]),
    ]


def _per_channel_int8(weights: np.ndarray) -> np.ndarray:
    """Symmetric INT8 per output channel (axis 0), as TensorRT quantizes convolution weights."""
    amax = np.abs(weights).reshape(weights.shape[0], -1).max(1).reshape(-1, *([1] * (weights.ndim - 1)))
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return (np.clip(np.round(weights / scale), -127, 127) * scale).astype(np.float32)
