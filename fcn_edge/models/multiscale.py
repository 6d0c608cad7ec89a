"""Multi-scale (and flipped) inference: the input at several scales, class probabilities averaged.

The classic FCN/DeepLab test-time augmentation: a stride-8 network sees thin parts better
when the frame is enlarged and context better when it is shrunk. Every pass's scores are
resized back to the input size and their softmax averaged; the output is the log of that
average, so it reads as logits to ArgMax, to the guided filter and to the exporter. As one
module it runs the same in evaluate.py and in an exported graph (each scale is one more
pass of the network: the cost is the sum of the passes' pixels).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MultiScale(nn.Module):
    def __init__(self, model: nn.Module, scales: Sequence[float] = (0.75, 1.0, 1.25), flip: bool = False) -> None:
        super().__init__()
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales {list(scales)}: give one or more positive factors")
        self.model, self.scales, self.flip = model, tuple(float(s) for s in scales), flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        total = None
        for scale in self.scales:
            scaled = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            for flipped in (False, True) if self.flip else (False,):
                out = self.model(scaled.flip(3) if flipped else scaled)
                out = out.flip(3) if flipped else out
                if scale != 1:
                    out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
                probabilities = out.softmax(1)
                total = probabilities if total is None else total + probabilities
        return torch.log(total / (len(self.scales) * (2 if self.flip else 1)))
