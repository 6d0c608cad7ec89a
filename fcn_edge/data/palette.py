"""Class colour palettes.

Every dataset carries an RGB colour per class so overlays and exported metadata agree.
The Pascal VOC colour map (bit-interleaving of the class index) gives up to 256
distinct, deterministic colours, so it doubles as the default palette for user folders.
VOC ships its masks as palette PNGs, and OpenCV expands those to colours, so the exact
inverse of the map (:func:`voc_colors_to_index`) is how VOC masks become class ids again.
"""

from __future__ import annotations

import numpy as np

from ..errors import FcnEdgeError


def voc_colormap(n: int = 256) -> np.ndarray:
    """The VOC colour map: ``(n, 3)`` uint8 RGB; bit k of the index goes to channel k % 3."""
    if not 0 <= n <= 256:
        raise FcnEdgeError(f"a VOC colour map has at most 256 entries, {n} were asked for")
    index = np.arange(n)
    cmap = np.zeros((n, 3), np.uint8)
    for level in range(8):
        for channel in range(3):
            bit = (index >> (3 * level + channel)) & 1
            cmap[:, channel] |= (bit << (7 - level)).astype(np.uint8)
    return cmap


def _inverse_luts() -> np.ndarray:
    """Per-channel tables: the index bits one channel value of the VOC map stands for."""
    values = np.arange(256)
    luts = np.zeros((3, 256), np.int64)
    for level in range(8):
        for channel in range(3):
            bit = (values >> (7 - level)) & 1
            luts[channel] |= bit << (3 * level + channel)
    return luts


_INVERSE = _inverse_luts()
_COLORMAP = voc_colormap(256)


def voc_colors_to_index(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert the VOC map for an HxWx3 **BGR** image.

    Returns ``(index, bad)``: uint8 class ids and a boolean map of pixels whose colour is
    not in the map (their index is meaningless). Exact: no nearest-colour guessing, so a
    JPEG-compressed or recoloured mask is reported rather than silently mislabelled.
    """
    b, g, r = bgr[..., 0], bgr[..., 1], bgr[..., 2]
    index = _INVERSE[0][r] | _INVERSE[1][g] | _INVERSE[2][b]
    bad = index > 255
    index = np.where(bad, 0, index).astype(np.uint8)
    bad |= np.any(_COLORMAP[index] != bgr[..., ::-1], axis=-1)
    return index, bad


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Deterministic distinct RGB colours for ``num_classes`` classes (the VOC map)."""
    if not 1 <= num_classes <= 255:
        raise FcnEdgeError(f"{num_classes} classes: between 1 and 255 are supported (255 is the ignore label)")
    return [tuple(int(c) for c in rgb) for rgb in voc_colormap(num_classes)]
