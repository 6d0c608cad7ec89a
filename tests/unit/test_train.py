"""Losses, metrics and single optimisation steps, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcn_edge.models import ModelConfig, build_model
from fcn_edge.models.preprocess import frames_to_tensor
from fcn_edge.spec import Preprocess
from fcn_edge.train.losses import FocalLoss, build_loss, median_frequency_weights
from fcn_edge.train.loop import TrainConfig, make_optimizer
from fcn_edge.metrics import confusion_matrix, scores_from_confusion


@pytest.mark.parametrize("name", ["ce", "focal"])
def test_loss_ignores_label_255(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[:, :2] = 255
    loss = build_loss(name)
    scrambled = logits.clone()
    scrambled[:, :, :2] = torch.randn(2, 3, 2, 4) * 100  # ignored pixels: any logits
    assert torch.allclose(loss(logits, target), loss(scrambled, target))
    only_valid = loss(logits[:, :, 2:], target[:, 2:])
    assert torch.allclose(loss(logits, target), only_valid)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    torch.manual_seed(1)
    logits, target = torch.randn(1, 4, 5, 5), torch.randint(0, 4, (1, 5, 5))
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), build_loss("ce")(logits, target))


def test_median_frequency_weights_on_toy_masks():
    # mask A (4 px): 0,0,0,1   mask B (4 px): 0,2,2,255 (3 valid px)
    masks = [np.array([[0, 0], [0, 1]], np.uint8), np.array([[0, 2], [2, 255]], np.uint8)]
    # f0 = 4 / (4 + 3) ; f1 = 1 / 4 ; f2 = 2 / 3 ; class 3 absent
    f = np.array([4 / 7, 1 / 4, 2 / 3])
    expected = np.median(f) / f
    weights = median_frequency_weights(masks, num_classes=4)
    assert np.allclose(weights[:3].numpy(), expected)
    assert weights[3] == 0


def test_miou_on_hand_made_confusion_matrix():
    matrix = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 0]])  # rows: truth, cols: prediction
    scores = scores_from_confusion(matrix)
    # IoU0 = 5/(5+1+2) ; IoU1 = 3/(2+3+1+1) ; class 2: 0 TP, 1 FP -> 0
    assert scores.iou == pytest.approx([5 / 8, 3 / 7, 0.0])
    assert scores.miou == pytest.approx((5 / 8 + 3 / 7 + 0) / 3)
    assert scores.pixel_accuracy == pytest.approx(8 / 12)
    absent = scores_from_confusion(np.array([[4, 0], [0, 0]]))
    assert np.isnan(absent.iou[1]) and absent.miou == pytest.approx(1.0)


def test_confusion_matrix_skips_ignored_pixels():
    labels = torch.tensor([[0, 1, 255, 2]])
    predictions = torch.tensor([[0, 2, 1, 2]])
    matrix = confusion_matrix(labels, predictions, 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]


def test_one_optimisation_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    config = ModelConfig(num_classes=3)
    model = build_model(config).train()
    frames = torch.randint(0, 255, (4, 64, 64, 3), dtype=torch.uint8)
    labels = (frames[..., 2].to(torch.int64) > 127).to(torch.int64)  # learnable from red channel
    x = frames_to_tensor(Preprocess(), frames)
    optimizer = make_optimizer(model, TrainConfig(lr=1e-3))
    criterion = build_loss("ce")
    torch.manual_seed(1)  # same dropout mask for both forwards
    before = criterion(model(x), labels)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    torch.manual_seed(1)
    with torch.no_grad():
        after = criterion(model(x), labels)
    assert after.item() < before.item()
