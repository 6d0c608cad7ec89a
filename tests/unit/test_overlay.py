"""The overlay: palette colours blended with alpha, in BGR or straight in YUV 4:2:0, through lookup tables; the legend."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fcn_edge.data.palette import voc_colormap
from fcn_edge.data.synthetic import CLASSES, PALETTE
from fcn_edge.errors import FcnEdgeError
from fcn_edge.stream.overlay import Overlay, palette_lut


def scene(h=48, w=64):
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels = (np.arange(w)[None, :] * len(PALETTE) // w).repeat(h, 0).astype(np.uint8)  # a stripe per class
    return frame, labels


def palette_bgr():
    return np.array(PALETTE, np.float64)[:, ::-1]


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.8])
def test_pixels_are_the_palette_blend_of_their_label(alpha):
    frame, labels = scene()
    out = Overlay(PALETTE, alpha).render(frame, labels)
    expected = np.round(frame * (1 - alpha) + palette_bgr()[labels] * alpha)
    assert np.abs(out.astype(int) - expected).max() <= 1  # OpenCV rounds in float32
    assert set(np.unique(labels)) == set(range(len(PALETTE)))


def test_alpha_one_paints_exact_palette_colours_in_bgr_and_zero_keeps_the_frame():
    frame, labels = scene()
    painted = Overlay(PALETTE, 1.0).render(frame, labels)
    assert np.array_equal(painted, palette_bgr()[labels].astype(np.uint8))
    assert tuple(painted[0, -1]) == PALETTE[-1][::-1]
    assert np.array_equal(Overlay(PALETTE, 0.0).render(frame, labels), frame)


def test_in_place_render_equals_a_fresh_output_and_reuses_the_frame():
    frame, labels = scene()
    overlay = Overlay(PALETTE, 0.4)
    fresh = overlay.render(frame, labels)
    target = frame.copy()
    assert overlay.render(target, labels, out=target) is target
    assert np.array_equal(target, fresh)


def test_labels_outside_the_palette_get_voc_colours():
    lut = palette_lut(PALETTE)
    assert lut.shape == (256, 3)
    assert np.array_equal(lut[len(PALETTE) :], voc_colormap(256)[len(PALETTE) :, ::-1])
    frame = np.zeros((4, 4, 3), np.uint8)
    out = Overlay(PALETTE, 1.0).render(frame, np.full((4, 4), 200, np.uint8))
    assert tuple(out[0, 0]) == tuple(voc_colormap(256)[200, ::-1])


def test_legend_is_drawn_top_left_and_leaves_the_rest_blended():
    frame, labels = scene(240, 320)
    plain = Overlay(PALETTE, 0.5).render(frame, labels)
    with_legend = Overlay(PALETTE, 0.5, CLASSES, legend=True).render(frame, labels)
    changed = np.argwhere(np.any(plain != with_legend, axis=-1))
    assert len(changed)
    assert changed[:, 0].max() < 240 // 2 and changed[:, 1].max() < 320 // 2  # a box in the top-left corner
    tiny, tiny_labels = scene(20, 24)  # a legend bigger than the frame is clipped, not an error
    assert Overlay(PALETTE, 0.5, CLASSES, legend=True).render(tiny, tiny_labels).shape == tiny.shape


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"alpha": 1.5}, "--alpha 1.5"),
        ({"alpha": 0.5, "legend": True}, "no class names"),
    ],
    ids=["alpha", "legend-without-names"],
)
def test_bad_settings_are_user_errors(kwargs, fragment):
    with pytest.raises(FcnEdgeError, match=fragment):
        Overlay(PALETTE, **kwargs)


def test_mismatched_labels_are_a_user_error():
    frame, labels = scene()
    with pytest.raises(FcnEdgeError, match="do not match"):
        Overlay(PALETTE).render(frame, labels[:-1])


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.8])
def test_the_i420_overlay_is_the_bgr_overlay_converted_within_rounding(alpha):
    frame, labels = scene()  # stripes two pixels wide at least: every 2x2 chroma block has one label
    overlay = Overlay(PALETTE, alpha)
    direct = overlay.render_i420(frame, labels).astype(int)
    converted = cv2.cvtColor(overlay.render(frame, labels), cv2.COLOR_BGR2YUV_I420).astype(int)
    assert direct.shape == (48 * 3 // 2, 64) and np.abs(direct - converted).max() <= 1


def test_the_i420_overlay_needs_an_even_frame_and_labels_of_its_size():
    frame, labels = scene(47, 64)
    with pytest.raises(FcnEdgeError, match="even-sized"):
        Overlay(PALETTE).render_i420(frame, labels)
