"""Quantization-aware fine-tuning: train through the INT8 rounding the deployed graph will do.

Post-training INT8 of a depthwise/hard-swish model loses points because one scale per tensor
cannot hold both a tensor's outliers and its bulk. Fine-tuning a few epochs with the
rounding in the forward pass (straight-through gradients, Jacob et al. 2018) lets the weights
adapt to it. It only helps if the rounding is the one the runtime does, so the fake
quantization here is placed on exactly the tensors the build's Q/DQ graph quantizes
(:mod:`fcn_edge.train.qat_ranges` matches them on the exported graph) with the same arithmetic:

- activations: ONNX Runtime placement UINT8 over ``[max(low, -amax), amax]`` (the range
  :func:`fcn_edge.quantize.qdq.quantize` gives ORT's quantizer), TensorRT placement symmetric
  INT8 ``amax / 127``; ``low``/``high`` are the min and max the float model's tensor holds on
  the first 96 training crops (:func:`calibrate`, before the first step), then fixed. The
  running min and max they replace only grew, so more steps gave a coarser grid and worse
  INT8; clipping them (an EMA of batch extremes, or the build's percentile) cost agreement
  too (docs/qat.md);
- conv weights: symmetric, one scale per output channel from their largest magnitude, 7-bit
  on the ONNX Runtime placement (no u8 x s8 saturation without VNNI) and 8-bit on TensorRT's;
  per-channel scales commute with the BatchNorm the export folds in, so the unfolded conv is
  rounded exactly as the folded one will be. Convs the build keeps in float (narrower than
  16 channels on ONNX Runtime) are not rounded.

BatchNorm runs with its stored statistics throughout (frozen, as the deployed graph folds them):
with batch statistics the ranges seen in training are not the deployed ones, and the statistics
drift (2% of labels changed in float after two short epochs).

The loss (``--qat-loss``): ``teacher`` distils from a frozen copy of the model as it was before the fake
quantization was attached, the FP32 model the INT8 one is judged against (label agreement). It is the KL
divergence of the fake-quantized model's per-pixel softmax from the teacher's (temperature 1), not cross-entropy
on the teacher's argmax: the full distribution keeps the teacher's margins, so near-ties are learned where they
are and confident pixels are not pushed further, while argmax labels would train the model on, as ground truth
does. ``labels`` fine-tunes on the ground-truth labels: on an undertrained model that keeps training it (FP32 mIoU
0.58 -> 0.67 and 95% agreement with the model it started from, docs/qat.md).

Fake quantization uses torch's own ops and lives in hooks and instance attributes, never in the
state dict: a QAT checkpoint has the same keys as any other, plus the learned ranges under
``training["qat"]`` (plain floats, so it loads with ``weights_only=True``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from torch.utils.hooks import RemovableHandle
from tqdm import tqdm

from ..checkpoint import Checkpoint, save_checkpoint
from ..models.preprocess import frames_to_tensor, images_to_tensor
from ..quantize import qdq
from .distributed import DistContext
from .loop import (RESUME_STATE, TrainConfig, build_loader, evaluate, make_criterion, make_optimizer, make_scheduler,
                   seed_epoch, train_one_epoch)  # fmt: skip
from .losses import QAT_LOSSES, DistillationLoss

TINY = 1e-8  # as fcn_edge.quantize.statistics: an all-zero tensor still gets a positive scale
FORMAT = "fcn_edge.qat/1"


@torch.no_grad()
def agreement(model: nn.Module, teacher: nn.Module, dataset: Dataset, preprocess, device: torch.device) -> float:
    """Fraction of pixels where ``model`` and ``teacher`` give the same label: what an INT8 build is verified by."""
    model.eval()
    same = total = 0
    for i in tqdm(range(len(dataset)), desc="agreement", leave=False):
        inputs = images_to_tensor(preprocess, dataset[i][0]).to(device)
        labels = model(inputs).argmax(1)
        same += int((labels == teacher(inputs).argmax(1)).sum())
        total += labels.numel()
    return same / total


def activation_qparams(low: float, high: float, placement: str) -> tuple[float, int, int, int]:
    """(scale, zero point, qmin, qmax) as ONNX Runtime's quantizer derives them (``compute_scale_zp``, float64
    then a float32 scale) from the range :func:`fcn_edge.quantize.qdq.quantize` passes it."""
    amax = np.float32(max(-low, high, TINY))
    if placement == "tensorrt":
        return float(np.float32(2 * np.float64(amax) / 254)), 0, -127, 127
    rmin = min(np.float32(max(low, -amax)), np.float32(0))
    scale = (np.float64(amax) - np.float64(rmin)) / 255
    return float(np.float32(scale)), int(np.round(-rmin / scale)), 0, 255


# training crops the ranges are calibrated on before the first step: on mobilenet_v3_small the fake-INT8 model kept
# 98.6% of the FP32 labels with ranges from 32 crops, 99.3% from 96 (fewer crops miss values the scenes hold)
CALIBRATION_CROPS = 96


def _hook_point(model: nn.Module, point: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> RemovableHandle:
    """Pass the tensor at ``point`` ("module:out" / "module:in") through ``fn`` on every forward."""
    name, _, where = point.rpartition(":")
    module = model.get_submodule(name)
    if where == "out":
        return module.register_forward_hook(lambda m, args, out: fn(out))
    return module.register_forward_pre_hook(lambda m, args: (fn(args[0]), *args[1:]))


@torch.no_grad()
def calibrate(model: nn.Module, points: list[str], batches: list[torch.Tensor]) -> dict[str, tuple[float, float]]:
    """(low, high) per point: the min and max the float model's tensor holds on ``batches`` (the build's ``max``
    calibration). Not its default ``percentile``: clipping the largest 0.01% cost agreement (docs/qat.md, session 6)."""
    model.eval()
    low = dict.fromkeys(points, np.inf)
    high = dict.fromkeys(points, -np.inf)

    def observe(point: str, x: torch.Tensor) -> torch.Tensor:
        low[point], high[point] = min(low[point], float(x.min())), max(high[point], float(x.max()))
        return x

    handles = [_hook_point(model, point, lambda x, p=point: observe(p, x)) for point in points]
    try:
        for inputs in batches:
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {point: (low[point], high[point]) for point in points}


@dataclass
class ActivationQuant:
    """Fake quantization of one tensor over a fixed range, calibrated before the first step (:func:`calibrate`)."""

    placement: str
    low: float
    high: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero_point, qmin, qmax = activation_qparams(self.low, self.high, self.placement)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)


def weight_fake_quant(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel rounding as ORT's quantizer writes it: scale = 2 * absmax / (qmax - qmin)."""
    qmax = 64 if bits == 7 else 127
    absmax = weight.detach().abs().amax(dim=tuple(range(1, weight.ndim))).clamp_min(TINY)
    scale = (2 * absmax / (2 * qmax)).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -qmax, qmax)


def quantized_conv(conv: nn.Conv2d, placement: str) -> bool:
    """Whether the build's graph rounds this conv's weights (ONNX Runtime keeps narrow convs in float)."""
    out_channels, in_per_group = conv.weight.shape[:2]
    narrow = out_channels < qdq.MIN_INT8_CHANNELS and in_per_group < qdq.MIN_INT8_CHANNELS
    return placement == "tensorrt" or not narrow


@dataclass
class QatModel:
    """Fake quantization attached to a model; ``detach()`` restores it."""

    model: nn.Module
    placement: str
    points: dict[str, ActivationQuant] = field(default_factory=dict)
    convs: list[str] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        """The learned ranges and the scales they give, for the checkpoint (plain floats)."""
        entries = {}
        for point, quant in self.points.items():
            scale, zero_point, _, _ = activation_qparams(quant.low, quant.high, self.placement)
            entries[point] = {"low": quant.low, "high": quant.high, "scale": scale, "zero_point": zero_point}
        return {"format": FORMAT, "placement": self.placement, "weight_bits": qdq.WEIGHT_BITS[self.placement],
                "points": entries, "weight_quantized_convs": list(self.convs)}  # fmt: skip

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        for name in self.convs:
            del self.model.get_submodule(name).forward  # the class's forward again
        self.handles.clear()


def attach(model: nn.Module, ranges: dict[str, tuple[float, float]], placement: str) -> QatModel:
    """Fake-quantize the points of ``ranges`` ("module:out" / "module:in", :mod:`fcn_edge.train.qat_ranges`) over
    their (low, high), e.g. from :func:`calibrate`, and the conv weights."""
    if placement not in qdq.PLACEMENTS:
        raise ValueError(f"placement {placement!r} not in {qdq.PLACEMENTS}")
    qat = QatModel(model, placement)
    for point, (low, high) in ranges.items():
        quant = qat.points[point] = ActivationQuant(placement, low, high)
        qat.handles.append(_hook_point(model, point, quant))
    bits = qdq.WEIGHT_BITS[placement]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def freeze_norms(_model: nn.Module, _args: tuple) -> None:
        for norm in norms:
            norm.eval()

    qat.handles.append(model.register_forward_pre_hook(freeze_norms))
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and quantized_conv(module, placement):
            module.forward = lambda x, m=module: m._conv_forward(x, weight_fake_quant(m.weight, bits), m.bias)
            qat.convs.append(name)
    return qat


def fine_tune(
    checkpoint: Checkpoint,
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset,
    out_dir: Path,
    placement: str = "onnxruntime",
    device: torch.device = torch.device("cpu"),
    log: Callable[[str], None] = print,
    loss: str = QAT_LOSSES[0],
) -> dict[str, Any]:
    """Fine-tune ``checkpoint`` with fake quantization for ``placement`` on ``loss`` (see the module docstring); qat.pt
    is the last epoch (the validation scenes are not used to choose it: on synthetic data they are the scenes a build
    verifies on)."""
    from .qat_ranges import placement_points

    if loss not in QAT_LOSSES:
        raise ValueError(f"QAT loss {loss!r} not in {QAT_LOSSES}")
    model = checkpoint.build()
    found, unmatched = placement_points(model, checkpoint.preprocess, placement)
    if unmatched:  # e.g. the mean-centred frame the export folds the normalisation around: the build calibrates it
        log(
            f"QAT: {len(unmatched)} quantized tensor(s) of the deployed graph have no torch counterpart and stay calibrated: {', '.join(unmatched)}"
        )
    model.to(device)
    num_classes = checkpoint.config.num_classes
    float_miou = evaluate(model, val_set, checkpoint.preprocess, num_classes, device).miou
    teacher = copy.deepcopy(model).eval().requires_grad_(False)  # before attach: the FP32 model, never rounded
    torch.manual_seed(config.seed)
    loader = build_loader(train_set, config, DistContext())
    seed_epoch(loader, config.seed, 0, 0)
    calibration = islice(loader, math.ceil(CALIBRATION_CROPS / config.batch_size))
    batches = [frames_to_tensor(checkpoint.preprocess, frames).to(device) for frames, _ in calibration]
    qat = attach(model, calibrate(model, list(dict.fromkeys(found.values())), batches), placement)
    log(f"QAT ({placement} placement): {len(qat.points)} activations and {len(qat.convs)} conv weights fake-quantized, "
        f"activation ranges calibrated on {sum(len(b) for b in batches)} training crops")  # fmt: skip
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(loader))
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # fake quantization runs in float32
    distil = loss == "teacher"
    criterion = DistillationLoss() if distil else make_criterion(config, train_set, checkpoint.classes, device, True, log)
    started, history = time.monotonic(), []
    before = evaluate(model, val_set, checkpoint.preprocess, num_classes, device).miou
    log(f"QAT ({loss} loss): val mIoU {float_miou:.4f} in float, {before:.4f} fake-quantized before fine-tuning")
    for epoch in range(config.epochs):
        seed_epoch(loader, config.seed, epoch, 0)
        mean_loss = train_one_epoch(model, criterion, optimizer, scheduler, scaler, loader, checkpoint.preprocess, device,
                                    f"qat {epoch + 1}/{config.epochs}", True, teacher if distil else None)  # fmt: skip
        miou = evaluate(model, val_set, checkpoint.preprocess, num_classes, device).miou
        agree = agreement(model, teacher, val_set, checkpoint.preprocess, device)
        elapsed = time.monotonic() - started
        history.append({"epoch": epoch, "loss": mean_loss, "miou": miou, "agreement": agree, "minutes": elapsed / 60})
        record = {**{k: v for k, v in checkpoint.training.items() if k not in RESUME_STATE},
                  "qat": {**qat.state(), "loss": loss, "history": history, "fine_tuned_from": str(checkpoint.path)}}  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(out_dir / "qat.pt", model, checkpoint.config, checkpoint.classes, checkpoint.palette,
                        checkpoint.preprocess, record)  # fmt: skip
        log(
            f"qat {epoch + 1:3d}/{config.epochs}  loss {mean_loss:.4f}  val (fake INT8) mIoU {miou:.4f}  "
            f"agreement with FP32 {agree:.2%}  {elapsed / 60:.1f} min"
        )
        if config.max_minutes is not None and elapsed / 60 >= config.max_minutes:
            log(f"stopping after epoch {epoch + 1}: time budget of {config.max_minutes} min reached")
            break
    qat.detach()
    return {"model": model, "miou": history[-1]["miou"], "agreement": history[-1]["agreement"],
            "minutes": (time.monotonic() - started) / 60, "history": history}  # fmt: skip
