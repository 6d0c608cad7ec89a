"""An ONNX model at the newest opset a TensorRT line's parser implements: what an 8.x build parses.

TensorRT 8.x's ONNX parser implements opsets up to 17 and imports a newer node with its old
meaning (ReduceMean-18's ``axes`` input is ignored: it averages over every axis), while the
exporter writes opset 18. :func:`for_line` writes a copy at the line's ceiling. onnx's version
converter takes newer opsets down to 18, but from 18 to 17 it has no adapter for Pad or Split
(onnx 1.23), and every export has a Pad; so the nodes opset 18 changed are rewritten here, each
only where its opset-17 form means the same, and any other is named in the error.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

from ...errors import FcnEdgeError
from .onnx_ops import OPSETS

DEFAULT_DOMAINS = ("", "ai.onnx")
REDUCES = {f"Reduce{kind}" for kind in ("L1", "L2", "LogSum", "LogSumExp", "Max", "Mean", "Min", "Prod", "SumSquare")}


def default_opset(model: onnx.ModelProto) -> int:
    """The model's ai.onnx opset (0 when it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)


def for_line(onnx_path: Path, line: str, workdir: Path) -> Path:
    """``onnx_path`` when TensorRT ``line`` implements its opset, else a copy at the line's ceiling in ``workdir``."""
    onnx_path, ceiling = Path(onnx_path), OPSETS[line]
    try:
        model = onnx.load(str(onnx_path))
    except Exception as error:  # protobuf raises DecodeError and others for bytes that are not ONNX
        raise FcnEdgeError(f"{onnx_path} is not an ONNX model ({type(error).__name__}): pass a .onnx file") from None
    opset = default_opset(model)
    if opset <= ceiling:
        return onnx_path
    try:
        model = _down_to(model, ceiling)
    except FcnEdgeError as error:
        raise FcnEdgeError(
            f"cannot take {onnx_path} from opset {opset} to {ceiling} for TensorRT {line}.x: {error}: "
            f"re-export it with fcn-edge export --opset {ceiling}"
        ) from None
    out = Path(workdir) / f"{onnx_path.stem}.opset{ceiling}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out.with_suffix(".tmp")))
    os.replace(out.with_suffix(".tmp"), out)
    return out


def _down_to(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """``model`` at ai.onnx opset ``target`` (17 or newer), the same function."""
    if target < 17:
        raise ValueError(f"opset {target}: only conversions to 17 or newer are written")
    if default_opset(model) > max(target, 18):
        try:
            model = version_converter.convert_version(model, max(target, 18))
        except Exception as error:  # the converter asserts in C++ and raises RuntimeError with its message
            raise FcnEdgeError(f"onnx's version converter stops: {str(error).splitlines()[-1]}") from None
    return _18_to_17(model) if target == 17 and default_opset(model) == 18 else model


def _18_to_17(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {v.name: v.type.tensor_type.shape for v in [*inferred.value_info, *inferred.input]}
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})  # fmt: skip
    detached: set[str] = set()
    for node in graph.node:
        before = set(node.input)
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            why = "has a subgraph, which is not converted"
        elif node.domain in DEFAULT_DOMAINS and onnx.defs.get_schema(node.op_type, 18).since_version == 18:
            why = _rewrite(node, constants, shapes)
        else:
            continue
        if why:
            raise FcnEdgeError(f"node {node.name or node.output[0]} ({node.op_type}) {why}")
        detached |= before - set(node.input)
    for opset in model.opset_import:
        if opset.domain in DEFAULT_DOMAINS:
            opset.version = 17
    _drop_unused(graph, detached)
    return model


def _rewrite(node: onnx.NodeProto, constants: dict[str, np.ndarray], shapes: dict) -> str | None:
    """Turn an opset-18 node into its opset-17 form in place; why it cannot be, if it cannot."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in REDUCES:  # 18 moved axes from an attribute to an input
        axes = _input(node, 1)
        if axes is not None and axes not in constants:
            return f"takes its axes from {axes}, which is not a constant"
        values = constants[axes].tolist() if axes is not None else []
        if attrs.get("noop_with_empty_axes", 0) and not values:
            return "is a no-op (empty axes, noop_with_empty_axes), which opset 17 cannot say"
        _set(node, node.input[:1], ("noop_with_empty_axes",), {"axes": values} if values else {})
    elif node.op_type == "Pad":  # 18 added the axes input
        if _input(node, 3) is not None:
            return "pads only the axes of its axes input, which opset 17 cannot say"
        _set(node, node.input[:3])
    elif node.op_type == "Resize":  # 18 added antialias, axes and keep_aspect_ratio_policy
        if attrs.get("antialias", 0) or attrs.get("keep_aspect_ratio_policy", b"stretch") != b"stretch" or "axes" in attrs:
            return "antialiases, keeps the aspect ratio or resizes only some axes, which opset 17 cannot say"
        _set(node, node.input, ("antialias", "keep_aspect_ratio_policy"))
    elif node.op_type == "Split":  # 18 added num_outputs, with a smaller last part where the size does not divide
        parts = attrs.get("num_outputs")
        if parts is not None and _input(node, 1) is None:
            shape, axis = shapes.get(node.input[0]), attrs.get("axis", 0)
            size = shape.dim[axis].dim_value if shape is not None and -len(shape.dim) <= axis < len(shape.dim) else 0
            if not size or size % parts:
                return f"splits an axis of {size or 'unknown'} size into {parts} parts, which opset 17 cannot say"
        _set(node, node.input, ("num_outputs",))
    elif node.op_type in ("ScatterND", "ScatterElements"):  # 18 added reduction max and min
        if attrs.get("reduction", b"none") in (b"max", b"min"):
            return "reduces with max or min, which opset 17 cannot say"
    elif node.op_type == "LpPool":  # 18 added ceil_mode
        if attrs.get("ceil_mode", 0):
            return "rounds its output size up (ceil_mode), which opset 17 cannot say"
        _set(node, node.input, ("ceil_mode",))
    else:
        return "has no opset-17 form"
    return None


def _input(node: onnx.NodeProto, index: int) -> str | None:
    return node.input[index] if len(node.input) > index and node.input[index] else None


def _set(node: onnx.NodeProto, inputs, drop: tuple[str, ...] = (), add: dict | None = None) -> None:
    """Give ``node`` these inputs (trailing empty ones left off) and its attributes less ``drop`` plus ``add``."""
    inputs = list(inputs)
    while inputs and not inputs[-1]:
        inputs.pop()
    del node.input[:]
    node.input.extend(inputs)
    kept = [a for a in node.attribute if a.name not in drop]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value) for name, value in (add or {}).items()])


def _drop_unused(graph: onnx.GraphProto, detached: set[str]) -> None:
    """Remove the initializers and Constant nodes of ``detached`` (the old axes inputs) that nothing reads now."""
    used = {i for n in graph.node for i in n.input} | {v.name for v in [*graph.input, *graph.output]}
    unused = detached - used
    kept = [t for t in graph.initializer if t.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [n for n in graph.node if n.op_type != "Constant" or n.output[0] not in unused]
    del graph.node[:]
    graph.node.extend(nodes)
