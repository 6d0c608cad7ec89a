"""The checkerboard score: what it detects, what it ignores, and Odena et al.'s deconv vs resize+conv gap."""

from __future__ import annotations

import re

import cv2
import pytest
import torch
from torch.nn import functional as F

from fcn_edge.data.synthetic import HELDOUT_SEED, SyntheticScenes
from fcn_edge.errors import FcnEdgeError
from fcn_edge.export.checkerboard import REFERENCE_STRIDE, checkerboard_score, high_pass, reference_model
from fcn_edge.models.preprocess import images_to_tensor
from fcn_edge.spec import Preprocess
from conftest import assert_user_error, run_script


def smooth_maps(seed: int = 0, size: int = 96) -> torch.Tensor:
    """Band-limited random maps: plenty of structure, none of it tied to a pixel grid."""
    coarse = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def period_two_pattern(size: int = 96) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((ys + xs) % 2 * 2 - 1).float()


def test_an_injected_period_two_pattern_scores_far_above_a_smooth_map():
    smooth = smooth_maps()
    patterned = smooth + 0.03 * smooth.std() * period_two_pattern()  # invisible next to the content's range
    assert checkerboard_score(smooth, 2) < 0.05
    assert checkerboard_score(patterned, 2) > 0.5
    assert checkerboard_score(patterned, 2) > 20 * checkerboard_score(smooth, 2)


def test_a_pattern_whose_sign_follows_the_content_is_still_found():
    # a deconv's pattern is proportional to its input, so it changes sign with the content
    smooth = smooth_maps(1)
    modulated = smooth + 0.02 * smooth * period_two_pattern()
    assert checkerboard_score(modulated, 2) > 10 * checkerboard_score(smooth, 2)


def test_scaling_or_offsetting_a_map_leaves_the_score_unchanged():
    maps = smooth_maps(2) + 0.05 * torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    base = checkerboard_score(maps, 2)
    for scaled in (maps * 1e-3, maps * 250.0 + 7.0):
        assert checkerboard_score(scaled, 2) == pytest.approx(base, rel=1e-6)


def test_high_pass_removes_linear_trends_and_keeps_the_aliasing_frequency():
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    ramp = (3 * ys - 2 * xs)[None, None]
    assert high_pass(ramp, 4)[..., 4:-4, 4:-4].abs().max() < 1e-4
    nyquist = period_two_pattern(40)[None, None]
    assert torch.allclose(high_pass(nyquist, 2)[..., 2:-2, 2:-2], nyquist[..., 2:-2, 2:-2], atol=1e-6)


def test_maps_too_small_for_one_tile_are_a_user_error():
    with pytest.raises(FcnEdgeError, match="too small"):
        checkerboard_score(torch.randn(1, 1, 30, 30), 4)


def test_stride2_kernel3_deconv_scores_5x_resize_conv_at_initialisation():
    scenes = SyntheticScenes(3, HELDOUT_SEED, (96, 96))
    images = images_to_tensor(Preprocess(), [scenes[i][0] for i in range(len(scenes))])
    for seed in range(3):
        with torch.no_grad():
            scores = {kind: checkerboard_score(reference_model(kind, 8, seed)(images), REFERENCE_STRIDE)
                      for kind in ("deconv", "nearest", "bilinear")}  # fmt: skip
        assert scores["deconv"] > 5 * scores["nearest"], (seed, scores)
        assert scores["deconv"] > 5 * scores["bilinear"], (seed, scores)


@pytest.mark.slow
def test_script_prints_the_table_and_writes_the_figure(tmp_path):
    out = tmp_path / "checkerboard.png"
    result = run_script("checkerboard.py", "--steps", "0", "--seeds", "1", "--scenes", "2", "--size", "96x96",
                        "--threads", "1", "--output", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "deconv / nearest" in result.stdout and "deconv / bilinear" in result.stdout
    figure = cv2.imread(str(out))
    assert figure is not None and figure.shape[1] > 5 * 2 * 96  # five panels side by side, enlarged 2x


def test_script_refuses_a_missing_output_folder(tmp_path):
    result = run_script("checkerboard.py", "--output", tmp_path / "nowhere" / "cb.png")
    assert_user_error(result, "nowhere")


@pytest.mark.training
def test_the_gap_survives_training(tmp_path):
    result = run_script("checkerboard.py", "--seeds", "2", "--scenes", "8", "--threads", "1",
                        "--output", tmp_path / "cb.png")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for other in ("nearest", "bilinear"):
        line = next(row for row in result.stdout.splitlines() if row.startswith(f"deconv / {other}"))
        init_ratio, trained_ratio = (float(v) for v in re.findall(r"([\d.]+)x", line))
        assert init_ratio >= 5 and trained_ratio >= 5, line
