"""INT8 Q/DQ ONNX models from one set of tensor ranges, with ONNX Runtime's quantizer.

Both placements are symmetric INT8 (zero point 0 everywhere, scale = amax / 127) with one
weight scale per output channel of each Conv, what TensorRT requires and ONNX Runtime runs
as INT8 on any CPU. They differ only in where Q/DQ pairs go:

  tensorrt     on the inputs of Conv/Gemm/MatMul and of Add (so the residual add fuses
               into the conv before it) and nowhere else: TensorRT fuses the Q into the
               producing layer's output, and a Resize feeding a Conv runs INT8 as
               Resize -> Q/DQ -> Conv. A Q/DQ on every output would instead force
               INT8 reformat layers between fusions and can make INT8 slower than FP16.
  onnxruntime  on inputs and outputs of every quantizable op: ONNX Runtime's CPU
               optimizer turns each DQ -> Conv -> Q unit into one integer conv, which a
               float conv output would prevent.

Ranges come in as ONNX Runtime's calibration-cache JSON, so ``quantize_static`` never
calibrates again: every variant (and the sensitivity pass) reuses the same statistics.
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
ONNXRUNTIME_OPS = (*WEIGHTED_OPS, "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Resize", "Concat")
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
    data = TensorsData(
        CalibrationMethod.MinMax, {name: (np.float32(-amax), np.float32(amax)) for name, amax in ranges.amax.items()}
    )
    ops = TENSORRT_OPS if placement == "tensorrt" else ONNXRUNTIME_OPS
    options = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if placement == "tensorrt":
        options["OpTypesToExcludeOutputQuantization"] = list(ops)
    with tempfile.TemporaryDirectory(prefix="fcn_edge_qdq_") as tmp, atomic_path(output) as out, _quiet():
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        quantize_static(
            str(prepared), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops), per_channel=True, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude_nodes),
            calibrate_method=CalibrationMethod.MinMax, extra_options=options, calibration_cache_path=cache,
        )


def quantizable_nodes(model: onnx.ModelProto, placement: str = "onnxruntime") -> list[str]:
    """Names of the nodes ``quantize`` would make INT8: the candidates for keeping in float."""
    ops = TENSORRT_OPS if placement == "tensorrt" else ONNXRUNTIME_OPS
    return [n.name for n in model.graph.node if n.op_type in ops]


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
