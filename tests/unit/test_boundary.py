"""Boundary F-score and boundary IoU on masks small enough to count by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fcn_edge.boundary import BoundaryCounts, boundary


def square(size: int = 20, lo: int = 5, hi: int = 15, shift: int = 0) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[lo:hi, lo + shift : hi + shift] = 1
    return mask


def scores(gt: np.ndarray, pred: np.ndarray, tolerance: int = 1, classes: int = 2):
    counts = BoundaryCounts(classes, tolerance)
    counts.add(gt, pred)
    return counts.scores()


def test_boundary_is_the_inner_outline_and_not_the_frame():
    edge = boundary(square() == 1)
    assert edge.sum() == 36  # a 10x10 square's outline: 4 * 10 - 4
    assert not boundary(np.ones((5, 5), bool)).any()


def test_perfect_prediction_scores_one():
    s = scores(square(), square())
    assert s.f_score == [1.0, 1.0] and s.iou == [1.0, 1.0]


def test_shift_within_tolerance_is_forgiven_beyond_it_is_not():
    near, far = scores(square(), square(shift=1), tolerance=1), scores(square(), square(shift=3), tolerance=1)
    assert near.f_score[1] == 1.0
    # shifted by 3 with a 1 px tolerance, of 36 outline pixels 18 match on each side: per row (top, bottom) the
    # 7 shared columns and 1 beyond, plus the end of the left (right) column that touches that row
    assert far.precision[1] == pytest.approx(18 / 36)
    assert far.recall[1] == pytest.approx(18 / 36)
    assert far.f_score[1] == pytest.approx(18 / 36)


def test_lost_thin_part_costs_boundary_more_than_miou():
    gt = square(40, 10, 30)
    gt[18:21, 30:38] = 1  # a 3 px spike, 24 px of the 424 of the object
    pred = square(40, 10, 30)
    s = scores(gt, pred)
    assert s.precision[1] > 0.98  # one predicted pixel where the spike leaves the square is 2 px from any outline
    assert s.recall[1] < 0.85  # the spike's outline is missed
    assert s.iou[1] < 0.85


def test_ignored_ground_truth_is_left_out_of_boundary_iou_and_absent_classes_are_nan():
    gt = square()
    gt[:, :3] = 255
    pred = square()
    s = scores(gt, pred, classes=3)
    assert s.iou[1] == 1.0
    assert np.isnan(s.f_score[2]) and np.isnan(s.iou[2])
    assert s.mean_f == pytest.approx(np.nanmean(s.f_score))
