"""Edge refinement inside the deployed graph: a fast guided filter of the class scores, guided by the frame.

A stride-8 FCN's scores are smooth at 1/8 resolution and its upsampled edges cut across
the frame's real ones. The guided filter (He, Sun, Tang 2013) fits, in every window, each
class probability as a linear function of the frame's brightness, ``q = a I + b``: where
the frame has an edge the probability may jump with it; where the frame is flat it is
smoothed. The fast variant (He, Sun 2015) fits ``a, b`` on a grid ``subsample`` times
coarser and only upsamples them, so full resolution sees one pooling, two bilinear Resizes
and a multiply-add per class: O(pixels), no per-frame iteration. Box filters are
AveragePool with padding excluded and the rest is Resize, Softmax and element-wise
arithmetic, ops every backend and TensorRT's ONNX parser take.

The output replaces the logits: refined class probabilities (ArgMax picks the labels).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


MAX_RADIUS = 16  # on the subsampled grid: 2 x 16 x 4 = 128 px boxes at subsample 4; radius 500 ran for minutes a frame
MAX_SUBSAMPLE = 32  # the FCN's stride


@dataclass(frozen=True)
class GuidedParams:
    # defaults: the best boundary IoU on 20 synthetic validation scenes (fcn-edge evaluate --refine search)
    radius: int = 1  # box radius on the subsampled grid
    eps: float = 0.03  # regularisation, in units of the normalised guide's variance: larger = smoother
    subsample: int = 2  # the grid a, b are fitted on; divides the FCN's stride of 32

    def __post_init__(self) -> None:
        if not (1 <= self.radius <= MAX_RADIUS and 0 < self.eps < math.inf and 1 <= self.subsample <= MAX_SUBSAMPLE):
            raise ValueError(
                f"guided filter {self}: radius 1..{MAX_RADIUS}, eps > 0 (finite) and subsample 1..{MAX_SUBSAMPLE} required"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class GuidedRefine(nn.Module):
    """``model`` (normalised NCHW -> logits) followed by the fast guided filter of its class probabilities."""

    def __init__(self, model: nn.Module, params: GuidedParams) -> None:
        super().__init__()
        self.model, self.params = model, params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return self.forward_padded(x)[:, :, :height, :width]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Refined probabilities of ``x`` padded bottom/right (to the model's stride and ``subsample``)."""
        r, eps, s = self.params.radius, self.params.eps, self.params.subsample
        height, width = x.shape[-2:]
        logits = self.model.forward_padded(x) if hasattr(self.model, "forward_padded") else self.model(x)
        pad_h, pad_w = (s - logits.shape[-2] % s) % s, (s - logits.shape[-1] % s) % s
        logits = F.pad(logits, (0, pad_w, 0, pad_h))
        guide = F.pad(x.mean(1, keepdim=True), (0, logits.shape[-1] - width, 0, logits.shape[-2] - height))
        p = torch.softmax(F.avg_pool2d(logits, s) if s > 1 else logits, 1)
        g = F.avg_pool2d(guide, s) if s > 1 else guide

        def box(t: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(t, 2 * r + 1, 1, r, count_include_pad=False)

        mean_g, mean_p = box(g), box(p)
        a = (box(g * p) - mean_g * mean_p) / (box(g * g) - mean_g * mean_g + eps)
        b = mean_p - a * mean_g
        a, b = box(a), box(b)
        if s > 1:
            a = F.interpolate(a, scale_factor=float(s), mode="bilinear", align_corners=False)
            b = F.interpolate(b, scale_factor=float(s), mode="bilinear", align_corners=False)
        return a * guide + b
