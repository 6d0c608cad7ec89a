"""Segmentation metrics from a confusion matrix (rows: ground truth, columns: prediction).

numpy only: the compile stage scores artifacts on boxes without torch; training counts
with torch and hands the matrix here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    valid = labels != ignore_index
    index = labels[valid].astype(np.int64) * num_classes + predictions[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


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


def scores_from_confusion(matrix: np.ndarray) -> Scores:
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
