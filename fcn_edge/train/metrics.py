"""Segmentation metrics from a confusion matrix (rows: ground truth, columns: prediction)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    valid = labels != ignore_index
    index = labels[valid].to(torch.int64) * num_classes + predictions[valid].to(torch.int64)
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class Scores:
    miou: float
    pixel_accuracy: float
    iou: list[float]  # NaN for classes absent from both labels and predictions

    def table(self, classes: list[str]) -> str:
        width = max(len(name) for name in classes + ["mIoU"])
        rows = [f"{'class':<{width}}  IoU"]
        rows += [f"{name:<{width}}  {'  n/a' if np.isnan(v) else f'{v:.3f}'}" for name, v in zip(classes, self.iou)]
        rows.append(f"{'mIoU':<{width}}  {self.miou:.3f}")
        rows.append(f"{'pixel acc':<{width}}  {self.pixel_accuracy:.3f}")
        return "\n".join(rows)


def scores_from_confusion(matrix: torch.Tensor | np.ndarray) -> Scores:
    """IoU = TP / (TP + FP + FN) per class; mIoU averages the classes that occur."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    total = m.sum()
    return Scores(
        miou=float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        iou=[float(v) for v in iou],
    )
