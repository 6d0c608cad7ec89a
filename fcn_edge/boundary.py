"""Boundary metrics: how well label edges are placed, which mIoU barely sees.

mIoU is dominated by region interiors: a stride-8 FCN that rounds every corner and loses
thin parts scores almost the same as one that gets them right. Two per-class figures
measure the edges themselves, counted over a whole dataset (like the confusion matrix):

- **boundary F-score** (DAVIS, Perazzi et al. 2016; the Cityscapes/BSDS boundary
  benchmarks): precision = share of predicted boundary pixels within ``tolerance`` px of a
  ground-truth boundary pixel of the same class, recall the other way round, F their
  harmonic mean.
- **boundary IoU** (Cheng et al. 2021): IoU of the bands of mask within ``tolerance`` px
  of each mask's own contour.

A class's boundary is the class's pixels with a 4-neighbour of another label; the image
frame is not a boundary. Ground truth ``ignore_index`` pixels (VOC's outline band) count as
another label for the ground-truth boundary and are left out of boundary IoU.
numpy and OpenCV only: the compile stage scores artifacts on boxes without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_TOLERANCE = 3  # px; VOC's ignore band is 3 px wide, so a correct edge lies within 2 px of the labelled one
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of the boolean ``mask`` with a 4-neighbour outside it (erosion's default border keeps the frame out)."""
    m = mask.astype(np.uint8)
    return (m & (1 - cv2.erode(m, _CROSS))).astype(bool)


@dataclass
class BoundaryScores:
    f_score: list[float]  # per class, NaN where neither ground truth nor prediction has a boundary
    precision: list[float]
    recall: list[float]
    iou: list[float]  # boundary IoU per class
    tolerance: int

    @property
    def mean_f(self) -> float:
        return _nanmean(self.f_score)

    @property
    def mean_iou(self) -> float:
        return _nanmean(self.iou)

    def table(self, classes: list[str]) -> str:
        width = max(len(name) for name in classes + ["mean"])
        rows = [f"{'class':<{width}}  bF@{self.tolerance}px  bIoU"]
        for name, f, b in zip(classes, self.f_score, self.iou):
            rows.append(f"{name:<{width}}  {_fmt(f):>7}  {_fmt(b)}")
        rows.append(f"{'mean':<{width}}  {_fmt(self.mean_f):>7}  {_fmt(self.mean_iou)}")
        return "\n".join(rows)


class BoundaryCounts:
    """Per-class boundary counts summed over images; :meth:`scores` turns them into figures."""

    def __init__(self, num_classes: int, tolerance: int = DEFAULT_TOLERANCE, ignore_index: int = 255) -> None:
        if tolerance < 1:
            raise ValueError(f"tolerance {tolerance} px: use at least 1")
        self.num_classes, self.tolerance, self.ignore_index = num_classes, tolerance, ignore_index
        # rows: predicted boundary px, of them matched, ground-truth boundary px, of them matched, bIoU inter, bIoU union
        self.counts = np.zeros((6, num_classes), dtype=np.int64)

    def add(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        labels, predictions = np.asarray(labels), np.asarray(predictions)
        if labels.shape != predictions.shape:
            raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
        valid = labels != self.ignore_index
        near = _disk(self.tolerance)  # dilating an edge by it: pixels within d; eroding a mask: its band of width d
        for c in np.union1d(np.unique(labels[valid]), np.unique(predictions)):
            if c >= self.num_classes:
                continue
            gt, pred = labels == c, predictions == c
            gt_edge, pred_edge = boundary(gt), boundary(pred)
            gt_near = cv2.dilate(gt_edge.astype(np.uint8), near).astype(bool)
            pred_near = cv2.dilate(pred_edge.astype(np.uint8), near).astype(bool)
            gt_band = gt & (cv2.erode(gt.astype(np.uint8), near) == 0)
            pred_band = pred & (cv2.erode(pred.astype(np.uint8), near) == 0) & valid
            self.counts[:, c] += (
                pred_edge.sum(),
                (pred_edge & gt_near).sum(),
                gt_edge.sum(),
                (gt_edge & pred_near).sum(),
                (gt_band & pred_band).sum(),
                (gt_band | pred_band).sum(),
            )

    def scores(self) -> BoundaryScores:
        pred_total, pred_hit, gt_total, gt_hit, inter, union = self.counts.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(pred_total > 0, pred_hit / pred_total, 0.0)
            recall = np.where(gt_total > 0, gt_hit / gt_total, 0.0)
            f = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
            some = (pred_total + gt_total) > 0
            iou = np.where(union > 0, inter / union, np.nan)
        nan = np.full(self.num_classes, np.nan)
        return BoundaryScores(
            f_score=list(np.where(some, f, nan)),
            precision=list(np.where(some, precision, nan)),
            recall=list(np.where(some, recall, nan)),
            iou=[float(v) for v in iou],
            tolerance=self.tolerance,
        )


def _nanmean(values: list[float]) -> float:
    array = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(array)) if np.any(~np.isnan(array)) else float("nan")


def _fmt(v: float) -> str:
    return "  n/a" if np.isnan(v) else f"{v:.3f}"
