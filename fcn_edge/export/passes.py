"""Graph rewrites on the exported ONNX model: fixed bilinear ConvTranspose -> exact Resize.

FCN's classic decoder is a transposed convolution (kernel 2f, stride f, padding f/2)
initialised to a per-channel bilinear kernel. While its weights are still that fixed
kernel it is plain bilinear upsampling, and a Resize runs faster, quantizes better and
cannot make checkerboard artifacts. Per output pixel ``o`` such a deconvolution samples the
input at ``(o + 0.5) / f - 0.5`` with linear weights, exactly as Resize's ``half_pixel``
mode does, except at the borders: the deconvolution sees zeros beyond the edge where
Resize clamps. So the replacement is Pad (one zero pixel all round) -> Resize by f
(linear, half_pixel) -> Slice (f pixels off each side), which is the same function.

ConvTranspose nodes with any other weights or geometry are left alone, each with the
reason, and the pass reports what it changed and what it kept (as ONNX Runtime's
quantization tools do).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common  # noqa: F401  (registers ir.passes.common)

from ..models.upsample import bilinear_kernel

TRAINED_REASON = (
    "trained weights, not a fixed bilinear kernel: convert the checkpoint with the model-level pass "
    "(fcn_edge.models.resize_conv) first"
)
KERNEL_ATOL = 1e-7  # float rounding of the fixed taps only; a trained kernel is far further away


@dataclass
class PassReport:
    """What the pass did: replaced node names (with their factor) and kept nodes with the reason."""

    replaced: list[tuple[str, int]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"bilinear ConvTranspose -> Pad/Resize/Slice: {len(self.replaced)} replaced, {len(self.kept)} kept"]
        out += [f"  replaced {name} (x{factor})" for name, factor in self.replaced]
        out += [f"  kept {name}: {reason}" for name, reason in self.kept]
        return out


def replace_bilinear_deconvs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, PassReport]:
    """Rewrite every fixed-bilinear ConvTranspose in the main graph; return the new model and a report."""
    ir_model = ir.from_proto(model)
    graph = ir_model.graph
    report = PassReport()
    for index, node in enumerate([n for n in graph if n.op_type == "ConvTranspose" and n.domain in ("", "ai.onnx")]):
        name = node.name or f"ConvTranspose_{index}"
        factor, reason = bilinear_factor(node)
        if reason:
            report.kept.append((name, reason))
            continue
        _replace(graph, node, factor, name)
        report.replaced.append((name, factor))
    if report.replaced:
        ir.passes.common.RemoveUnusedNodesPass()(ir_model)  # the replaced kernels' initializers
    return ir.to_proto(ir_model), report


def bilinear_factor(node: ir.Node) -> tuple[int, str]:
    """``(f, "")`` when ``node`` upsamples by f with the fixed bilinear kernel, else ``(0, reason)``."""
    weight = _constant(node.inputs[1])
    if weight is None:
        return 0, "weights are computed in the graph, not a constant: cannot tell whether they are bilinear"
    w = weight.numpy()
    if w.ndim != 4 or w.shape[0] != w.shape[1] or w.shape[2] != w.shape[3] or w.shape[2] % 4:
        return 0, f"weight shape {w.shape} is not square C x C x 2f x 2f with even f"
    factor = w.shape[2] // 2
    attrs = {k: a.value for k, a in node.attributes.items()}
    expected = {
        "strides": [factor] * 2,
        "pads": [factor // 2] * 4,
        "group": 1,
        "dilations": [1, 1],
        "output_padding": [0, 0],
        "auto_pad": "NOTSET",
    }
    for key, want in expected.items():
        got = attrs.get(key, want)
        if (list(got) if isinstance(got, (list, tuple)) else got) != want:
            return 0, f"{key}={got}, not the bilinear upsampler geometry (kernel 2f, stride f, pads f/2, group 1)"
    if "output_shape" in attrs:
        return 0, "output_shape is set: the output size is not simply f times the input"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and (_constant(bias) is None or np.any(_constant(bias).numpy())):
        return 0, "non-zero bias: a bilinear upsampler has none"
    if not _is_bilinear(w):
        return 0, TRAINED_REASON
    return factor, ""


def _constant(value: ir.Value) -> ir.TensorProtocol | None:
    """The tensor behind an initializer or Constant, looking through the Identity nodes exporters add for shared weights."""
    while value.producer() is not None and value.producer().op_type == "Identity":
        value = value.producer().inputs[0]
    return ir.convenience.get_const_tensor(value)


def _is_bilinear(w: np.ndarray) -> bool:
    """Diagonal channels hold the bilinear taps, every off-diagonal kernel is zero."""
    taps = bilinear_kernel(1, w.shape[2])[0, 0].numpy()
    channels = np.arange(w.shape[0])
    diagonal = w[channels, channels]
    off_diagonal = w.copy()
    off_diagonal[channels, channels] = 0
    return bool(np.allclose(diagonal, taps, rtol=0, atol=KERNEL_ATOL) and not np.any(off_diagonal))


def _replace(graph: ir.Graph, node: ir.Node, factor: int, name: str) -> None:
    tape = ir.tape.Tape()
    constants = {
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "scales": np.array([1, 1, factor, factor], np.float32),
        "starts": np.array([factor, factor], np.int64),
        "ends": np.array([-factor, -factor], np.int64),
        "axes": np.array([2, 3], np.int64),
    }
    c = {key: tape.initializer(ir.tensor(value, name=f"{name}_bilinear_{key}")) for key, value in constants.items()}
    padded = tape.op("Pad", [node.inputs[0], c["pads"]], {"mode": "constant"}, name=f"{name}_bilinear_pad")
    resized = tape.op(
        "Resize",
        [padded, None, c["scales"]],
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
        name=f"{name}_bilinear_resize",
    )
    cropped = tape.op("Slice", [resized, c["starts"], c["ends"], c["axes"]], name=f"{name}_bilinear_slice")
    for value in tape.initializers:
        graph.register_initializer(value)
    ir.convenience.replace_nodes_and_values(graph, node, [node], tape.nodes, [node.outputs[0]], [cropped])
