"""Bias correction: each quantized conv's bias moved by the mean shift quantization causes on calibration data.

Rounding weights to 7/8 bits and clipping activations does not only add noise: it shifts the
mean of a conv's output channel (a weight rounded up on every pixel adds the same error on
every pixel), and the shifts of 55 layers add up. Nagel et al. 2019 ("Data-Free
Quantization", section 4.2) correct the expected error; NNCF's FastBiasCorrection does it
empirically, layer by layer: the bias of each conv grows by ``E[float output] - E[quantized
output]`` per output channel, the quantized output measured with the quantized model's own
(already corrected) inputs, so a correction also absorbs the shift its inputs arrived with.

Here the means come from two runs over the calibration feeds: the FP32 graph, and the Q/DQ
model run as fake quantization (ONNX Runtime with graph optimisations off, so every conv's
own float output can be read; ORT's integer kernels compute the same sums exactly). The
shifts are added to the FP32 graph's biases and the Q/DQ model is made again from it with the
same ranges; ``rounds`` repeats this, since a corrected conv changes what the convs after it
see (two rounds leave under 1% of the first round's shift, measured on the selfie model).
Convs the Q/DQ model keeps in float are corrected too: their inputs still arrive shifted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from ..backends.onnxruntime.session import apply_thread_policy

CONVS = ("Conv", "ConvTranspose")


def channel_means(model: onnx.ModelProto, tensors: Sequence[str], feeds: Sequence[dict[str, np.ndarray]], threads: int = 2) -> dict[str, np.ndarray]:
    """Mean over batch and space of every channel (axis 1) of each of ``tensors``, over ``feeds``."""
    observed = onnx.ModelProto()
    observed.CopyFrom(model)
    existing = {o.name for o in observed.graph.output}
    observed.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors if t not in existing)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every conv's own float output
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    apply_thread_policy(options)
    with tempfile.TemporaryDirectory(prefix="fcn_edge_bias_") as tmp:
        path = Path(tmp) / "observed.onnx"
        onnx.save_model(observed, path)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    sums: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(tensors, session.run(list(tensors), feed)):
            total = value.astype(np.float64).sum(axis=tuple(i for i in range(value.ndim) if i != 1))
            sums[name] = sums.get(name, 0.0) + total / (value.size / value.shape[1])
    return {name: total / len(feeds) for name, total in sums.items()}


def conv_levels(graph: onnx.GraphProto) -> list[list[str]]:
    """Convs grouped so that no conv depends on another of its group: level = 1 + the deepest conv upstream."""
    depth: dict[str, int] = {}
    levels: dict[int, list[str]] = {}
    for node in graph.node:  # topologically sorted
        below = max((depth.get(i, 0) for i in node.input), default=0)
        level = below + 1 if node.op_type in CONVS else below
        if node.op_type in CONVS:
            levels.setdefault(level, []).append(node.name)
        for out in node.output:
            depth[out] = level
    return [levels[k] for k in sorted(levels)]


class _Biases:
    """The (DequantizeLinear'd INT32 or float) bias of each conv of a Q/DQ model, movable by a float shift."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}

    def shift(self, node: onnx.NodeProto, shift: np.ndarray) -> bool:
        if len(node.input) < 3 or not node.input[2]:
            return False
        dq = self.producer.get(node.input[2])
        if dq is None:  # a float bias
            tensor = self.initializers.get(node.input[2])
            if tensor is None:
                return False
            value = numpy_helper.to_array(tensor).astype(np.float64) + shift
            tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float32), tensor.name))
            return True
        if dq.op_type != "DequantizeLinear" or dq.input[0] not in self.initializers or dq.input[1] not in self.initializers:
            return False
        tensor = self.initializers[dq.input[0]]
        scale = numpy_helper.to_array(self.initializers[dq.input[1]]).astype(np.float64)
        value = numpy_helper.to_array(tensor).astype(np.float64) + np.round(shift / scale)
        info = np.iinfo(numpy_helper.to_array(tensor).dtype)
        tensor.CopyFrom(numpy_helper.from_array(np.clip(value, info.min, info.max).astype(info.dtype), tensor.name))
        return True


def bias_shifts(prepared: onnx.ModelProto, quantized: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per conv (by node name): the bias shift that makes its mean output per channel in ``quantized`` (corrected
    level by level, so each conv sees its inputs as the corrected convs before it deliver them) that of ``prepared``.
    ``quantized`` is corrected in place."""
    float_out = {n.name: n.output[0] for n in prepared.graph.node if n.op_type in CONVS}
    nodes = {n.name: n for n in quantized.graph.node if n.op_type in CONVS and n.name in float_out}
    exact = channel_means(prepared, [float_out[n] for n in nodes], feeds)
    biases = _Biases(quantized)
    shifts = {}
    for level in conv_levels(quantized.graph):
        names = [n for n in level if n in nodes]
        rounded = channel_means(quantized, [nodes[n].output[0] for n in names], feeds)
        for name in names:
            shift = exact[float_out[name]] - rounded[nodes[name].output[0]]
            if biases.shift(nodes[name], shift):
                shifts[name] = shift
    return shifts


def add_to_biases(model: onnx.ModelProto, shifts: dict[str, np.ndarray]) -> int:
    """Add ``shifts[node]`` to each named conv's bias (creating a zero bias where there is none); returns how many moved."""
    initializers = {t.name: t for t in model.graph.initializer}
    moved = 0
    for node in model.graph.node:
        shift = shifts.get(node.name)
        if node.op_type not in CONVS or shift is None or not np.any(shift):
            continue
        if len(node.input) > 2 and node.input[2]:
            tensor = initializers.get(node.input[2])
            if tensor is None:  # a computed bias: leave it
                continue
            bias = numpy_helper.to_array(tensor).astype(np.float64)
        else:
            bias = np.zeros(len(shift))
            name = f"{node.name}_corrected_bias"
            tensor = model.graph.initializer.add()
            tensor.name = name
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = name
        tensor.CopyFrom(numpy_helper.from_array((bias + shift).astype(np.float32), tensor.name))
        moved += 1
    return moved


def correct(
    prepared: str | Path,
    quantized: str | Path,
    corrected: str | Path,
    feeds: Sequence[dict[str, np.ndarray]],
) -> dict[str, float]:
    """Write ``corrected``: ``prepared`` with its conv biases moved by the shifts measured on ``quantized``, its Q/DQ
    model (module docstring); Q/DQ models made from it with the same ranges carry the corrected biases.
    Returns each conv's correction, as the largest |shift| over its channels, for the build's record.
    """
    model = onnx.load(str(prepared))
    shifts = bias_shifts(model, onnx.load(str(quantized)), feeds)
    add_to_biases(model, shifts)
    onnx.save_model(model, corrected)
    return {name: float(np.abs(shift).max()) for name, shift in shifts.items()}
