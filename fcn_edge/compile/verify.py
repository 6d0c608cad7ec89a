"""Every build reports what it cost: each artifact against the FP32 model on held-out images.

Images (:mod:`.verification_data` chooses them): a labelled dataset of the user's, or held-out synthetic
scenes (seeds from ``HELDOUT_SEED``, never trained or calibrated on, with exact ground
truth), and/or the calibration folder's hold-out split (the user's own frames, no labels).
Each artifact is run by the runner the stream will open for it (:func:`.cpu.runner`: frames
in, labels out, at the stream's thread count), so its figures are those of what will run:
label agreement with FP32 over all pixels, mIoU against ground truth and its change (where the
samples carry masks), and latency, timed together with FP32 (:mod:`.timing`).

Two figures come from ONNX Runtime sessions, as neither is an artifact run: the FP32 reference
(:func:`reference`), and the largest logit difference (:func:`logit_diff`), which needs the
scores a runner does not return, read from a "logits twin" (the same graph with ArgMax's input
also made an output): a figure of the file, whatever runtime runs it. A model the runners do not
take (a float tensor in or scores out, which the stream cannot run either) is verified through a
session with the runner's settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException
from tqdm import tqdm

from ..data.synthetic import HELDOUT_SEED, render_scene
from ..errors import FcnEdgeError
from ..boundary import BoundaryCounts
from ..metrics import confusion_matrix, scores_from_confusion
from ..backends.onnxruntime import session
from ..runner import Runner
from . import foreign
from .source import SourceModel

LOGIT_BYTES = 512 * 2**20  # FP32 logits kept for max|dlogit|: 21 classes at VOC size are 15 MB an image


@dataclass
class Sample:
    name: str
    frame: np.ndarray  # HxWx3 uint8 BGR
    mask: np.ndarray | None  # ground truth class ids, when known


@dataclass
class Figures:
    """One artifact's row; None where a figure does not apply (n/a)."""

    label: str
    agreement: float | None = None  # share of pixels with the FP32 label, 0..1
    miou: float | None = None
    miou_drop: float | None = None  # FP32 mIoU minus this one, in points (x100)
    max_logit_diff: float | None = None
    latency_ms: float | None = None  # median of the per-round medians (.timing)
    latency_ratio: float | None = None  # median of the per-round ratios to FP32
    boundary_f: float | None = None  # mean boundary F-score at 3 px (fcn_edge.boundary), where the samples carry masks
    latency_iqr_ms: tuple[float, float] | None = None  # quartiles of the per-round medians
    ratio_iqr: tuple[float, float] | None = None  # quartiles of the per-round ratios to FP32: what decides (.timing)


def verification_samples(scenes: int, size: tuple[int, int], holdout_frames: Sequence[tuple[str, np.ndarray]]) -> list[Sample]:
    samples = [
        Sample(f"synthetic:{HELDOUT_SEED + i}", *render_scene(np.random.default_rng(HELDOUT_SEED + i), size))
        for i in range(scenes)
    ]
    return samples + [Sample(name, frame, None) for name, frame in holdout_frames]


def logits_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the scores its labels come from also a graph output: the input of its final ArgMax, or of the
    threshold a foreign binary model ends in (:mod:`.foreign`); unchanged if it has float outputs."""
    float_outputs = [
        o for o in model.graph.output if o.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    ]
    scoring = [n for n in model.graph.node if n.op_type == "ArgMax" or n.name == foreign.PREFIX + "threshold"]
    if float_outputs or not scoring:
        return model
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    scores = scoring[-1].input[0]
    if _channel_axis(twin.graph, scoring[-1]) == 3:  # [N,H,W,K] scores (:func:`.foreign.channel_axis`): compared as [N,K,H,W]
        nchw = foreign.PREFIX + "scores_nchw"
        twin.graph.node.append(onnx.helper.make_node("Transpose", [scores], [nchw], name=nchw, perm=[0, 3, 1, 2]))
        scores = nchw
    twin.graph.output.append(onnx.helper.make_tensor_value_info(scores, onnx.TensorProto.FLOAT, None))
    return twin


def _channel_axis(graph: onnx.GraphProto, scoring: onnx.NodeProto) -> int:
    """The class axis an ArgMax reduces, or a binary model's threshold squeezes (its axes attribute or constant)."""
    if scoring.op_type == "ArgMax":
        return next((a.i for a in scoring.attribute if a.name == "axis"), 0)
    squeeze = next((n for n in graph.node if n.op_type == "Squeeze" and scoring.output[0] in n.input), None)
    axes = next((list(a.ints) for a in squeeze.attribute if a.name == "axes"), None) if squeeze is not None else None
    if axes is None and squeeze is not None and len(squeeze.input) > 1:
        axes = next((list(onnx.numpy_helper.to_array(t)) for t in graph.initializer if t.name == squeeze.input[1]), None)
    return int(axes[0]) if axes else 1


def predict(sess: ort.InferenceSession, source: SourceModel, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels HxW, logits KxHxW or None) for one frame, whatever outputs the graph has."""
    labels = logits = None
    outputs = list(zip(sess.get_outputs(), sess.run(None, source.feed([frame]))))
    for _, value in outputs:
        if value.ndim == 4 and np.issubdtype(value.dtype, np.floating):
            logits = value[0].astype(np.float32)
        elif value.ndim == 3 and labels is None:
            labels = value[0]
    if labels is None:
        if logits is None:
            shapes = ", ".join(f"{m.name} {v.dtype} {list(v.shape)}" for m, v in outputs)
            raise FcnEdgeError(
                f"{source.path} gives {shapes}: not a segmentation model, which gives [N,K,H,W] logits or [N,H,W] labels"
            )
        labels = logits.argmax(0)
    return labels.astype(np.int64), logits


@dataclass
class Reference:
    """The FP32 model's predictions, computed once per build and compared with every artifact."""

    labels: list[np.ndarray]
    logits: list[np.ndarray | None]
    miou: float | None
    boundary_f: float | None = None


def reference(source: SourceModel, samples: list[Sample], progress: bool = True) -> Reference:
    """The FP32 model's labels and logits, through an ONNX Runtime session on its logits twin: what every artifact is
    compared with, not an artifact the stream runs."""
    sess = session(logits_twin(onnx.load(str(source.path))))
    labels, logits = [], []
    kept_bytes = 0
    for sample in tqdm(samples, desc="verify: FP32", leave=False, disable=not progress):
        try:
            lab, log = predict(sess, source, sample.frame)
        except (Fail, InvalidArgument, RuntimeException) as error:  # the user's model cannot take this input
            raise FcnEdgeError(
                f"{source.path} fails on the {'x'.join(map(str, sample.frame.shape[:2]))} image {sample.name} "
                f"(ONNX Runtime: {str(error).splitlines()[0][-160:]}): verify at sizes it takes (--verify-size, --calib-size)"
            ) from None
        _check_per_pixel(source, sample, lab)
        labels.append(lab)
        kept_bytes += 0 if log is None else log.nbytes
        logits.append(log if kept_bytes <= LOGIT_BYTES else None)  # max|dlogit| over the first images only
    _check_class_count(source, labels, logits)
    return Reference(labels, logits, _miou(source, samples, labels), _boundary_f(source, samples, labels))


def _check_per_pixel(source: SourceModel, sample: Sample, labels: np.ndarray) -> None:
    """Labels (or scores) must come at the input's size: a per-pixel map, not a coarse grid or a class vector."""
    if labels.shape != sample.frame.shape[:2]:
        height, width = sample.frame.shape[:2]
        raise FcnEdgeError(
            f"{source.path} answers a {height}x{width} input with {'x'.join(map(str, labels.shape))} labels: a build needs "
            "per-pixel class scores [N,K,H,W] (or labels [N,H,W]) at the input's size; export the model with its final upsampling"
        )


def _check_class_count(source: SourceModel, labels: list[np.ndarray], logits: list[np.ndarray | None]) -> None:
    """The model's real outputs against the class names it was given (the graph may not declare its sizes)."""
    count = len(source.classes)
    binary = isinstance((source.foreign or {}).get("labels"), dict)  # one thresholded channel: two classes
    scored = {2 if binary and log.shape[0] == 1 else log.shape[0] for log in logits if log is not None}
    highest = max(int(lab.max()) for lab in labels)
    if scored - {count} or highest >= count:
        found = f"scores {max(scored)} classes" if scored - {count} else f"predicts class {highest}"
        raise FcnEdgeError(
            f"{source.path} {found}, but {count} class names were given (--num-classes, --classes or its metadata): "
            "give as many as the model has"
        )


def compare(model: Path, label: str, source: SourceModel, samples: list[Sample], ref: Reference, runner: Runner | None,
            progress: bool = True) -> Figures:  # fmt: skip
    """Accuracy figures of one artifact against the FP32 reference (latency is measured separately).

    ``runner`` is the inactive runner the stream opens for ``model``; None for a model the runners do not take, which
    an ONNX Runtime session runs, its max|dlogit| included (through a runner: :func:`logit_diff`, when wanted).
    """
    if runner is None:
        sess = session(logits_twin(onnx.load(str(model))))
        return score(label, source, samples, ref, (predict(sess, source, s.frame) for s in samples), progress)
    with runner:  # the labels buffer is the runner's, overwritten by the next frame: astype copies it
        predictions = ((runner.infer(sample.frame).astype(np.int64), None) for sample in samples)
        return score(label, source, samples, ref, predictions, progress)


def logit_diff(model: Path, source: SourceModel, samples: list[Sample], ref: Reference) -> float | None:
    """The largest |logit| difference of ``model`` from FP32, over the images whose FP32 logits are kept (None when none
    are, or the model gives labels only); ONNX Runtime runs its logits twin (module docstring)."""
    kept = [(sample, logits) for sample, logits in zip(samples, ref.logits) if logits is not None]
    if not kept:
        return None
    sess = session(logits_twin(onnx.load(str(model))))
    diff = None
    for sample, ref_logits in kept:
        logits = predict(sess, source, sample.frame)[1]
        if logits is not None:
            diff = max(diff or 0.0, float(np.abs(logits - ref_logits).max()))
    return diff


def score(label: str, source: SourceModel, samples: list[Sample], ref: Reference,
          predictions: Iterable[tuple[np.ndarray, np.ndarray | None]], progress: bool = True) -> Figures:  # fmt: skip
    """Figures of ``predictions`` ((labels, logits or None) per sample, in order) against the FP32 reference."""
    same = total = 0
    diff: float | None = None
    labels = []
    for sample, ref_labels, ref_logits, (lab, log) in tqdm(
        zip(samples, ref.labels, ref.logits, predictions), total=len(samples), desc=f"verify: {label}", leave=False,
        disable=not progress,
    ):  # fmt: skip
        labels.append(lab)
        same += int((lab == ref_labels).sum())
        total += lab.size
        if log is not None and ref_logits is not None:
            diff = max(diff or 0.0, float(np.abs(log - ref_logits).max()))
    miou = _miou(source, samples, labels)
    drop = None if miou is None or ref.miou is None else 100 * (ref.miou - miou)
    return Figures(label, same / total, miou, drop, diff, boundary_f=_boundary_f(source, samples, labels))


def _miou(source: SourceModel, samples: list[Sample], labels: list[np.ndarray]) -> float | None:
    masked = [(s.mask, lab) for s, lab in zip(samples, labels) if s.mask is not None]
    if not masked:
        return None  # no ground truth (verification_data.samples attaches masks only for the model's own classes)
    matrix = np.zeros((len(source.classes), len(source.classes)), dtype=np.int64)
    for mask, lab in masked:
        matrix += confusion_matrix(mask, lab, len(source.classes))
    miou = scores_from_confusion(matrix).miou
    return miou if np.isfinite(miou) else None  # every mask pixel ignored: not measurable (n/a), not nan past the budget


def _boundary_f(source: SourceModel, samples: list[Sample], labels: list[np.ndarray]) -> float | None:
    counts = BoundaryCounts(len(source.classes))
    for sample, lab in zip(samples, labels):
        if sample.mask is not None:
            counts.add(sample.mask, lab)
    return None if not counts.counts.any() else counts.scores().mean_f


def table(rows: list[Figures], header: str) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    def spread(v: tuple[float, float] | None) -> str:
        return "" if v is None else f"{v[0]:.2f}-{v[1]:.2f}"

    lines = [header, f"  {'model':<26}{'agreement':>10}{'mIoU':>8}{'drop':>7}{'bF':>7}{'max|dlogit|':>12}{'latency':>11}{'vs FP32':>8}"
                     f"{'IQR':>11}"]  # fmt: skip
    for r in rows:
        lines.append(
            f"  {r.label:<26}{pct(r.agreement):>10}{num(r.miou, '.4f'):>8}{num(r.miou_drop, '+.2f'):>7}{num(r.boundary_f, '.3f'):>7}"
            f"{num(r.max_logit_diff, '.3g'):>12}{num(r.latency_ms, '.1f') + (' ms' if r.latency_ms else ''):>11}"
            f"{num(r.latency_ratio, '.2f') + ('x' if r.latency_ratio else ''):>8}{spread(r.ratio_iqr):>11}"
        )
    return "\n".join(lines)


def as_dict(rows: list[Figures]) -> list[dict]:
    return [asdict(r) for r in rows]
