"""INT8 Q/DQ ONNX models from one set of tensor ranges, with ONNX Runtime's quantizer.

Weights are always symmetric INT8 with one scale per output channel of each Conv (zero
point 0); on the ONNX Runtime placement within ORT's 7-bit range ([-64, 64], ``reduce_range``).
On x86-64 without VNNI, ORT's u8 x s8 kernels multiply with VPMADDUBSW, which adds each pair
of products into a saturating int16: 2 x 255 x 127 overflows it, 2 x 255 x 64 = 32640 does not
(ORT's quantization docs give reduce_range or U8U8 as the fix). Measured on a Zen 3 EPYC
(AVX2): saturation held the fragile model of tests/unit/test_quantize.py at 93% agreement
with its worst conv in float, 99% without; 7-bit weights cost the default model no accuracy
(99.97% agreement, mIoU -0.07, as with 8 bits) and no speed, while U8U8 (u8 weights, or ORT's
``session.x64quantprecision``) ran 1.5x slower at 1024x512. Every CPU gets 7-bit weights, so
an artifact built on a VNNI machine stays right on one without; with VNNI (VPDPBUSD sums into
int32, nothing saturates) they cost half the weight resolution and no speed.

The two placements differ in where activation Q/DQ pairs go and their type:

  tensorrt     symmetric INT8 (zero point 0, scale = amax / 127), on the inputs of
               Conv/Gemm/MatMul and on the residual input of each Add (the main-branch conv
               then fuses with the Add, :mod:`.placement`); biases stay float (TensorRT has
               no INT32 DequantizeLinear). TensorRT fuses each Q into the producing layer,
               and a Resize feeding a Conv runs INT8 as Resize -> Q/DQ -> Conv. A Q/DQ on
               every output would force INT8 reformat layers between fusions and can make
               INT8 slower than FP16.
  onnxruntime  on the inputs and outputs of Conv and Add, so ONNX Runtime's CPU optimizer
               turns every DQ -> Conv -> Q unit into one integer conv (QLinearConv), except
               between an op and the ReLU after it (:mod:`.placement`): the pair after the
               ReLU stays. Activations are UINT8 with the observed minimum (clipped to
               -amax) as the low end: a ReLU output then gets zero point 0 and the ReLU
               folds into the conv. Symmetric INT8 activations measured slower on x86: ONNX Runtime's
               S8->U8 rewrite left 12 of 26 convs unfused. Convs with fewer than
               ``MIN_INT8_CHANNELS`` input and output channels stay float: ONNX Runtime's
               integer conv is slower than its float NCHWc conv there (the FCN's final
               8->8 3x3 conv at 1024x512: 88 ms INT8 against 30 ms float).

Ranges come in as ONNX Runtime's calibration-cache JSON, so ``quantize_static`` never
calibrates again: both placements and every sensitivity trial reuse the same statistics.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnx.version_converter
from onnxruntime.quantization import (
    CalibrationMethod, QuantFormat, QuantType, TensorsData, quantize_static, save_tensors_data,
)  # fmt: skip
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..atomic import atomic_path
from ..errors import FcnEdgeError
from . import placement as qdq_placement
from ..scratch import scratch_folder
from .label_ops import label_convs
from .score_tail import score_tail
from .statistics import TensorRanges

MIN_OPSET = 13  # DequantizeLinear's axis (per-channel weights)
PLACEMENTS = ("onnxruntime", "tensorrt")
WEIGHT_BITS = {"onnxruntime": 7, "tensorrt": 8}  # see the module docstring; part of an INT8 build's key
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
TENSORRT_OPS = (*WEIGHTED_OPS, "Add")
ONNXRUNTIME_OPS = (*WEIGHTED_OPS, "Add")
MIN_INT8_CHANNELS = 16
PLACEMENT_RULES = {"tensorrt": ("activation", "residual"), "onnxruntime": ("activation", "float_weights")}  # see .placement
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
KEEP_FLOAT = "fcn_edge_float_"  # nodes named so stay float on every placement: the frame preprocessing a build adds


def prepare(source: str | Path, output: str | Path) -> None:
    """Symbolic shape inference (dynamic N/H/W merged) and ORT's basic graph optimisations.

    Statistics, Q/DQ placement and node names all refer to this prepared graph; without
    shapes the quantizer silently skips tensors whose type it cannot see. The optimiser fuses
    ``Cast(int -> float) -> Cast(float -> uint8)`` into one cast from an integer to UINT8,
    which TensorRT cannot parse (UINT8 converts from FP32/FP16 only), so the float step is
    put back. A model below opset 13 is converted to 13 first: per-channel weight scales
    need DequantizeLinear's ``axis``, which opset 13 introduced. Every node gets a unique name
    (:func:`name_nodes`): the quantizer excludes nodes by name.
    """
    with atomic_path(output) as tmp, _quiet():
        quant_pre_process(_at_least_opset(source, MIN_OPSET), str(tmp), auto_merge=True)
        model = onnx.load(str(tmp))
        if _uint8_through_float(model.graph) + name_nodes(model.graph):
            onnx.save_model(model, tmp)


def name_nodes(graph: onnx.GraphProto) -> int:
    """Name each unnamed or twice-named node ``<op_type>_<index>`` (unique); returns how many it named.

    Unnamed nodes are legal ONNX, but ``quantize_static(nodes_to_exclude=[""])`` would keep every
    one of them in float: one unnamed narrow conv, and the whole model is written as INT8 in FP32.
    """
    taken = Counter(n.name for n in graph.node if n.name)
    named = 0
    for index, node in enumerate(graph.node):
        if node.name and taken[node.name] == 1:
            continue
        taken[node.name] -= bool(node.name)
        name = f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name, taken[name] = name, 1
        named += 1
    return named


def _at_least_opset(source: str | Path, opset: int) -> str | onnx.ModelProto:
    """``source`` (its path) when its default-domain opset is ``opset`` or more, else the model converted to it."""
    model = onnx.load(str(source), load_external_data=False)
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return str(source)
    try:
        return onnx.version_converter.convert_version(onnx.load(str(source)), opset)
    except Exception as error:  # the converter raises bare RuntimeErrors/ValueErrors per unsupported op
        raise FcnEdgeError(
            f"{source} uses ONNX opset {current}, and converting it to {opset} (needed for per-channel INT8) failed "
            f"({str(error).splitlines()[0][:200]}): re-export it with opset_version={opset} or later"
        ) from None


def _uint8_through_float(graph: onnx.GraphProto) -> int:
    """Make every cast to UINT8 from a non-float tensor go through FP32; returns how many it split."""
    typed = [*graph.value_info, *graph.input, *graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in typed} | {t.name: t.data_type for t in graph.initializer}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    split = 0
    for index, node in reversed(list(enumerate(graph.node))):
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        source_type = types.get(node.input[0]) if node.input else None
        if to == onnx.TensorProto.UINT8 and source_type and source_type not in floats:
            via = f"{node.output[0]}_as_float"
            graph.node.insert(
                index,
                onnx.helper.make_node(
                    "Cast", [node.input[0]], [via], name=f"{node.name or via}_float", to=onnx.TensorProto.FLOAT
                ),
            )
            node.input[0] = via
            split += 1
    return split


def quantize(
    prepared: str | Path,
    output: str | Path,
    ranges: TensorRanges,
    placement: str = "onnxruntime",
    exclude_nodes: Sequence[str] = (),
) -> list[str]:
    """Write the Q/DQ model of ``prepared`` for ``placement``; ``exclude_nodes`` stay in float.

    Returns the inputs the placement rules left un-quantized ("node:input").
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement {placement!r} not in {PLACEMENTS}")
    tensorrt = placement == "tensorrt"
    data = TensorsData(CalibrationMethod.MinMax, {
        name: (np.float32(-amax if tensorrt else max(ranges.low.get(name, -amax), -amax)), np.float32(amax))
        for name, amax in ranges.amax.items()
    })  # fmt: skip
    ops = TENSORRT_OPS if tensorrt else ONNXRUNTIME_OPS
    graph = onnx.load(str(prepared), load_external_data=False)
    exclude_nodes = [*exclude_nodes, *label_convs(graph), *score_tail(graph), *added_nodes(graph)]  # float on every placement
    options = {"ActivationSymmetric": tensorrt, "WeightSymmetric": True}
    if tensorrt:
        options["OpTypesToExcludeOutputQuantization"] = list(ops)
        options["QuantizeBias"] = False  # TensorRT takes float biases; it has no INT32 DequantizeLinear
    else:
        exclude_nodes = [*exclude_nodes, *narrow_convs(graph)]
    with scratch_folder("qdq") as tmp, atomic_path(output) as out, _quiet():
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        quantize_static(
            str(prepared),
            str(out),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops),
            per_channel=True,
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=WEIGHT_BITS[placement] == 7,
            nodes_to_exclude=list(exclude_nodes),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=options,
            calibration_cache_path=cache,
        )
        model = onnx.load(str(out))
        freed = qdq_placement.apply(model, PLACEMENT_RULES[placement])
        onnx.save_model(model, out)
    return freed


def added_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes named with KEEP_FLOAT: the cast, layout and normalisation in front of a foreign model
    (:mod:`fcn_edge.compile.foreign`). Quantized, its 1x1 conv would halve the frame's 256 levels on
    TensorRT's symmetric placement; in float it costs little, and the model's own first conv is INT8."""
    return [n.name for n in model.graph.node if n.name.startswith(KEEP_FLOAT)]


def narrow_convs(model: onnx.ModelProto) -> list[str]:
    """Convs with fewer than MIN_INT8_CHANNELS input and output channels (faster in float on ORT CPU)."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    narrow = []
    for node in model.graph.node:
        shape = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if shape and shape[0] < MIN_INT8_CHANNELS and shape[1] < MIN_INT8_CHANNELS:
            narrow.append(node.name)
    return narrow


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes the ONNX Runtime placement quantizes (not only convs: Adds too), what the
    mixed-precision search may keep in float; with all of them excluded no Q/DQ is left."""
    skip = set(narrow_convs(model)) | set(label_convs(model)) | set(added_nodes(model))
    return [n.name for n in model.graph.node if n.op_type in ONNXRUNTIME_OPS and n.name not in skip]


def precision_summary(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """Per op type, how many nodes run INT8 (an input comes from a DequantizeLinear) and how many in float."""
    from_dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int8, other = Counter(), Counter()
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        (int8 if any(i in from_dq for i in node.input) else other)[node.op_type] += 1
    return {op: {"int8": int8[op], "float": other[op]} for op in sorted(set(int8) | set(other))}


def quantized_activations(model: onnx.ModelProto) -> set[str]:
    """The activation tensors a Q/DQ model quantizes (weights are quantized per channel by TensorRT itself)."""
    constants = {t.name for t in model.graph.initializer}
    return {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in constants}


class _quiet:
    """ONNX Runtime's quantizer logs advice at WARNING for every call; the build reports what matters."""

    def __enter__(self) -> None:
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().setLevel(self.level)
