"""Weight rounding that minimises each conv's output error on calibration data, not each weight's own error.

Rounding every weight to its nearest INT8/INT7 level is optimal weight by weight but not for
what the layer computes: the errors of a channel's weights add up over its inputs. For a
conv, the output error of output channel ``o`` over calibration inputs ``X`` (its input
patches) is ``(w - q)^T H (w - q)`` with ``H = X^T X``, so the best rounding is the one
closest to ``w`` in the metric ``H``. AdaRound (Nagel et al. 2020) relaxes that choice and
optimises it by gradient descent; GPTQ (Frantar et al. 2022, from Optimal Brain Quantization)
solves it greedily in closed form: round one input column at a time and move the columns
not yet rounded by ``-err * Hinv[i, later] / Hinv[i, i]`` to absorb that column's error.
Here it is GPTQ (seconds, no training loop), on the float inputs of each conv.

It runs on a Q/DQ model after ONNX Runtime's quantizer wrote it (:func:`apply`): the scales
are the quantizer's (per output channel, 7 or 8 bits by placement), only the integer weights
change, and every trial of the mixed-precision search and both placements get the same
treatment. ``H`` is collected once per conv from the FP32 graph (:func:`hessians`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from numpy.lib.stride_tricks import sliding_window_view
from onnx import numpy_helper

from ..backends.onnxruntime.session import apply_thread_policy

POSITIONS = 4096  # input positions sampled per conv and image (the Gram matrix of a 1x1 conv is C x C)
DAMPING = 0.01  # of the mean diagonal, added to H (GPTQ's default): keeps H invertible for dead inputs
SEED = 0


class Hessian:
    """``H = X^T X`` per group of a conv (``[groups, D, D]``, D = input channels per group x kernel taps), and how
    rows of its weight map to them."""

    def __init__(self, node: onnx.NodeProto, weight_shape: Sequence[int]):
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        self.transposed = node.op_type == "ConvTranspose"
        self.kernel = tuple(weight_shape[2:])
        self.groups = int(attributes.get("group", 1))
        self.strides = tuple(attributes.get("strides", [1] * len(self.kernel)))
        self.dilations = tuple(attributes.get("dilations", [1] * len(self.kernel)))
        self.pads = tuple(attributes.get("pads", [0] * 2 * len(self.kernel)))
        self.gram: np.ndarray | None = None
        self.count = 0

    @property
    def supported(self) -> bool:
        if len(self.kernel) != 2:
            return False
        if self.transposed:  # non-overlapping transposed convs only: each output reads one input position
            return self.groups == 1 and self.strides == self.kernel and not any(self.pads) and self.dilations == (1, 1)
        return True

    def add(self, x: np.ndarray, rng: np.random.Generator) -> None:
        """Accumulate the input ``x`` ([N, C, H, W]) of the conv."""
        x = x.astype(np.float64)
        if self.transposed:
            rows = x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
            rows = rows[rng.choice(len(rows), min(len(rows), POSITIONS), replace=False)]
            gram = (rows.T @ rows)[None]
        else:
            top, left, bottom, right = self.pads
            x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
            (kh, kw), (dh, dw), (sh, sw) = self.kernel, self.dilations, self.strides
            windows = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
            n, c, oh, ow = windows.shape[:4]
            picks = rng.choice(n * oh * ow, min(n * oh * ow, POSITIONS), replace=False)
            batch, rest = np.divmod(picks, oh * ow)
            row, col = np.divmod(rest, ow)
            patches = windows[batch, :, row, col]  # [P, C, kh, kw]
            per_group = patches.reshape(len(picks), self.groups, -1).transpose(1, 0, 2)  # [G, P, C/G*kh*kw]
            gram = np.einsum("gpi,gpj->gij", per_group, per_group)
        self.gram = gram if self.gram is None else self.gram + gram
        self.count += 1




def hessians(model: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]], nodes: Sequence[str] | None = None,
             threads: int = 2) -> dict[str, Hessian]:  # fmt: skip
    """``H`` of every Conv/ConvTranspose (or of ``nodes``) with a constant weight, from the FP32 graph on ``feeds``."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    found: dict[str, tuple[str, Hessian]] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or (nodes is not None and node.name not in nodes):
            continue
        auto_pad = next((a.s for a in node.attribute if a.name == "auto_pad"), b"NOTSET")
        if len(node.input) < 2 or node.input[1] not in weights or auto_pad not in (b"NOTSET", b""):
            continue
        hessian = Hessian(node, weights[node.input[1]])
        if hessian.supported:
            found[node.name] = (node.input[0], hessian)
    tensors = list(dict.fromkeys(tensor for tensor, _ in found.values()))
    observed = onnx.ModelProto()
    observed.CopyFrom(model)
    existing = {o.name for o in observed.graph.output}
    observed.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors if t not in existing)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    apply_thread_policy(options)
    with tempfile.TemporaryDirectory(prefix="fcn_edge_round_") as tmp:
        path = Path(tmp) / "observed.onnx"
        onnx.save_model(observed, path)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(SEED)
    for feed in feeds:
        values = dict(zip(tensors, session.run(tensors, feed)))
        for tensor, hessian in found.values():
            hessian.add(values[tensor], rng)
    return {name: hessian for name, (_, hessian) in found.items()}


def gptq(weights: np.ndarray, scales: np.ndarray, levels: int, gram: np.ndarray) -> np.ndarray:
    """Integer levels (in ``[-levels, levels]``) for the rows of ``weights`` ([R, D], row r on grid ``scales[r]``),
    rounded column by column with the error spread over the later columns by the inverse of ``gram`` ([D, D])."""
    w = weights.astype(np.float64).copy()
    h = gram.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += DAMPING * np.mean(np.diag(h)) * np.eye(len(h))
    try:
        inverse = np.linalg.inv(h)
        upper = np.linalg.cholesky(inverse).T  # H^-1 = U^T U with U upper: GPTQ's row-wise update
    except np.linalg.LinAlgError:
        return np.clip(np.round(weights / scales[:, None]), -levels, levels)
    quantized = np.zeros_like(w)
    for i in range(w.shape[1]):
        quantized[:, i] = np.clip(np.round(w[:, i] / scales), -levels, levels)
        error = (w[:, i] - quantized[:, i] * scales) / upper[i, i]
        w[:, i + 1 :] -= np.outer(error, upper[i, i + 1 :])
    return quantized


def apply(model: onnx.ModelProto, float_model: onnx.ModelProto, found: dict[str, Hessian]) -> list[str]:
    """Re-round, in the Q/DQ ``model``, the integer weights of every conv ``found`` has ``H`` for, from the float
    weights of ``float_model`` and the scales the quantizer chose; returns the convs changed."""
    initializers = {t.name: t for t in model.graph.initializer}
    float_weights = {t.name: t for t in float_model.graph.initializer}
    float_nodes = {n.name: n for n in float_model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    changed = []
    for node in model.graph.node:
        hessian = found.get(node.name)
        dq = producer.get(node.input[1]) if hessian is not None and len(node.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in initializers or dq.input[1] not in initializers:
            continue
        original = float_nodes.get(node.name)
        if original is None or original.input[1] not in float_weights:
            continue
        w = numpy_helper.to_array(float_weights[original.input[1]]).astype(np.float64)
        tensor = initializers[dq.input[0]]
        current = numpy_helper.to_array(tensor)
        scale = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float64).reshape(-1)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if current.shape != w.shape or hessian.gram is None or (scale.size > 1 and axis != (1 if hessian.transposed else 0)):
            continue
        levels = int(np.abs(current).max())  # the quantizer's largest level: 64 (7 bits) or 127
        if hessian.transposed:  # [I, O, kh, kw]: rows (o, tap) over the input channels, one H
            rows = w.transpose(1, 2, 3, 0).reshape(-1, w.shape[0])
            per_row = np.repeat(np.broadcast_to(scale, (w.shape[1],)), int(np.prod(w.shape[2:])))
            q = gptq(rows, per_row, levels, hessian.gram[0])
            result = q.reshape(w.shape[1], *w.shape[2:], w.shape[0]).transpose(3, 0, 1, 2)
        else:
            out_channels = w.shape[0]
            per_group = out_channels // hessian.groups
            scales = np.broadcast_to(scale, (out_channels,))
            rows = w.reshape(out_channels, -1)
            result = np.concatenate([
                gptq(rows[g * per_group:(g + 1) * per_group], scales[g * per_group:(g + 1) * per_group], levels, hessian.gram[g])
                for g in range(hessian.groups)
            ]).reshape(w.shape)  # fmt: skip
        tensor.CopyFrom(numpy_helper.from_array(result.astype(current.dtype), tensor.name))
        changed.append(node.name)
    return changed
