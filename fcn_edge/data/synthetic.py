"""Synthetic scenes: the embedded default dataset, so training works with no download.

Each scene is a textured background with 2-6 objects drawn back to front. Every object
class is a shape family with its own texture and hue band, so shape, texture and colour
are all cues, and none is removed by the photometric noise. Objects range from 16 px to
half the image side, overlap (later objects occlude earlier ones, and the mask says so),
and the image gets lighting changes, occasional blur and sensor noise. The mask is exact:
it is the set of pixels each shape was painted on. See SYNTHETIC.md for what this does
and does not test.

Sample ``i`` of ``SyntheticScenes(seed=s)`` comes from ``np.random.default_rng(s + i)``,
so it is the same in every process and on every run; held-out scenes use seeds from
``HELDOUT_SEED`` upwards, disjoint from the training range.
"""

from __future__ import annotations

import colorsys
import functools
import math
from typing import Callable

import cv2
import numpy as np

from ..errors import FcnEdgeError
from .files import IGNORE_INDEX

TRAIN_SEED = 0
HELDOUT_SEED = 1_000_000

CLASSES = ["background", "disc", "rectangle", "triangle", "star", "ring", "cross", "hexagon"]
NUM_OBJECT_CLASSES = len(CLASSES) - 1

# OpenCV hue (0..179) at the centre of each object class's band; bands are +-HUE_SPREAD wide
# with gaps between them. Backgrounds are kept unsaturated (BG_MAX_SATURATION).
HUE_CENTRES = [round(k * 180 / NUM_OBJECT_CLASSES) for k in range(NUM_OBJECT_CLASSES)]
HUE_SPREAD = 7
BG_MAX_SATURATION = 70

PALETTE = [(0, 0, 0)] + [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h / 180.0, 0.85, 1.0)) for h in HUE_CENTRES]

MIN_OBJECTS, MAX_OBJECTS = 2, 6
MIN_OBJECT_SIZE = 16  # px, bounding diameter of the unrotated shape
NEAR_PREVIOUS = 0.5  # chance an object is placed over an earlier one, so occlusion is common
NOISE_SIGMA = (2.0, 8.0)
BLUR_PROBABILITY = 0.3


# --- shapes: vertices in the object's own frame, centred at 0, radius r ---------------------


def _ellipse(r: float, aspect: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, max(16, int(r * 1.5)), endpoint=False)
    return np.stack([r * np.cos(t), r * aspect * np.sin(t)], 1)


def _regular(r: float, n: int, aspect: float, start: float) -> np.ndarray:
    t = start + np.arange(n) * 2 * np.pi / n
    return np.stack([r * np.cos(t), r * aspect * np.sin(t)], 1)


def _shape(cls: int, r: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Outline polygons; for the ring the second one is the hole."""
    name = CLASSES[cls]
    if name == "disc":
        return [_ellipse(r, rng.uniform(0.7, 1.0))]
    if name == "rectangle":
        a = rng.uniform(0.45, 0.9)
        return [np.array([[-r, -r * a], [r, -r * a], [r, r * a], [-r, r * a]])]
    if name == "triangle":
        return [_regular(r, 3, rng.uniform(0.75, 1.0), -np.pi / 2)]
    if name == "star":
        outer = _regular(r, 5, 1.0, -np.pi / 2)
        inner = _regular(r * rng.uniform(0.38, 0.5), 5, 1.0, -np.pi / 2 + np.pi / 5)
        return [np.stack([outer, inner], 1).reshape(-1, 2)]
    if name == "ring":
        a = rng.uniform(0.75, 1.0)
        return [_ellipse(r, a), _ellipse(r * rng.uniform(0.45, 0.6), a)]
    if name == "cross":
        q = r * rng.uniform(0.25, 0.38)
        return [np.array([[q, r], [q, q], [r, q], [r, -q], [q, -q], [q, -r],
                          [-q, -r], [-q, -q], [-r, -q], [-r, q], [-q, q], [-q, r]])]  # fmt: skip
    if name == "hexagon":
        return [_regular(r, 6, rng.uniform(0.8, 1.0), rng.uniform(0, np.pi / 3))]
    raise AssertionError(name)


# --- textures: a pattern in [0, 1] over the object's own frame (u, v) -------------------------


def _texture(cls: int, u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    name = CLASSES[cls]
    period = rng.uniform(4.0, 7.0)
    phase = rng.uniform(0, 2 * math.pi)
    w = 2 * math.pi / period
    if name == "disc":  # concentric rings
        return 0.5 + 0.5 * np.cos(w * np.sqrt(u * u + v * v) + phase)
    if name == "rectangle":  # stripes across the long axis
        return 0.5 + 0.5 * np.cos(w * u + phase)
    if name == "triangle":  # checkerboard
        cell = period * 0.7
        return ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    if name == "star":  # radial spokes
        return 0.5 + 0.5 * np.cos(int(rng.integers(5, 9)) * np.arctan2(v, u) + phase)
    if name == "ring":  # dots
        return ((np.cos(w * u + phase) * np.cos(w * v)) > 0.35).astype(np.float32)
    if name == "cross":  # thin grid lines
        half = period / 2
        return (np.minimum(np.abs(np.sin(np.pi * u / half)), np.abs(np.sin(np.pi * v / half))) < 0.4).astype(np.float32)
    if name == "hexagon":  # plain, with smooth shading
        return np.clip(0.5 + 0.5 * u / r, 0, 1)
    raise AssertionError(name)


def _hsv_to_bgr(hsv: np.ndarray) -> np.ndarray:
    bgr = cv2.cvtColor(np.asarray(hsv, np.uint8).reshape(1, -1, 3), cv2.COLOR_HSV2BGR)
    return bgr.reshape(-1, 3).astype(np.float32)


def _object_colours(cls: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A light and a dark BGR colour in the class's hue band; the texture mixes them."""
    hue = (HUE_CENTRES[cls - 1] + rng.uniform(-HUE_SPREAD, HUE_SPREAD)) % 180
    sat = rng.uniform(140, 255)
    val = rng.uniform(150, 255)
    light, dark = _hsv_to_bgr([[hue, sat, val], [hue, sat, val * rng.uniform(0.35, 0.6)]])
    return light, dark


# --- background and camera ---------------------------------------------------------------


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Unsaturated two-colour gradient + low-frequency noise + sometimes faint stripes or a grid.

    Everything here is smooth, so it is drawn at half resolution and upsampled (4x cheaper).
    """
    bh, bw = (h + 1) // 2, (w + 1) // 2
    ys, xs = _grid(bh, bw)
    hsv = np.stack([rng.uniform(0, 180, 2), rng.uniform(0, BG_MAX_SATURATION, 2), rng.uniform(50, 210, 2)], 1)
    c0, c1 = _hsv_to_bgr(hsv)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(angle) * xs / bw + math.sin(angle) * ys / bh
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    image = c0 + (c1 - c0) * ramp[..., None]
    grid = rng.standard_normal((rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.float32)
    image += cv2.resize(grid, (bw, bh), interpolation=cv2.INTER_CUBIC) * rng.uniform(6, 20)
    kind = rng.integers(0, 3)  # 0 none, 1 stripes, 2 grid
    if kind:
        freq = 2 * math.pi / (rng.uniform(10, 28) / 2)  # period 10-28 px at full resolution
        a = rng.uniform(0, math.pi)
        pattern = np.cos((math.cos(a) * xs + math.sin(a) * ys) * freq)
        if kind == 2:
            pattern = np.maximum(pattern, np.cos((-math.sin(a) * xs + math.cos(a) * ys) * freq))
        image += (pattern * rng.uniform(4, 12))[..., None]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate grids (float32, read-only, cached per size)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Fixed standard-normal noise; a random window of it is ~10x cheaper than fresh noise."""
    bank = np.random.default_rng(20240607).standard_normal((384, 384, 3), dtype=np.float32)
    bank.flags.writeable = False
    return bank


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bank = _noise_bank()
    if h > bank.shape[0] or w > bank.shape[1]:
        return rng.standard_normal((h, w, 3), dtype=np.float32)
    y, x = rng.integers(0, bank.shape[0] - h + 1), rng.integers(0, bank.shape[1] - w + 1)
    window = bank[y : y + h, x : x + w]
    return window[::-1] if rng.random() < 0.5 else window


def _camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting (gain, bias, smooth gradient), occasional blur, Gaussian noise -> uint8."""
    h, w = image.shape[:2]
    ys, xs = _grid(h, w)
    gx, gy = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
    gain = rng.uniform(0.7, 1.25)
    light = (gain * gx / w) * xs + (gain * gy / h) * ys + gain * (1 - 0.5 * gx - 0.5 * gy)
    image *= light[..., None]
    image += rng.uniform(-20, 20)
    if rng.random() < BLUR_PROBABILITY:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.2))
    image += _noise(rng, h, w) * rng.uniform(*NOISE_SIGMA)
    return np.clip(image, 0, 255).astype(np.uint8)


# --- the scene ------------------------------------------------------------------------------


def render_scene(
    rng: np.random.Generator, size: tuple[int, int] = (128, 128), info: list | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene: ``(image HxWx3 uint8 BGR, mask HxW uint8 class ids)``.

    Pass a list as ``info`` to get one dict per drawn object, back to front: ``index``
    (drawing order), ``cls``, ``centre`` (x, y), ``size``, ``painted`` (pixels the shape
    covered when drawn) and ``visible`` (pixels still showing it at the end; fewer than
    ``painted`` means a later object occludes it). Used by tests; it costs a little time.
    """
    h, w = size
    ys, xs = _grid(h, w)
    image = _background(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    owner = np.full((h, w), -1, np.int16) if info is not None else None
    max_size = min(h, w) / 2
    placed: list[tuple[float, float, float]] = []
    for k in range(int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))):
        cls = int(rng.integers(1, len(CLASSES)))
        s = float(np.exp(rng.uniform(np.log(MIN_OBJECT_SIZE), np.log(max_size))))  # log-uniform: many small
        r = s / 2
        if placed and rng.random() < NEAR_PREVIOUS:
            px, py, ps = placed[int(rng.integers(len(placed)))]
            cx, cy = np.array([px, py]) + rng.uniform(-0.6, 0.6, 2) * ps
        else:
            cx, cy = rng.uniform(0.2 * s, w - 0.2 * s), rng.uniform(0.2 * s, h - 0.2 * s)
        cx, cy = float(np.clip(cx, 0, w - 1)), float(np.clip(cy, 0, h - 1))
        placed.append((cx, cy, s))
        theta = rng.uniform(0, 2 * math.pi)
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        rot = np.array([[cos_t, sin_t], [-sin_t, cos_t]])
        polygons = [p @ rot + (cx, cy) for p in _shape(cls, r, rng)]  # local -> image coordinates
        outline = polygons[0]
        x0, y0 = (max(int(np.floor(v)), 0) for v in outline.min(0))
        x1, y1 = (int(np.ceil(v)) + 1 for v in outline.max(0))
        x1, y1 = min(x1, w), min(y1, h)
        light, dark = _object_colours(cls, rng)
        if x1 <= x0 or y1 <= y0:
            continue
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for value, poly in zip((1, 0), polygons):
            pts = np.round((poly - (x0, y0)) * 16).astype(np.int32)
            cv2.fillPoly(canvas, [pts], value, lineType=cv2.LINE_8, shift=4)
        painted = canvas.view(bool)
        dx, dy = xs[y0:y1, x0:x1] - cx, ys[y0:y1, x0:x1] - cy
        u = cos_t * dx + sin_t * dy  # back into the object's frame
        v = cos_t * dy - sin_t * dx
        pattern = _texture(cls, u, v, r, rng).astype(np.float32)
        colour = dark + (light - dark) * pattern[..., None]
        image[y0:y1, x0:x1][painted] = colour[painted]
        mask[y0:y1, x0:x1][painted] = cls
        if info is not None:
            owner[y0:y1, x0:x1][painted] = k
            info.append({"index": k, "cls": cls, "centre": (cx, cy), "size": s, "painted": int(painted.sum())})
    if info is not None:
        counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(placed))
        for obj in info:
            obj["visible"] = int(counts[obj["index"]])
    return _camera(image, rng), mask


class SyntheticScenes:
    """``length`` deterministic scenes; sample i is drawn from seed ``seed + i``."""

    classes = CLASSES
    palette = PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(
        self, length: int, seed: int = TRAIN_SEED, size: tuple[int, int] = (128, 128), transform: Callable | None = None
    ):
        if int(length) < 0:
            raise FcnEdgeError(f"synthetic dataset length {length} must be >= 0")
        h, w = (int(v) for v in size)
        if min(h, w) < 2 * MIN_OBJECT_SIZE:
            raise FcnEdgeError(f"synthetic image size {h}x{w} is too small: use at least {2 * MIN_OBJECT_SIZE} px per side")
        self.length, self.seed, self.size, self.transform = int(length), int(seed), (h, w), transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -self.length <= i < self.length:
            raise IndexError(f"scene {i} out of range for {self.length} scenes")
        image, mask = render_scene(np.random.default_rng(self.seed + i % self.length), self.size)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask
