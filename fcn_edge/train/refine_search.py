"""Choose the guided filter's parameters on a validation split, by boundary IoU.

The filter has two knobs that trade edge snapping against noise (radius, eps) and one that
trades accuracy against cost (subsample). A small grid scored by
:func:`fcn_edge.train.loop.evaluate` is enough. Trials are ranked by boundary IoU: on the
synthetic scenes boundary F at 3 px is above 0.98 for the plain model and within a point
for every sensible setting, so it cannot tell them apart (docs/boundaries.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..boundary import BoundaryCounts
from ..models.refine import GuidedParams, GuidedRefine
from ..spec import Preprocess
from .loop import evaluate

GRID = [GuidedParams(r, eps, s) for s in (2, 4) for r in (1, 2) for eps in (0.03, 0.1, 0.3)]


@dataclass
class Trial:
    params: GuidedParams
    miou: float
    boundary_f: float
    boundary_iou: float


def search(
    model: nn.Module, dataset: Dataset, preprocess: Preprocess, num_classes: int, grid: list[GuidedParams] = GRID
) -> list[Trial]:
    """Every grid point scored on ``dataset``, best boundary IoU first."""
    trials = []
    for params in grid:
        counts = BoundaryCounts(num_classes)
        scores = evaluate(
            GuidedRefine(model, params), dataset, preprocess, num_classes, torch.device("cpu"), progress=False, boundary=counts
        )
        trials.append(Trial(params, scores.miou, counts.scores().mean_f, counts.scores().mean_iou))
    return sorted(trials, key=lambda t: -t.boundary_iou)
