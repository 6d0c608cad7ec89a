"""INT8 Q/DQ ONNX models from one set of tensor ranges, with ONNX Runtime's quantizer.

Weights are always symmetric INT8 with one scale per output channel of each Conv (zero
point 0). The two placements differ in where activation Q/DQ pairs go and their type:

  tensorrt     symmetric INT8 (zero point 0, scale = amax / 127), on the inputs of
               Conv/Gemm/MatMul and Add only (the residual add then fuses into the conv
               before it); biases stay float (TensorRT has no INT32 DequantizeLinear). TensorRT fuses each Q into the producing layer, and a Resize
               feeding a Conv runs INT8 as Resize -> Q/DQ -> Conv. A Q/DQ on every output
               would force INT8 reformat layers between fusions and can make INT8 slower
               than FP16.
  onnxruntime  on the inputs and outputs of Conv and Add, so ONNX Runtime's CPU optimizer
               turns every DQ -> Conv -> Q unit into one integer conv (QLinearConv).
               Activations are UINT8 with the observed minimum (clipped to -amax) as the
               low end: a ReLU output then gets zero point 0 and the ReLU folds into the
               conv. Symmetric INT8 activations measured slower on x86: ONNX Runtime's
               S8->U8 rewrite left 12 of 26 convs unfused. Convs with fewer than
               ``MIN_INT8_CHANNELS`` input and output channels stay float: ONNX Runtime's
               integer conv is slower than its float NCHWc conv there (the FCN's final
               8->8 3x3 conv at 1024x512: 88 ms INT8 against 30 ms float).

Ranges come in as ONNX Runtime's calibration-cache JSON, so ``quantize_static`` never
calibrates again: both placements and every sensitivity trial reuse the same statistics.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod, QuantFormat, QuantType, TensorsData, quantize_static, save_tensors_data,
)  # fmt: skip
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..atomic import atomic_path
from .statistics import TensorRanges

PLACEMENTS = ("onnxruntime", "tensorrt")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
TENSORRT_OPS = (*WEIGHTED_OPS, "Add")
ONNXRUNTIME_OPS = (*WEIGHTED_OPS, "Add")
MIN_INT8_CHANNELS = 16
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def prepare(source: str | Path, output: str | Path) -> None:
    """Symbolic shape inference (dynamic N/H/W merged) and ORT's basic graph optimisations.

    Statistics, Q/DQ placement and node names all refer to this prepared graph; without
    shapes the quantizer silently skips tensors whose type it cannot see.
    """
    with atomic_path(output) as tmp, _quiet():
        quant_pre_process(str(source), str(tmp), auto_merge=True)


def quantize(
    prepared: str | Path,
    output: str | Path,
    ranges: TensorRanges,
    placement: str = "onnxruntime",
    exclude_nodes: Sequence[str] = (),
) -> None:
    """Write the Q/DQ model of ``prepared`` for ``placement``; ``exclude_nodes`` stay in float."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement {placement!r} not in {PLACEMENTS}")
    tensorrt = placement == "tensorrt"
    data = TensorsData(CalibrationMethod.MinMax, {
        name: (np.float32(-amax if tensorrt else max(ranges.low.get(name, -amax), -amax)), np.float32(amax))
        for name, amax in ranges.amax.items()
    })  # fmt: skip
    ops = TENSORRT_OPS if tensorrt else ONNXRUNTIME_OPS
    options = {"ActivationSymmetric": tensorrt, "WeightSymmetric": True}
    if tensorrt:
        options["OpTypesToExcludeOutputQuantization"] = list(ops)
        options["QuantizeBias"] = False  # TensorRT takes float biases; it has no INT32 DequantizeLinear
    else:
        exclude_nodes = [*exclude_nodes, *narrow_convs(onnx.load(str(prepared), load_external_data=False))]
    with tempfile.TemporaryDirectory(prefix="fcn_edge_qdq_") as tmp, atomic_path(output) as out, _quiet():
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        quantize_static(
            str(prepared), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops), per_channel=True,
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude_nodes),
            calibrate_method=CalibrationMethod.MinMax, extra_options=options, calibration_cache_path=cache,
        )


def narrow_convs(model: onnx.ModelProto) -> list[str]:
    """Convs with fewer than MIN_INT8_CHANNELS input and output channels (faster in float on ORT CPU)."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    narrow = []
    for node in model.graph.node:
        shape = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if shape and shape[0] < MIN_INT8_CHANNELS and shape[1] < MIN_INT8_CHANNELS:
            narrow.append(node.name)
    return narrow


def quantizable_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the weighted nodes both placements make INT8: the layers sensitivity can keep in float."""
    skip = set(narrow_convs(model))
    return [n.name for n in model.graph.node if n.op_type in WEIGHTED_OPS and n.name not in skip]


def precision_summary(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """Per op type, how many nodes run INT8 (an input comes from a DequantizeLinear) and how many in float."""
    from_dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int8, other = Counter(), Counter()
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        (int8 if any(i in from_dq for i in node.input) else other)[node.op_type] += 1
    return {op: {"int8": int8[op], "float": other[op]} for op in sorted(set(int8) | set(other))}


class _quiet:
    """ONNX Runtime's quantizer logs advice at WARNING for every call; the build reports what matters."""

    def __enter__(self) -> None:
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().setLevel(self.level)
