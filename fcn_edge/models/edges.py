"""What a deployed model does about edges: multi-scale inference and guided refinement, as data.

One description, stored in the exported model's metadata (``model_config["edges"]``) and
applied by :meth:`EdgeOptions.wrap` in evaluation and export alike, so the graph a camera
runs is the one that was scored.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from torch import nn

from .multiscale import MultiScale
from .refine import MAX_RADIUS, MAX_SUBSAMPLE, GuidedParams, GuidedRefine


@dataclass(frozen=True)
class EdgeOptions:
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    refine: GuidedParams | None = None

    @property
    def plain(self) -> bool:
        return self.scales == (1.0,) and not self.flip and self.refine is None

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.scales != (1.0,) or self.flip:
            model = MultiScale(model, self.scales, self.flip)
        return GuidedRefine(model, self.refine) if self.refine else model

    def to_dict(self) -> dict:
        return {"scales": list(self.scales), "flip": self.flip, "refine": self.refine.to_dict() if self.refine else None}


def scales_arg(text: str) -> tuple[float, ...]:
    """'0.75,1,1.25' -> (0.75, 1.0, 1.25): the --scales flag."""
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of scales like 0.75,1,1.25") from None
    if not all(0.25 <= s <= 4 for s in scales):
        raise argparse.ArgumentTypeError(f"{text!r}: each scale must lie in 0.25..4")
    return scales


def guided_arg(text: str) -> GuidedParams:
    """'2,0.01,4' -> GuidedParams(radius=2, eps=0.01, subsample=4); subsample may be left out: the --refine flag."""
    try:
        values = text.split(",")
        params = GuidedParams(int(values[0]), float(values[1]), *(int(v) for v in values[2:3]))
        if len(values) > 3:
            raise ValueError
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not RADIUS,EPS[,SUBSAMPLE] with radius 1..{MAX_RADIUS}, eps > 0 (finite), subsample "
            f"1..{MAX_SUBSAMPLE} (e.g. 2,0.01,4)"
        ) from None
    return params
