"""Labels -> a colour overlay blended onto the frame, with an optional class legend.

Colours come from a 256-entry BGR lookup table built once from the model's palette, so
colouring a frame is one single-channel ``cv2.LUT`` per colour channel over the labels and a
``cv2.merge`` (faster than one three-channel LUT over the labels replicated or ``np.take``:
docs/stream.md, "Figures behind the code"), into reused buffers, and the blend is one
``cv2.addWeighted`` (which rounds and saturates like OpenCV everywhere else). Labels the
palette does not cover get the VOC colour map's colours, so a bad label is visible, not
an IndexError. The legend is drawn once per frame size and pasted.
"""

from __future__ import annotations

import copy

from typing import Sequence

import cv2
import numpy as np

from ..data.palette import voc_colormap
from ..errors import FcnEdgeError

LEGEND_MARGIN = 4


def palette_lut(palette_rgb: Sequence[Sequence[int]]) -> np.ndarray:
    """(256, 3) uint8 BGR: the palette's colours first, the VOC map's after."""
    if len(palette_rgb) > 256:
        raise FcnEdgeError(f"a palette of {len(palette_rgb)} colours does not fit uint8 labels (256 at most)")
    if not all(len(colour) == 3 and all(_byte(v) for v in colour) for colour in palette_rgb):  # hand-edited metadata
        raise FcnEdgeError(f"the palette must be one [r, g, b] of whole numbers 0..255 per class, not {str(palette_rgb)[:60]}")
    lut = voc_colormap(256)[:, ::-1].copy()
    if len(palette_rgb):
        lut[: len(palette_rgb)] = np.asarray(palette_rgb, np.uint8).reshape(-1, 3)[:, ::-1]
    return lut


def _byte(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value <= 255


class Overlay:
    """Blends ``alpha`` of the class colour over each pixel; reuses its buffers while the size holds."""

    def __init__(
        self,
        palette_rgb: Sequence[Sequence[int]],
        alpha: float = 0.5,
        classes: Sequence[str] | None = None,
        legend: bool = False,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise FcnEdgeError(f"--alpha {alpha} must be between 0 and 1")
        if legend and not classes:
            raise FcnEdgeError("the model has no class names for a legend: drop --legend or export it with metadata")
        self.lut = palette_lut(palette_rgb)
        self._channel_luts = [np.ascontiguousarray(self.lut[:, c]) for c in range(3)]
        self.alpha = float(alpha)
        self.classes = list(classes or [])
        self.legend = legend
        self._colour: np.ndarray | None = None
        self._channels: list[np.ndarray] = []
        self._yuv_luts = yuv_luts(self.lut)
        self._yuv_colour: list[np.ndarray] = []  # the colour planes, full (Y) and half size (U, V, and their labels)
        self._legend_patch: tuple[tuple[int, int], np.ndarray] | None = None

    def copy(self) -> "Overlay":
        """The same overlay with working buffers of its own: each stream of a multi-stream run draws in its own
        thread, at its own frame size."""
        twin = copy.copy(self)
        twin._colour, twin._channels, twin._yuv_colour, twin._legend_patch = None, [], [], None
        return twin

    def render(self, frame: np.ndarray, labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Blend into ``out`` (may be ``frame`` itself); returns ``out``."""
        if labels.shape != frame.shape[:2]:
            raise FcnEdgeError(f"labels {labels.shape} do not match frame {frame.shape[:2]}: the model changed the size")
        if self._colour is None or self._colour.shape != frame.shape:
            self._colour = np.empty(frame.shape, np.uint8)
            self._channels = [np.empty(frame.shape[:2], np.uint8) for _ in range(3)]
        for lut, channel in zip(self._channel_luts, self._channels):
            cv2.LUT(labels, lut, dst=channel)
        cv2.merge(self._channels, dst=self._colour)
        out = cv2.addWeighted(frame, 1.0 - self.alpha, self._colour, self.alpha, 0.0, dst=out)
        if self.legend:
            self._paste_legend(out)
        return out

    def render_i420(self, frame: np.ndarray, labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The overlay as YUV 4:2:0 (I420, what a recording encodes), for an even-sized frame: converting the
        frame first and blending each plane (chroma takes each 2x2 block's top-left label) moves half the bytes of
        blending in BGR and converting after (faster, 48 dB apart: docs/stream.md). No legend."""
        height, width = labels.shape
        if frame.shape[:2] != (height, width) or height % 2 or width % 2:
            raise FcnEdgeError(
                f"an I420 overlay needs an even-sized frame and labels of its size, not {frame.shape[:2]} and {labels.shape}"
            )
        if not self._yuv_colour or self._yuv_colour[0].shape != (height, width):
            self._yuv_colour = [np.empty((height, width), np.uint8)] + [
                np.empty((height // 2, width // 2), np.uint8) for _ in range(3)
            ]
        out = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420, dst=out)
        colour_y, colour_u, colour_v, half_labels = self._yuv_colour
        flat, luma, chroma = out.reshape(-1), height * width, half_labels.size  # chroma planes follow Y, byte by byte
        planes = (
            out[:height],
            flat[luma : luma + chroma].reshape(half_labels.shape),
            flat[luma + chroma :].reshape(half_labels.shape),
        )
        cv2.resize(labels, (width // 2, height // 2), dst=half_labels, interpolation=cv2.INTER_NEAREST)
        for plane, colour, plane_labels, lut in zip(
            planes, (colour_y, colour_u, colour_v), (labels, half_labels, half_labels), self._yuv_luts
        ):
            cv2.LUT(plane_labels, lut, dst=colour)
            cv2.addWeighted(plane, 1.0 - self.alpha, colour, self.alpha, 0.0, dst=plane)
        return out

    def _paste_legend(self, image: np.ndarray) -> None:
        size = image.shape[:2]
        if self._legend_patch is None or self._legend_patch[0] != size:
            self._legend_patch = (size, draw_legend(self.classes, self.lut, size))
        patch = self._legend_patch[1]
        h, w = min(patch.shape[0], size[0]), min(patch.shape[1], size[1])
        image[:h, :w] = patch[:h, :w]


def yuv_luts(lut: np.ndarray) -> list[np.ndarray]:
    """The Y, U and V of each BGR colour of ``lut``, as OpenCV's I420 conversion gives them (from 2x2 blocks of it)."""
    blocks = np.repeat(np.repeat(lut[None], 2, axis=0), 2, axis=1)  # (2, 512, 3): colour c in columns 2c, 2c+1
    flat = cv2.cvtColor(blocks, cv2.COLOR_BGR2YUV_I420).ravel()  # Y 2x512, then U 256, then V 256
    return [np.ascontiguousarray(flat[:512:2]), flat[1024:1280].copy(), flat[1280:].copy()]


def draw_legend(classes: Sequence[str], lut: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """A dark box with one colour swatch and name per class, scaled to the frame height."""
    scale = max(0.3, frame_size[0] / 960)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(max(classes, key=len), font, scale, 1)
    row = text_h + baseline + LEGEND_MARGIN
    swatch = text_h + baseline
    patch = np.full((row * len(classes) + LEGEND_MARGIN, swatch + text_w + 3 * LEGEND_MARGIN, 3), 32, np.uint8)
    for i, name in enumerate(classes):
        top = LEGEND_MARGIN + i * row
        colour = tuple(int(c) for c in lut[i])
        cv2.rectangle(patch, (LEGEND_MARGIN, top), (LEGEND_MARGIN + swatch - 1, top + swatch - 1), colour, -1)
        cv2.putText(patch, name, (2 * LEGEND_MARGIN + swatch, top + text_h), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return patch
