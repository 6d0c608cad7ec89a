"""A foreign model as the camera runs it: uint8 BGR frames in, uint8 labels out, like our own exports.

Our exports carry preprocessing and ArgMax inside the graph (DESIGN.md, principle 2), so every
runner takes a frame and returns labels. A foreign model gets the same two ends before the
build does anything else with it: calibration, verification and timing all run the graph the
stream will run, and ONNX Runtime, OpenVINO and TensorRT each compute the labels the same way.

In front, for a float input: Cast to float, one 1x1 convolution for channel order, scale and
normalisation (:meth:`Preprocess.affine`, the export's numbers), then the user's layout:
``tensor`` [N,3,H,W], or ``tensor-nhwc`` [N,H,W,3] as converters from TF/TFLite keep it.
The added nodes stay float on every INT8 placement (:data:`..quantize.qdq.KEEP_FLOAT`).
Behind: K >= 2 class scores [N,K,H,W] -> ArgMax; one channel [N,1,H,W] (a binary segmenter) ->
foreground where it exceeds the threshold; labels [N,H,W] pass. Behind a ``tensor-nhwc`` input
the scores may be [N,H,W,K] (a TFLite conversion keeps both ends NHWC: :func:`channel_axis`). Labels leave as uint8 through
float, the one type TensorRT casts both from and to UINT8 (principle 8).

A one-channel output holds probabilities when a Sigmoid makes it and logits otherwise only
when the user says so (``--output-activation``): a wrong guess would mark every pixel one
class and still agree with itself in verification. ``--threshold`` is a probability either
way; on logits the graph compares with its logit, ln(T / (1 - T)), so the same pixels win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import FcnEdgeError
from ..quantize.qdq import KEEP_FLOAT
from ..spec import Preprocess

FORMATS = ("frame", "tensor", "tensor-nhwc")
LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity")  # values unchanged, only moved
ACTIVATIONS = ("sigmoid", "logits")
DEFAULT_THRESHOLD = 0.5
INPUT, LABELS = "frame", "labels"  # the names our own frame exports use
PREFIX = KEEP_FLOAT  # the added nodes' and tensors' names: apart from the user's, and never quantized


@dataclass(frozen=True)
class Binary:
    """How a one-channel output becomes background (0) / foreground (1)."""

    activation: str  # "sigmoid": the output is a probability; "logits": before the sigmoid
    threshold: float  # a probability, whatever the activation
    detected: bool  # the activation was read from the graph (a final Sigmoid), not given

    @property
    def on_output(self) -> float:
        """The threshold on the output's own scale."""
        t = self.threshold
        return t if self.activation == "sigmoid" else math.log(t / (1 - t))

    def describe(self) -> dict:
        return {"activation": self.activation, "threshold": self.threshold, "on_output": self.on_output,
                "activation_from": "the graph's final Sigmoid" if self.detected else "--output-activation"}  # fmt: skip


def scores_output(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The output the labels come from: the first declared as [N,K,H,W] or [N,H,W], else the first."""
    ranked = [
        o for o in model.graph.output if o.type.tensor_type.HasField("shape") and len(o.type.tensor_type.shape.dim) in (3, 4)
    ]
    return (ranked or list(model.graph.output))[0]


def channel_axis(output: onnx.ValueInfoProto, input_format: str) -> int:
    """Where the scores' K is: 3 ([N,H,W,K]) behind a ``tensor-nhwc`` input whose output declares a last size smaller
    than its second (a TF/TFLite conversion keeping both ends NHWC, e.g. [1,256,256,1]), else 1 ([N,K,H,W])."""
    dims = [d.dim_value or None for d in output.type.tensor_type.shape.dim]
    if input_format != "tensor-nhwc" or len(dims) != 4 or dims[3] is None:
        return 1
    return 3 if dims[1] is None or dims[1] > dims[3] else 1


def channels(output: onnx.ValueInfoProto, axis: int = 1) -> int | None:
    """K of a 4-D output (at ``axis``) when the graph declares it."""
    dims = output.type.tensor_type.shape.dim
    return dims[axis].dim_value or None if len(dims) == 4 else None


def binary(model: onnx.ModelProto, path: Path, activation: str | None, threshold: float | None) -> Binary:
    """The thresholding of ``model``'s one-channel output, from the flags and its final node."""
    output = scores_output(model).name
    producers = {o: n for n in model.graph.node for o in n.output}
    producer = producers.get(output)
    while producer is not None and producer.op_type in LAYOUT_OPS:  # a Sigmoid before NCHW -> NHWC still makes probabilities
        producer = producers.get(producer.input[0])
    sigmoid = producer is not None and producer.op_type == "Sigmoid"
    if activation is None and not sigmoid:
        made_by = f"a {producer.op_type} node" if producer is not None else "no node"
        raise FcnEdgeError(
            f"{path} gives one channel ({output!r}, made by {made_by}, not a Sigmoid): say what it holds with "
            "--output-activation logits (raw scores) or sigmoid (probabilities)"
        )
    return Binary(activation or "sigmoid", DEFAULT_THRESHOLD if threshold is None else threshold, activation is None)


def frame_model(model: onnx.ModelProto, input_format: str, preprocess: Preprocess, rule: Binary | None,
                fixed_size: tuple[int, int] | None) -> onnx.ModelProto:  # fmt: skip
    """``model`` taking uint8 [N,H,W,3] BGR frames and giving uint8 [N,H,W] ``labels`` (see the module docstring)."""
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    opset = next((o.version for o in wrapped.opset_import if o.domain in ("", "ai.onnx")), 1)
    constants = {t.name for t in graph.initializer}
    original = next(v for v in graph.input if v.name not in constants)
    front = _front(original.name, input_format, preprocess)
    scores = scores_output(wrapped)
    back = _back(scores, rule, opset, channel_axis(scores, input_format))
    nodes, initializers = front[0] + list(graph.node) + back[0], front[1] + back[1]
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    height, width = fixed_size or ("H", "W")
    frame = helper.make_tensor_value_info(INPUT, TensorProto.UINT8, [_batch(original), height, width, 3])
    inputs = [frame if v.name == original.name else v for v in graph.input] if front[0] else list(graph.input)
    graph.ClearField("input")
    graph.input.extend(inputs)
    graph.ClearField("output")
    graph.output.append(helper.make_tensor_value_info(back[2], TensorProto.UINT8, [_batch(original), height, width]))
    _prune(graph)
    return wrapped


def _front(input_name: str, input_format: str, preprocess: Preprocess) -> tuple[list, list]:
    """(nodes, initializers) from the uint8 frame to the model's own input; none for a frame model."""
    if input_format == "frame":
        return [], []
    weight, bias = preprocess.affine()
    names = {k: PREFIX + k for k in ("as_float", "nchw", "normalised", "weight", "bias")}
    last = input_name if input_format == "tensor" else names["normalised"]
    nodes = [
        helper.make_node("Cast", [INPUT], [names["as_float"]], name=PREFIX + "cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", [names["as_float"]], [names["nchw"]], name=PREFIX + "to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", [names["nchw"], names["weight"], names["bias"]], [last], name=PREFIX + "normalise"),
    ]
    if input_format == "tensor-nhwc":
        nodes.append(helper.make_node("Transpose", [last], [input_name], name=PREFIX + "to_nhwc", perm=[0, 2, 3, 1]))
    return nodes, [numpy_helper.from_array(weight, names["weight"]), numpy_helper.from_array(bias, names["bias"])]


def _back(scores: onnx.ValueInfoProto, rule: Binary | None, opset: int, axis: int) -> tuple[list, list, str]:
    """(nodes, initializers, labels name) from the model's scores (or labels) to uint8 labels."""
    tensor = scores.type.tensor_type
    if tensor.elem_type == TensorProto.UINT8 and len(tensor.shape.dim) == 3:
        return [], [], scores.name  # labels already
    if len(tensor.shape.dim) == 3:  # integer labels: to uint8 through float
        ids = scores.name
        nodes, initializers = [], []
    elif rule is None:
        ids = PREFIX + "class_ids"
        nodes, initializers = (
            [helper.make_node("ArgMax", [scores.name], [ids], name=PREFIX + "argmax", axis=axis, keepdims=0)],
            [],
        )
    else:
        ids = PREFIX + "foreground"
        threshold, axes = PREFIX + "threshold", PREFIX + "channel_axis"
        initializers = [numpy_helper.from_array(np.array(rule.on_output, np.float32), threshold)]
        squeeze = {}  # before opset 13 Squeeze took its axes as an attribute
        if opset >= 13:
            initializers.append(numpy_helper.from_array(np.array([axis], np.int64), axes))
        else:
            squeeze = {"axes": [axis]}
        nodes = [
            helper.make_node("Greater", [scores.name, threshold], [PREFIX + "above"], name=PREFIX + "threshold"),
            helper.make_node(
                "Squeeze", [PREFIX + "above", *([axes] if opset >= 13 else [])], [ids], name=PREFIX + "squeeze", **squeeze
            ),
        ]
    nodes += [
        helper.make_node("Cast", [ids], [PREFIX + "labels_float"], name=PREFIX + "labels_to_float", to=TensorProto.FLOAT),
        helper.make_node("Cast", [PREFIX + "labels_float"], [LABELS], name=PREFIX + "labels", to=TensorProto.UINT8),
    ]
    return nodes, initializers, LABELS


def _batch(value: onnx.ValueInfoProto) -> int | str:
    dims = value.type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].dim_value else "N"


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initializers no output needs (the other outputs' branches, an aux head)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
            for attribute in node.attribute:  # names a subgraph reads from the outer scope
                if attribute.HasField("g"):
                    needed.update(i for n in attribute.g.node for i in n.input)
    graph.ClearField("node")
    graph.node.extend(reversed(kept))
    initializers = [t for t in graph.initializer if t.name in needed]
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
