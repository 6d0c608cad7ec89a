"""Which tensors a deployed Q/DQ graph quantizes, and which point of the torch model each one is.

Quantization-aware training (:mod:`fcn_edge.train.qat`) must fake-quantize exactly the tensors
the build will quantize, and the build must read the learned ranges back onto them. Both ask
the deployed graph itself: the model is exported and prepared as a build does, quantized for
a placement (:func:`fcn_edge.quantize.qdq.quantize`), and every activation a QuantizeLinear
reads is matched by value, on one probe frame, to the output (or input) of a torch module.
Names cannot do this: the exporter, onnxslim and ONNX Runtime's optimiser rename tensors, fold
BatchNorm into Conv and fuse ops, but the values a tensor carries survive all of that.

Torch points are named ``<module path>:out`` (what the module returns) or ``<module path>:in``
(its first argument: the sum of a functional Add is only ever the input of the next module).
Of points holding the same values, the first module to finish wins: a Conv+BN+ReLU unit's
ReLU, not the unit around it, so every reader downstream sees the quantized tensor.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort

from ..quantize import qdq, statistics
from ..quantize.statistics import TensorRanges

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..spec import Preprocess

PROBE_SIZE = (72, 104)  # (H, W) of the matching frame: not a multiple of 32, so padding is exercised
MATCH_TOLERANCE = 1e-3  # of a tensor's largest magnitude: float reordering, BN folding


def quantized_tensors(prepared: Path, placement: str, feed: dict[str, np.ndarray], folder: Path) -> list[str]:
    """The activations the ``placement`` Q/DQ model of ``prepared`` quantizes, in graph order."""
    model = onnx.load(str(prepared))
    ranges = statistics.collect_ranges(model, [feed], "max", progress=False)
    path = folder / f"placement.{placement}.onnx"
    qdq.quantize(prepared, path, ranges, placement)
    quantized = qdq.quantized_activations(onnx.load(str(path)))
    return [name for name in statistics.float_tensors(model) if name in quantized]


def tensor_values(prepared: Path, names: list[str], feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``names`` of the float graph ``prepared`` computed on ``feed``, no optimisation to fuse them away."""
    model = onnx.load(str(prepared))
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in existing
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with tempfile.TemporaryDirectory(prefix="fcn_edge_match_") as tmp:
        path = Path(tmp) / "observed.onnx"
        onnx.save_model(model, path)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, feed)))


def torch_points(model: "nn.Module", inputs: "torch.Tensor") -> dict[str, np.ndarray]:
    """Every module's output (in the order modules finish), then every module's first input, on ``inputs``."""
    import torch

    outputs: dict[str, np.ndarray] = {}
    firsts: dict[str, np.ndarray] = {}
    handles = []
    for name, module in model.named_modules():

        def record_out(_module, _args, result, name=name):
            if isinstance(result, torch.Tensor):
                outputs.setdefault(f"{name}:out", result.detach().numpy().copy())

        def record_in(_module, args, name=name):
            if args and isinstance(args[0], torch.Tensor):
                firsts.setdefault(f"{name}:in", args[0].detach().numpy().copy())

        handles += [module.register_forward_hook(record_out), module.register_forward_pre_hook(record_in)]
    try:
        with torch.no_grad():
            model.eval()(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs | firsts


def match(onnx_values: dict[str, np.ndarray], points: dict[str, np.ndarray]) -> dict[str, str]:
    """ONNX tensor -> the first torch point with its shape and values; tensors with none are left out."""
    by_shape: dict[tuple, list[str]] = {}
    for point, value in points.items():
        by_shape.setdefault(value.shape, []).append(point)
    found = {}
    for tensor, value in onnx_values.items():
        scale = max(float(np.abs(value).max()), 1e-6)
        for point in by_shape.get(value.shape, []):
            if float(np.abs(points[point] - value).max()) <= MATCH_TOLERANCE * scale:
                found[tensor] = point
                break
    return found


def probe_frame() -> np.ndarray:
    from ..data.synthetic import HELDOUT_SEED, render_scene

    return render_scene(np.random.default_rng(HELDOUT_SEED), PROBE_SIZE)[0]


def placement_points(model: "nn.Module", preprocess: "Preprocess", placement: str) -> tuple[dict[str, str], list[str]]:
    """(ONNX tensor -> torch point, quantized tensors with no torch point) for ``model`` exported and prepared as a build does."""
    from ..export.onnx import export_model
    from ..metadata import ModelMetadata

    classes = model.config.num_classes
    with tempfile.TemporaryDirectory(prefix="fcn_edge_placement_") as tmp:
        folder = Path(tmp)
        meta = ModelMetadata(classes=[str(i) for i in range(classes)], palette=[(0, 0, 0)] * classes, preprocess=preprocess,
                             input_format="frame", outputs=["labels"], output_stride=model.output_stride, source_sha256="",
                             model_config=model.config.to_dict())  # fmt: skip
        export_model(model.eval(), meta, folder / "model.onnx", verify_sizes=[(1, *PROBE_SIZE)])
        qdq.prepare(folder / "model.onnx", folder / "prepared.onnx")
        return points_in(folder / "prepared.onnx", model, preprocess, placement, folder)


def points_in(
    prepared: Path, model: "nn.Module", preprocess: "Preprocess", placement: str, folder: Path
) -> tuple[dict[str, str], list[str]]:
    """Like :func:`placement_points` for a prepared frame-input graph (the build's own)."""
    from ..models.preprocess import images_to_tensor

    frame = probe_frame()
    input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
    feed = {input_name: frame[None]}
    tensors = quantized_tensors(prepared, placement, feed, folder)
    found = match(tensor_values(prepared, tensors, feed), torch_points(model, images_to_tensor(preprocess, frame)))
    return found, [t for t in tensors if t not in found]


def learned_ranges(
    prepared: Path, checkpoint_path: Path, calibrated: TensorRanges, folder: Path
) -> tuple[TensorRanges, dict] | None:
    """``calibrated`` with the ranges a QAT checkpoint learned put on the tensors they belong to; None for other checkpoints.

    Both placements' tensors are matched (a build writes both Q/DQ models); a quantized tensor QAT did not learn
    (none in torch holds it, or QAT trained the other placement) keeps its calibrated range, and the record says which.
    """
    from ..checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    qat = checkpoint.training.get("qat")
    if not qat:
        return None
    model = checkpoint.build()
    amax, low, high = dict(calibrated.amax), dict(calibrated.low), dict(calibrated.high)
    learned: set[str] = set()
    quantized: set[str] = set()
    for placement in qdq.PLACEMENTS:
        found, missing = points_in(prepared, model, checkpoint.preprocess, placement, folder)
        quantized |= set(found) | set(missing)
        for tensor, point in found.items():
            entry = qat["points"].get(point)
            if entry is not None:
                low[tensor], high[tensor] = float(entry["low"]), float(entry["high"])
                amax[tensor] = float(np.float32(max(-entry["low"], entry["high"], statistics.TINY)))
                learned.add(tensor)
    record = {
        "scales": "learned by QAT", "placement_trained": qat["placement"], "learned_tensors": len(learned),
        "calibrated_tensors": sorted(quantized - learned),
    }  # fmt: skip
    return TensorRanges("qat", amax, low, high), record
