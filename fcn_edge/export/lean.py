"""Graph passes that cut the float work done at full resolution, where a CPU spends it worst.

On the default model at 1024x512, 29% of ONNX Runtime's INT8 time (one thread, profiled) went
to float work at full resolution, not to the network: the preprocessing 1x1 convolution (3 to 3
channels, with its layout reorders) and the final x8 bilinear Resize of every class score
before ArgMax. Both passes here compute the same labels with less of it:

- **preprocessing folded into the first convolution.** ``y = A x + b`` (channel swap, scale,
  normalise) followed by ``Conv(W)`` is ``Conv(W A)`` of ``x - m`` with ``m = -A^-1 b``:
  zero padding commutes with a per-pixel linear map, so the borders stay exact. A per-channel
  subtraction (written as BatchNormalization, see below) replaces the 3x3 matrix product and
  its layout reorders.
- **labels by interpolation phase.** An xS bilinear ``half_pixel`` Resize gives each output
  pixel ``(S i + a, S j + b)`` a fixed 2x2 blend of input pixels around ``(i, j)``: one 3x3
  convolution per phase ``(a, b)``, so S*S output channels per class on the low-resolution
  grid. ArgMax over the classes runs there, and DepthToSpace puts the labels in place. The
  convolution zero-pads where Resize clamps at the border: there every class score is scaled
  by the same positive factor, so ArgMax is unchanged (the scores are not; they never leave
  the graph). On the default model it roughly halves the labels' cost in ONNX Runtime and cuts it
  3x in OpenVINO, whose ArgMax over a planar layout is slow (docs/cpu.md, "Figures behind the code").

The phase convolution must stay float: rounding its taps or its output to INT8 changes labels
(:func:`fcn_edge.quantize.label_ops.label_convs` finds it for the quantizer). Each pass reports
what it changed and, where it found the pattern but kept it, why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common  # noqa: F401  (registers ir.passes.common)

from .passes import _constant

PREPROCESS_OPS = ("Cast", "Transpose", "Identity")  # what may sit between the frame and the affine 1x1 conv
MAX_CONDITION = 1e6  # an affine map this ill-conditioned is not a preprocessing step


@dataclass
class LeanReport:
    folded: list[str] = field(default_factory=list)  # "affine -> conv" node names
    phased: list[tuple[str, int]] = field(default_factory=list)  # (Resize name, factor)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (node, reason)

    def keep(self, name: str, reason: str) -> None:
        if (name, reason) not in self.kept:
            self.kept.append((name, reason))

    def lines(self) -> list[str]:
        out = [f"full-resolution float work: {len(self.folded)} preprocessing folded, {len(self.phased)} label Resize by phase"]
        out += [f"  folded {name}" for name in self.folded]
        out += [f"  labels of {name} (x{factor}) by phase" for name, factor in self.phased]
        out += [f"  kept {name}: {reason}" for name, reason in self.kept]
        return out


def make_lean(model: onnx.ModelProto, report: LeanReport) -> onnx.ModelProto:
    """Both passes on a shape-inferred model, adding to ``report``; the result is checked and shape-inferred again."""
    ir_model = ir.from_proto(model)
    changes = len(report.folded) + len(report.phased)
    fold_preprocessing(ir_model.graph, report)
    labels_by_phase(ir_model.graph, report)
    if len(report.folded) + len(report.phased) == changes:
        return model
    ir.passes.common.RemoveUnusedNodesPass()(ir_model)
    lean = ir.to_proto(ir_model)
    onnx.checker.check_model(lean, full_check=True)
    return onnx.shape_inference.infer_shapes(lean, check_type=True, strict_mode=True, data_prop=True)


def fold_preprocessing(graph: ir.Graph, report: LeanReport) -> None:
    """Every affine 1x1 conv on the graph input that feeds a conv (directly or through a zero Pad) is folded into it."""
    for affine in [n for n in graph if n.op_type == "Conv" and _from_graph_input(n.inputs[0]) and _is_1x1(n)]:
        target, reason = _fold_target(affine)
        if target is None:
            report.keep(affine.name, reason)
            continue
        a = _constant(affine.inputs[1]).numpy()[:, :, 0, 0].astype(np.float64)
        bias = _constant(affine.inputs[2]) if len(affine.inputs) > 2 and affine.inputs[2] is not None else None
        mean = -np.linalg.solve(a, bias.numpy().astype(np.float64) if bias is not None else np.zeros(len(a)))
        folded = np.einsum("ojhw,jc->ochw", _constant(target.inputs[1]).numpy().astype(np.float64), a)
        tape = ir.tape.Tape()
        c = {"mean": mean, "ones": np.ones_like(mean), "zeros": np.zeros_like(mean)}
        c = {
            key: tape.initializer(ir.tensor(value.astype(np.float32), name=f"{affine.name}_centre_{key}"))
            for key, value in c.items()
        }
        weight = tape.initializer(ir.tensor(folded.astype(np.float32), name=f"{target.name}_folded_weight"))
        # x - mean as BatchNormalization (scale 1, bias 0, variance 1, epsilon 0): ONNX Runtime's layout
        # optimizer moves a Sub onto the NHWC frame, where broadcasting over 3 channels slowed the whole
        # INT8 model (docs/cpu.md, "Figures behind the code")
        centred = tape.op(
            "BatchNormalization",
            [affine.inputs[0], c["ones"], c["zeros"], c["mean"], c["ones"]],
            {"epsilon": 0.0},
            name=f"{affine.name}_centre",
        )
        for value in tape.initializers:
            graph.register_initializer(value)
        graph.insert_before(affine, tape.nodes)
        affine.outputs[0].replace_all_uses_with(centred)
        target.replace_input_with(1, weight)
        report.folded.append(f"{affine.name} -> {target.name}")


def _is_1x1(conv: ir.Node) -> bool:
    weight = _constant(conv.inputs[1])
    return weight is not None and weight.shape[2:] == (1, 1)


def _from_graph_input(value: ir.Value) -> bool:
    while value.producer() is not None and value.producer().op_type in PREPROCESS_OPS:
        value = value.producer().inputs[0]
    return value.is_graph_input()


def _fold_target(affine: ir.Node) -> tuple[ir.Node | None, str]:
    """The conv ``affine`` can be folded into, or (None, why not)."""
    w = _constant(affine.inputs[1]).numpy()
    attrs = {k: a.value for k, a in affine.attributes.items()}
    if w.shape[0] != w.shape[1]:
        return None, f"{w.shape[1]} channels in, {w.shape[0]} out: not an invertible per-pixel map"
    if attrs.get("group", 1) != 1 or any(v != 1 for v in attrs.get("strides", [1, 1])) or any(attrs.get("pads", [0] * 4)):
        return None, "strided, padded or grouped: not a per-pixel affine map"
    if len(affine.inputs) > 2 and affine.inputs[2] is not None and _constant(affine.inputs[2]) is None:
        return None, "its bias is computed in the graph"
    if np.linalg.cond(w[:, :, 0, 0]) > MAX_CONDITION:
        return None, "its channel matrix is not invertible"
    value = affine.outputs[0]
    if value.is_graph_output():
        return None, "its output is a graph output"
    readers = [u.node for u in value.uses() if u.node.op_type != "Shape"]  # Shape reads the size only
    if len(readers) == 1 and readers[0].op_type == "Pad" and _is_zero_pad(readers[0]):
        value = readers[0].outputs[0]
        readers = [u.node for u in value.uses()] if not value.is_graph_output() else []
    if len(readers) != 1 or readers[0].op_type != "Conv" or readers[0].inputs[0] is not value:
        return None, "its output feeds something other than one (zero-padded) convolution"
    target = readers[0]
    target_weight = _constant(target.inputs[1])
    if target_weight is None or target_weight.shape[1] != w.shape[0]:
        return None, "the next convolution's weights are computed or grouped"
    if len(list(target.inputs[1].uses())) != 1:
        return None, "the next convolution shares its weights"
    return target, ""


def _is_zero_pad(pad: ir.Node) -> bool:
    mode = pad.attributes.get("mode")
    value = pad.inputs[2] if len(pad.inputs) > 2 else None
    constant = _constant(value) if value is not None else None
    return (mode is None or mode.value == "constant") and (
        value is None or (constant is not None and not np.any(constant.numpy()))
    )


def labels_by_phase(graph: ir.Graph, report: LeanReport) -> None:
    """Every integer-factor bilinear Resize read only by an ArgMax over channels becomes phase conv + ArgMax."""
    for argmax in [n for n in graph if n.op_type == "ArgMax"]:
        resize = argmax.inputs[0].producer()
        if resize is None or resize.op_type != "Resize":
            continue
        factor, classes, reason = _phase_geometry(resize, argmax)
        if reason:
            report.keep(resize.name, reason)
            continue
        _replace_by_phase(graph, resize, argmax, factor, classes)
        report.phased.append((resize.name, factor))
        report.kept = [k for k in report.kept if k[0] != resize.name]  # kept earlier, for a logits output


def _phase_geometry(resize: ir.Node, argmax: ir.Node) -> tuple[int, int, str]:
    """(factor, classes, "") when the pair can be rewritten, else (0, 0, why not)."""
    attrs = {k: a.value for k, a in resize.attributes.items()}
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    if attrs.get("mode") != "linear" or transform not in ("half_pixel", "pytorch_half_pixel") or attrs.get("antialias", 0):
        return 0, 0, f"mode {attrs.get('mode')}/{transform}: only linear half_pixel resizes are a fixed blend per phase"
    scales = _constant(resize.inputs[2]) if len(resize.inputs) > 2 and resize.inputs[2] is not None else None
    s = scales.numpy() if scales is not None else None
    if s is None or s.shape != (4,) or s[0] != 1 or s[1] != 1 or s[2] != s[3] or s[2] != int(s[2]) or s[2] < 2:
        return 0, 0, "not a constant, equal, integer upscale of height and width"
    shape = resize.inputs[0].shape
    if shape is None or len(shape) != 4 or not isinstance(shape[1], int):
        return 0, 0, "the number of classes (channel dimension) is not known statically"
    attr = {k: argmax.attributes[k].value for k in ("axis", "keepdims", "select_last_index") if k in argmax.attributes}
    if attr.get("axis", 0) != 1 or attr.get("select_last_index", 0) or len(list(resize.outputs[0].uses())) != 1:
        return 0, 0, "the ArgMax is not over the channels alone, or the resized scores have another reader"
    if argmax.outputs[0].is_graph_output():
        return 0, 0, "the ArgMax output is a graph output (its name and int64 type are the interface)"
    return int(s[2]), shape[1], ""


def phase_taps(factor: int) -> np.ndarray:
    """(factor, 3) weights of input pixels (i-1, i, i+1) for output phase a of an x``factor`` half_pixel resize."""
    taps = np.zeros((factor, 3), np.float64)
    for a in range(factor):
        t = (a + 0.5) / factor - 0.5  # where output pixel S*i+a samples, relative to input pixel i
        taps[a, 0 if t < 0 else 2], taps[a, 1] = abs(t), 1 - abs(t)
    return taps


def _replace_by_phase(graph: ir.Graph, resize: ir.Node, argmax: ir.Node, factor: int, classes: int) -> None:
    """Conv (group=classes, S*S phases each) -> ArgMax -> Cast float -> DepthToSpace, in place of Resize -> ArgMax."""
    name = resize.name
    taps = phase_taps(factor)
    phases = np.einsum("ai,bj->abij", taps, taps).reshape(factor * factor, 1, 3, 3)
    tape = ir.tape.Tape()
    c = {
        "weight": np.tile(phases, (classes, 1, 1, 1)).astype(np.float32),  # output channel k*S*S + a*S + b
        "by_class": np.array([0, classes, -1, 0], np.int64),
        "by_phase": np.array([0, factor * factor, -1, 0], np.int64),
        "channel": np.array([1], np.int64),
    }
    c = {key: tape.initializer(ir.tensor(value, name=f"{name}_phase_{key}")) for key, value in c.items()}
    scores = tape.op(
        "Conv",
        [resize.inputs[0], c["weight"]],
        {"group": classes, "kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
        name=f"{name}_phase_conv",
    )
    grouped = tape.op("Reshape", [scores, c["by_class"]], name=f"{name}_phase_by_class")  # N, K, S*S*h, w
    index = tape.op("ArgMax", [grouped], {"axis": 1, "keepdims": 1}, name=f"{name}_phase_argmax")
    by_phase = tape.op("Reshape", [index, c["by_phase"]], name=f"{name}_phase_by_phase")  # N, S*S, h, w
    # float through DepthToSpace: the type TensorRT takes both from ArgMax and to the uint8 output (principle 8)
    as_float = tape.op("Cast", [by_phase], {"to": ir.DataType.FLOAT}, name=f"{name}_phase_float")
    labels = tape.op("DepthToSpace", [as_float], {"blocksize": factor, "mode": "DCR"}, name=f"{name}_phase_place")
    if argmax.attributes.get("keepdims") is not None and not argmax.attributes["keepdims"].value:
        labels = tape.op("Squeeze", [labels, c["channel"]], name=f"{name}_phase_squeeze")
    old = argmax.outputs[0]
    readers = [u.node for u in old.uses()]
    float_casts = [n for n in readers if n.op_type == "Cast" and n.attributes["to"].value == ir.DataType.FLOAT
                   and not n.outputs[0].is_graph_output()]  # fmt: skip
    for cast in float_casts:  # the labels already are float: the int64 -> float casts go
        cast.outputs[0].replace_all_uses_with(labels)
    if len(float_casts) < len(readers):
        as_int64 = tape.op("Cast", [labels], {"to": ir.DataType.INT64}, name=f"{name}_phase_int64")
        old.replace_all_uses_with(as_int64)
    for value in tape.initializers:
        graph.register_initializer(value)
    graph.insert_after(argmax, tape.nodes)
