"""Pixel-wise losses with an ignore label, and median-frequency class balancing."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOSSES = ("ce", "focal")
QAT_LOSSES = ("teacher", "labels")  # --qat-loss (fcn_edge/train/qat.py); the first is the default (docs/qat.md)


def median_frequency_weights(masks: Iterable[np.ndarray], num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Eigen & Fergus (2015): w_c = median(f) / f_c, with f_c = pixels of c / pixels of images containing c.

    Classes that never occur get weight 0 (they contribute no loss anyway).
    """
    class_pixels = np.zeros(num_classes, dtype=np.float64)
    image_pixels = np.zeros(num_classes, dtype=np.float64)
    for mask in masks:
        valid = mask[mask != ignore_index]
        counts = np.bincount(valid.ravel(), minlength=num_classes)[:num_classes].astype(np.float64)
        class_pixels += counts
        image_pixels[counts > 0] += valid.size
    present = class_pixels > 0
    freq = np.zeros(num_classes)
    freq[present] = class_pixels[present] / image_pixels[present]
    weights = np.zeros(num_classes)
    weights[present] = np.median(freq[present]) / freq[present]
    return torch.tensor(weights, dtype=torch.float32)


class FocalLoss(nn.Module):
    """Lin et al. (2017): cross-entropy scaled by (1 - p_t)^gamma, averaged over non-ignored pixels."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index, reduction="none")
        log_p = -F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        focal = (1 - log_p.exp()).clamp(min=0) ** self.gamma * ce
        valid = target != self.ignore_index
        return focal[valid].sum() / valid.sum().clamp(min=1)


class DistillationLoss(nn.Module):
    """Mean per-pixel KL(teacher || student) of the class softmax at temperature 1 (why: fcn_edge/train/qat.py)."""

    def forward(self, scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
        student = F.log_softmax(scores.float(), dim=1)
        teacher = F.log_softmax(teacher_scores.float(), dim=1)
        return F.kl_div(student, teacher, reduction="none", log_target=True).sum(dim=1).mean()


def build_loss(name: str, weight: torch.Tensor | None = None, ignore_index: int = 255) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
    if name == "focal":
        return FocalLoss(weight=weight, ignore_index=ignore_index)
    raise ValueError(f"loss {name!r} not in {LOSSES}")
