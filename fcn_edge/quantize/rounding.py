"""Learned weight rounding (AdaRound, Nagel et al. 2020), conv by conv on the calibration images.

Rounding each weight to its nearest INT8 level is not the rounding that keeps a conv's output
closest to FP32: the errors of a row add up. AdaRound learns, per weight, whether to round down or
up (a rectified sigmoid pushed to 0 or 1 by an annealed regulariser) so that the conv's output on
calibration inputs stays close to the FP32 conv's. Each conv is fitted in graph order on inputs
from the graph whose earlier convs are already rounded (the "asymmetric" reconstruction of
QDrop/BRECQ: a conv learns to undo what the ones before it changed), against the FP32 conv on
FP32 inputs. Every conv becomes a matrix product on sampled patches (``[groups, rows, K]``:
unfolded 3x3/5x5 windows, one group per channel for a depthwise conv, the four taps of a 2x2
stride-2 transposed conv as four outputs), so one conv takes a few seconds on two cores.

The result is the prepared float graph with each rounded weight replaced by its dequantized
value, which the quantizer (:mod:`.qdq`, symmetric per channel, scale = max |w| / levels) turns
back into exactly those integers. It is made for one weight width: 7 bits for the ONNX Runtime
placement (TensorRT's 8-bit one keeps nearest rounding; a 7-bit level is not an 8-bit one).

Measured on MediaPipe's selfie model (docs/foreign.md, "Learned weight rounding"), held-out
photos: weights alone, 8 bits, 98.43% -> 99.12% label agreement with FP32.

torch (the ``[train]`` extra) does the small per-conv optimisations; without it the build says so
in one line and keeps nearest rounding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from tqdm import tqdm

from ..atomic import atomic_path
from ..errors import FcnEdgeError
from . import qdq
from .statistics import Observer

IMAGES = 8  # calibration images the convs are fitted on (their inputs are held in memory one conv at a time)
ITERATIONS = 500  # Adam steps per conv
BATCH_ROWS = 1024  # patch rows per step
SAMPLED_ROWS = 16384  # patch rows kept per conv (sampled from every calibration image)
WARMUP = 0.2  # share of the steps fitted without the regulariser
REGULARISER = 0.01  # weight of the push to 0/1 (AdaRound's lambda), the output error normalised by its energy
BETA = (20.0, 2.0)  # the regulariser's exponent, annealed from sharp to soft
LEARNING_RATE = 1e-2
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch: h = clip(sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


@dataclass
class Rounded:
    """What :func:`learn_rounding` did, for the build's log and sidecar."""

    convs: list[str] = field(default_factory=list)  # rounded by learning, in graph order
    skipped: dict[str, str] = field(default_factory=dict)  # conv -> why it keeps nearest rounding
    error: dict[str, tuple[float, float]] = field(default_factory=dict)  # conv -> relative output error (nearest, learned)
    out_of_time: bool = False
    seconds: float = 0.0


def torch_or_none():
    """torch when installed (the ``[train]`` extra), else None: a deploy box builds with nearest rounding."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def unsupported(node: onnx.NodeProto, weight: np.ndarray) -> str | None:
    """Why ``node`` cannot be written as a product on patches here (None when it can)."""
    attrs = _attributes(node)
    if weight.ndim != 4:
        return f"{weight.ndim}-D weight"
    if node.op_type == "ConvTranspose":
        kernel, strides = list(attrs.get("kernel_shape", weight.shape[2:])), list(attrs.get("strides", [1, 1]))
        if kernel != strides or any(attrs.get("pads", [0])) or attrs.get("group", 1) != 1 or any(attrs.get("output_padding", [0])):
            return "transposed conv with overlapping taps, pads or groups"
        return None
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return "auto_pad"
    group = attrs.get("group", 1)
    if group != 1 and not (group == weight.shape[0] and weight.shape[1] == 1):
        return "grouped (not depthwise) conv"
    return None


def _patches(torch, node: onnx.NodeProto, x: np.ndarray, weight: np.ndarray, rows: np.ndarray):
    """(patches [G, N, K] at ``rows``, weight as [G, O, K], and back to the weight's shape)."""
    attrs = _attributes(node)
    x = torch.from_numpy(np.ascontiguousarray(x))
    if node.op_type == "ConvTranspose":  # kernel == stride: each input pixel feeds its own kh x kw output taps
        cin = weight.shape[0]
        flat = x.permute(0, 2, 3, 1).reshape(-1, cin)
        return flat[rows][None], (lambda w: w.reshape(cin, -1).T[None]), (lambda g: g[0].T.reshape(weight.shape))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    x = torch.nn.functional.pad(x, (pads[1], pads[3], pads[0], pads[2]))
    kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
    unfolded = torch.nn.functional.unfold(x, kernel, dilation=attrs.get("dilations", [1, 1]), stride=attrs.get("strides", [1, 1]))
    batch, width, positions = unfolded.shape
    picked = unfolded.permute(0, 2, 1).reshape(batch * positions, width)[rows]
    cout = weight.shape[0]
    back = lambda g: g.reshape(weight.shape)  # noqa: E731
    if attrs.get("group", 1) == 1:
        return picked[None], (lambda w: w.reshape(1, cout, -1)), back
    taps = width // cout  # depthwise: one group per channel
    return picked.reshape(-1, cout, taps).permute(1, 0, 2), (lambda w: w.reshape(cout, 1, taps)), back


def _row_count(node: onnx.NodeProto, x: np.ndarray, weight: np.ndarray) -> int:
    """How many patch rows the conv's input has (output positions over the batch)."""
    if node.op_type == "ConvTranspose":
        return x.shape[0] * x.shape[2] * x.shape[3]
    attrs = _attributes(node)
    pads, kernel = list(attrs.get("pads", [0, 0, 0, 0])), list(attrs.get("kernel_shape", weight.shape[2:]))
    strides, dilations = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    size = [
        (x.shape[2 + i] + pads[i] + pads[i + 2] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(2)
    ]
    return x.shape[0] * size[0] * size[1]


def round_conv(
    node: onnx.NodeProto, weight: np.ndarray, bias: np.ndarray | None, x_rounded: np.ndarray, x_float: np.ndarray,
    levels: int, seed: int = 0,
) -> tuple[np.ndarray, tuple[float, float]]:  # fmt: skip
    """The dequantized weight with learned rounding (symmetric, per output channel, ``levels`` each side),
    and the relative output error on the sampled rows with nearest and with learned rounding."""
    import torch

    rng = np.random.default_rng(seed)
    total = _row_count(node, x_float, weight)
    rows = torch.from_numpy(np.sort(rng.choice(total, min(SAMPLED_ROWS, total), replace=False)))
    inputs, to_groups, from_groups = _patches(torch, node, x_rounded, weight, rows)
    reference_inputs, _, _ = _patches(torch, node, x_float, weight, rows)
    axis = 1 if node.op_type == "ConvTranspose" else 0
    moved = np.moveaxis(weight, axis, 0)
    amax = np.abs(moved).reshape(moved.shape[0], -1).max(1)
    scale_shape = [1] * weight.ndim
    scale_shape[axis] = -1
    scale = np.broadcast_to((np.maximum(amax, 1e-12) / levels).reshape(scale_shape), weight.shape).astype(np.float32)
    w, s = to_groups(torch.from_numpy(weight.astype(np.float32))), to_groups(torch.from_numpy(scale.copy()))
    groups, outputs = w.shape[0], w.shape[1]
    b = torch.zeros(groups, 1, outputs)
    if bias is not None:  # the bias is kept; it only makes the target the conv's real output
        b = torch.from_numpy(bias.astype(np.float32))
        if groups > 1:  # depthwise: one output per group
            b = b.reshape(groups, 1, 1)
        else:  # a transposed conv's bias is per channel, its outputs per channel and tap
            b = b.repeat_interleave(outputs // bias.size).reshape(1, 1, outputs)
    with torch.no_grad():
        target = torch.bmm(reference_inputs, w.transpose(1, 2)) + b
    energy = float((target**2).mean()) or 1.0
    floor = torch.floor(w / s)
    rest = w / s - floor
    v = torch.logit(((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)).requires_grad_(True)

    def soft() -> torch.Tensor:
        return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)

    def error(up: torch.Tensor, picked=slice(None)) -> torch.Tensor:
        quantized = s * (floor + up).clamp(-levels, levels)
        return ((torch.bmm(inputs[:, picked], quantized.transpose(1, 2)) + b - target[:, picked]) ** 2).mean() / energy

    optimizer = torch.optim.Adam([v], lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)
    count, warm = inputs.shape[1], int(WARMUP * ITERATIONS)
    for step in range(ITERATIONS):
        loss = error(soft(), torch.randint(0, count, (min(BATCH_ROWS, count),), generator=generator))
        if step >= warm:
            beta = BETA[0] + (BETA[1] - BETA[0]) * (step - warm) / max(ITERATIONS - warm, 1)
            loss = loss + REGULARISER * (1 - (2 * soft() - 1).abs().pow(beta)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        up = (soft() >= 0.5).float()
        nearest, learned = float(error((rest >= 0.5).float())), float(error(up))
        if learned > nearest:  # the fit did not pay on its own rows: nearest it is
            up = (rest >= 0.5).float()
        rounded = from_groups(s * (floor + up).clamp(-levels, levels)).numpy()
    return rounded.astype(np.float32), (nearest, min(learned, nearest))


def learn_rounding(
    prepared: str | Path,
    output: str | Path,
    feeds: Sequence[dict[str, np.ndarray]],
    placement: str = "onnxruntime",
    seconds: float = float("inf"),
    progress: bool = True,
    log: Callable[[str], None] = lambda line: None,
) -> Rounded:
    """Write ``prepared`` with the weights of the convs ``placement`` quantizes rounded by learning.

    Convs are fitted in graph order until ``seconds`` run out; the rest keep nearest rounding
    (their weights unchanged: the quantizer rounds them). Raises FcnEdgeError without torch.
    """
    torch = torch_or_none()
    if torch is None:
        raise FcnEdgeError("learned weight rounding needs torch: pip install 'fcn_edge[train]'")
    started = time.monotonic()
    levels = 2 ** (qdq.WEIGHT_BITS[placement] - 1) - (qdq.WEIGHT_BITS[placement] == 8)  # 127 for 8 bits, 64 for 7 (ORT)
    model = onnx.load(str(prepared))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quantized = set(qdq.quantizable_nodes(model))
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose") and n.name in quantized and n.input[1] in weights]
    result = Rounded()
    todo = []
    for node in convs:
        why = unsupported(node, weights[node.input[1]])
        if why:
            result.skipped[node.name] = why
        else:
            todo.append(node)
    float_inputs = Observer(model, [n.input[0] for n in todo], feeds)
    rounded: dict[str, np.ndarray] = {}
    for node in tqdm(todo, desc="learn weight rounding", leave=False, disable=not progress):
        if time.monotonic() - started > seconds:
            result.out_of_time = True
            result.skipped.update({n.name: "out of time" for n in todo[len(result.convs) :]})
            break
        x_float = float_inputs(node.input[0])
        x_rounded = Observer(_with_weights(model, rounded), [node.input[0]], feeds)(node.input[0]) if rounded else x_float
        bias = weights[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        rounded[node.input[1]], result.error[node.name] = round_conv(node, weights[node.input[1]], bias, x_rounded, x_float, levels)
        result.convs.append(node.name)
    with atomic_path(output) as tmp:
        onnx.save_model(_with_weights(model, rounded), tmp)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _with_weights(model: onnx.ModelProto, replaced: dict[str, np.ndarray]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for tensor in copy.graph.initializer:
        if tensor.name in replaced:
            tensor.CopyFrom(numpy_helper.from_array(replaced[tensor.name], tensor.name))
    return copy
