"""Will TensorRT's ONNX parser take this graph? Checked on the CPU, before any GPU sees it.

A graph TensorRT rejects fails on the user's first contact with a GPU, with a parser message
that names one node at a time. This check reads the graph's ops and tensor types and names
every node that TensorRT 8.x (8.5/8.6), 10.x or 11.x would refuse, each with the rule and
where the rule comes from:

- ``opset``: the model's ai.onnx opset is newer than the newest the parser implements
  (:data:`.onnx_ops.OPSETS`; reported once a model): the parser imports a newer node with its
  old meaning (8.6 drops ReduceMean-18's ``axes`` input and averages every axis), so an 8.x
  build takes the copy :func:`.opset.for_line` writes;
- ``op``: the op has no importer in that release's ONNX parser (:mod:`.onnx_ops`);
- ``types``: the op's data input has a type the parser does not list for it (8.x casts
  INT64 down to INT32, and every release DOUBLE down to FP32, so those pass as such);
- ``uint8``: UINT8 only as a network input or output, converted to or from FP32/FP16 only,
  so a UINT8 input may feed only a Cast to float and a UINT8 output must come from one;
- ``int64-io``: no INT64 network inputs or outputs before 10.0;
- ``resize``: the parser's Resize importer takes the coordinate transformation modes
  half_pixel, pytorch_half_pixel, tf_half_pixel_for_nn (8.x: with nearest_mode
  round_prefer_floor only), asymmetric and align_corners (not tf_crop_and_resize), and with
  constant scales resizes linearly only the innermost 3 axes and cubically the innermost 2
  (scales on the axes before them must be 1);
- ``qdq``: explicit quantization as the parser imports it: scales constant and positive,
  zero points all zero (symmetric), INT8 (10+: also FP8/INT4/FP4), per-channel only for constant
  weights along their output-channel axis (0 for Conv, 1 for ConvTranspose), given
  explicitly (ONNX's default axis is 1, TensorRT's parser reads a missing axis as 0); on 8.x
  every Q/DQ node has a zero-point input (the 8.6 importer reads input 2 unconditionally).

It runs on every graph built for TensorRT (:func:`require_parsable` in the engine build and
in the compile stage), in CI on the default artifacts, and as a command for any ONNX file:
``fcn-edge compat model.onnx``. Subgraphs (If/Loop bodies) are
not checked.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...cli import nonempty_path
from ...errors import FcnEdgeError, run_cli
from .api import Version
from .onnx_ops import OPS_8, OPS_10, OPSET_SOURCES, OPSETS, SOURCE_8, SOURCE_10, SOURCE_11
from .opset import default_opset

LINES = ("8", "10", "11")  # TensorRT release lines with their own parser rules
TOKENS = {
    TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16", TensorProto.DOUBLE: "DOUBLE",
    TensorProto.INT32: "INT32", TensorProto.INT64: "INT64", TensorProto.INT8: "INT8", TensorProto.UINT8: "UINT8",
    TensorProto.BOOL: "BOOL", TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.INT4: "INT4", TensorProto.FLOAT4E2M1: "FP4",
}  # fmt: skip
FLOATS_FOR_UINT8 = (TensorProto.FLOAT, TensorProto.FLOAT16)
QUANTIZED = {"8": ("INT8",), "10": ("INT8", "FP8", "INT4", "FP4"), "11": ("INT8", "FP8", "INT4", "FP4")}
RESIZE_TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
RESIZE_INNER_AXES = {"linear": 3, "cubic": 2}  # canUseNDResize: the scales before these innermost axes must be 1

SOURCES = {  # short citations; docs/tensorrt.md quotes them
    "opset": OPSET_SOURCES,
    "op": {"8": SOURCE_8, "10": SOURCE_10, "11": SOURCE_11},
    "types": {"8": SOURCE_8, "10": SOURCE_10, "11": SOURCE_11},
    "uint8": "TensorRT DataType.UINT8 (8.6, 10.x): conversions only to/from FP32/FP16; onnx-tensorrt ModelImporter.cpp: "
             "no UINT8 intermediate tensors",
    "int64-io": "TensorRT 8.6 DataType has no INT64 (added in 10.0)",
    "qdq": "onnx-tensorrt QuantDequantLinearHelper (8.6-GA) and operators.md: symmetric, per-channel for KCRS weights, "
           "8.6 reads the zero point",
    "resize": "onnx-tensorrt Resize importer and canUseNDResize: builtin_op_importers.cpp, onnx2trt_utils.cpp (8.6-GA); "
              "onnxOpImporters.cpp, importerUtils.cpp (10.1-GA)",
}  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """One node TensorRT's parser rejects, the rule and its source."""

    node: str
    op: str
    rule: str
    detail: str
    source: str

    def describe(self) -> str:
        return f"{self.node} ({self.op}): {self.detail} [{self.rule}; {self.source}]"


def line_of(version: Version) -> str:
    """The release line whose parser rules apply to TensorRT ``version``."""
    return "8" if version[0] < 10 else "10" if version[0] == 10 else "11"


class _Graph:
    """Tensor types (after ONNX shape inference) and constant values of one graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # a graph ONNX itself cannot type: check what its own value_info says
            inferred = model
        graph = inferred.graph
        self.graph = graph
        self.opset = default_opset(model)
        self.types: dict[str, int] = {}
        self.ranks: dict[str, int] = {}
        for value in [*graph.input, *graph.output, *graph.value_info]:
            if value.type.HasField("tensor_type"):
                self.types[value.name] = value.type.tensor_type.elem_type
                if value.type.tensor_type.HasField("shape"):
                    self.ranks[value.name] = len(value.type.tensor_type.shape.dim)
        self.values = {t.name: t for t in graph.initializer}
        self.types.update({name: t.data_type for name, t in self.values.items()})
        self.constant = set(self.values)
        for node in graph.node:
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.values[node.output[0]] = value
                    self.types[node.output[0]] = value.data_type
            if all(i in self.constant for i in node.input if i):
                self.constant.update(node.output)
        self.inputs = {v.name for v in graph.input} - set(self.values)
        self.outputs = {v.name for v in graph.output}

    def feeds_weight_of(self, tensor: str, op_type: str) -> bool:
        """Whether ``tensor`` is the weight input (input 1) of an ``op_type`` node."""
        return any(n.op_type == op_type and len(n.input) > 1 and n.input[1] == tensor for n in self.graph.node)

    def array(self, name: str) -> np.ndarray | None:
        tensor = self.values.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)


def check(model: onnx.ModelProto | str | Path, line: str) -> list[Problem]:
    """Every node of ``model`` the ONNX parser of TensorRT ``line`` ("8", "10", "11") rejects."""
    return _problems(_Graph(_load(model)), line)


def _problems(graph: _Graph, line: str) -> list[Problem]:
    if line not in LINES:
        raise ValueError(f"TensorRT line {line!r} not in {LINES}")
    problems: list[Problem] = []
    for node in graph.graph.node:
        name = node.name or f"{node.op_type} -> {node.output[0]}"
        for rule, detail in _node_problems(graph, node, line):
            source = SOURCES[rule][line] if isinstance(SOURCES[rule], dict) else SOURCES[rule]
            problems.append(Problem(name, node.op_type, rule, detail, source))
    return _model_problems(graph, line) + problems


def _node_problems(graph: _Graph, node: onnx.NodeProto, line: str) -> list[tuple[str, str]]:
    ops = OPS_8 if line == "8" else OPS_10
    found: list[tuple[str, str]] = []
    if node.domain not in ("", "ai.onnx") or node.op_type not in ops:
        return [("op", f"TensorRT {line}.x's ONNX parser has no importer for {node.domain or 'ai.onnx'}.{node.op_type}")]
    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):  # their types are the qdq rule's
        return [("qdq", d) for d in _qdq(graph, node, line)]
    if node.op_type == "Resize":
        found += [("resize", d) for d in _resize(graph, node, line)]
    allowed = ops[node.op_type].split()
    data = _token(graph.types.get(node.input[0]), line) if node.input and node.input[0] else None
    if data not in (None, "UINT8") and allowed and data not in allowed:
        found.append(("types", f"input {node.input[0]} is {data}; the parser takes {', '.join(allowed)} for {node.op_type}"))
    return found + [("uint8", d) for d in _uint8(graph, node)]


def _token(elem_type: int | None, line: str) -> str | None:
    """The operators.md type a tensor of ``elem_type`` is imported as on ``line`` (None: unknown)."""
    token = TOKENS.get(elem_type) if elem_type else None
    if token == "DOUBLE":
        return "FP32"
    return "INT32" if token == "INT64" and line == "8" else token


def _uint8(graph: _Graph, node: onnx.NodeProto) -> list[str]:
    found = []
    cast_to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
    for tensor in node.input:
        if graph.types.get(tensor) == TensorProto.UINT8 and tensor in graph.inputs and cast_to not in FLOATS_FOR_UINT8:
            found.append(f"reads the UINT8 network input {tensor}: the first op on it must be a Cast to FP32/FP16")
    for tensor in node.output:
        if graph.types.get(tensor) != TensorProto.UINT8:
            continue
        if tensor not in graph.outputs:
            found.append(f"makes the UINT8 tensor {tensor}, which is not a network output: UINT8 only at the boundary")
        elif node.op_type != "Cast" or graph.types.get(node.input[0]) not in FLOATS_FOR_UINT8:
            found.append(f"makes the UINT8 network output {tensor} from a {node.op_type}: it must be a Cast from FP32/FP16")
    return found


def _qdq(graph: _Graph, node: onnx.NodeProto, line: str) -> list[str]:
    found = []
    scale = graph.array(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        found.append(f"scale {node.input[1] if len(node.input) > 1 else '(missing)'} is not a constant")
    elif not (scale > 0).all():
        found.append("scale has values <= 0")
    zero = graph.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if line == "8" and not (len(node.input) > 2 and node.input[2]):
        found.append("has no zero-point input: TensorRT 8.x's importer needs one (all zeros)")
    if zero is not None and zero.any():
        found.append("zero point is not all zeros: TensorRT quantizes symmetrically")
    if node.op_type == "DequantizeLinear":
        quantized = node.input[0]
    else:  # a Q's type is its zero point's, UINT8 when it has none (ONNX before opset 21)
        quantized = node.input[2] if len(node.input) > 2 and node.input[2] else node.output[0]
    token = _token(graph.types.get(quantized), line)
    if token is not None and token not in QUANTIZED[line]:
        found.append(f"quantizes to {token}; TensorRT {line}.x takes {', '.join(QUANTIZED[line])}")
    if scale is not None and scale.size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        wanted = 1 if graph.feeds_weight_of(node.output[0], "ConvTranspose") else 0
        if node.input[0] not in graph.constant:
            found.append("per-channel scales on an activation: TensorRT quantizes activations per tensor")
        elif axis != wanted:
            found.append(
                f"per-channel axis {'missing (ONNX: 1)' if axis is None else axis}: TensorRT needs axis={wanted} "
                "(the weights' output channels)"
            )
    return found


def _resize(graph: _Graph, node: onnx.NodeProto, line: str) -> list[str]:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    found = []
    if graph.opset >= 11:  # the importer reads these attributes from Resize-11 on
        transform = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
        nearest = attrs.get("nearest_mode", b"round_prefer_floor").decode()
        if transform not in RESIZE_TRANSFORMS:
            found.append(f"coordinate_transformation_mode {transform}: the parser takes {', '.join(RESIZE_TRANSFORMS)}")
        elif line == "8" and transform == "tf_half_pixel_for_nn" and nearest != "round_prefer_floor":
            found.append(f"tf_half_pixel_for_nn with nearest_mode {nearest}: TensorRT 8.x takes round_prefer_floor only")
        if len(node.input) > 3 and node.input[3] and transform != "tf_half_pixel_for_nn":
            return found  # sizes given: the importer skips its check of the scales
    inner, at = RESIZE_INNER_AXES.get(attrs.get("mode", b"nearest").decode()), 2 if graph.opset >= 11 else 1
    scales = graph.array(node.input[at]) if inner and len(node.input) > at else None
    if scales is None or scales.ndim != 1:
        return found
    full = scales.astype(float)
    if "axes" in attrs and node.input[0] in graph.ranks:  # the importer scatters the scales into place first
        full = np.ones(graph.ranks[node.input[0]])
        full[list(attrs["axes"])] = scales
    outer = [axis for axis in range(scales.size - inner) if full[axis] != 1]
    if outer:
        found.append(
            f"{attrs['mode'].decode()} resize scales axis {outer[0]} by {full[outer[0]]:g}: the parser resizes "
            f"only the innermost {inner} axes that way"
        )
    return found


def _model_problems(graph: _Graph, line: str) -> list[Problem]:
    """The problems of the model as a whole: its opset, and on 8.x its INT64 inputs and outputs."""
    problems = []
    ceiling = OPSETS[line]
    if graph.opset > ceiling:
        detail = (f"is opset {graph.opset}; TensorRT {line}.x's parser implements up to {ceiling} and imports newer nodes "
                  f"with their old meaning: re-export with fcn-edge export --opset {ceiling}, or convert it "
                  "(fcn_edge.backends.tensorrt.opset.for_line)")  # fmt: skip
        problems.append(Problem("model", "-", "opset", detail, SOURCES["opset"][line]))
    if line == "8":
        problems += [
            Problem(f"network {'input' if name in graph.inputs else 'output'} {name}", "-", "int64-io",
                    "is INT64, which TensorRT 8.x has no type for", SOURCES["int64-io"])
            for name in sorted(graph.inputs | graph.outputs) if graph.types.get(name) == TensorProto.INT64
        ]  # fmt: skip
    return problems


def require_parsable(model: onnx.ModelProto | str | Path, line: str, what: str, shown: int = 3) -> None:
    """Raise one line naming the first ``shown`` nodes TensorRT ``line`` rejects, if any."""
    problems = check(model, line)
    if problems:
        more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
        raise FcnEdgeError(
            f"TensorRT {line}.x's ONNX parser would reject {what}: {' | '.join(p.describe() for p in problems[:shown])}{more}: "
            "re-export it with fcn-edge export, or change those nodes (fcn-edge compat "
            "lists them all)"
        )


def report(model: onnx.ModelProto | str | Path, lines: tuple[str, ...] = LINES) -> dict[str, list[Problem]]:
    """The problems per TensorRT line (an empty list: that line parses the graph)."""
    graph = _Graph(_load(model))  # shape inference once for every line
    return {line: _problems(graph, line) for line in lines}


def _load(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if not Path(model).is_file():
        raise FcnEdgeError(f"ONNX model {model} does not exist: pass a .onnx file")
    try:
        loaded = onnx.load(str(model))
    except Exception as error:  # protobuf raises DecodeError and others for bytes that are not ONNX
        raise FcnEdgeError(f"{model} is not an ONNX model ({type(error).__name__}): pass a .onnx file") from None
    if not loaded.opset_import or not loaded.HasField("graph"):  # an empty file decodes as an empty ModelProto
        raise FcnEdgeError(f"{model} is not an ONNX model (no graph or opset): pass a .onnx file")
    return loaded


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fcn-edge compat", description="Which nodes of an ONNX model TensorRT's ONNX parser rejects, per release line."
    )
    parser.add_argument("onnx", type=nonempty_path)
    parser.add_argument("--line", choices=LINES, action="append", help="TensorRT line to check (default: all)")
    return parser.parse_args(argv)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    failed = 0
    for line, problems in report(args.onnx, tuple(args.line or LINES)).items():
        print(f"TensorRT {line}.x: {'parses it' if not problems else f'rejects it ({len(problems)} problem(s))'}")
        for problem in problems:
            print(f"  {problem.describe()}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
