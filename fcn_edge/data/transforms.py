"""Joint image/mask augmentation with OpenCV.

Every transform is a callable ``t(image, mask, rng=None) -> (image, mask)`` on an HxWx3
uint8 BGR image and an HxW uint8 mask (255 = ignore). Geometry is applied to both (the
mask always with nearest-neighbour, so no new label values appear); colour only to the
image.

Randomness: pass a ``numpy.random.Generator`` as ``rng`` to control it directly (tests do).
When ``rng`` is None a fresh generator is seeded from **torch's** global RNG. That makes
augmentation reproducible with nothing but ``torch.manual_seed(seed)``: the DataLoader
seeds each worker's torch RNG from the main process (base seed + worker id), so workers
do not repeat each other's crops, which is the classic bug of a module-level numpy
generator forked into every worker. :class:`Compose` draws one generator per sample and
hands it to every step.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from ..errors import FcnEdgeError
from .files import IGNORE_INDEX


def torch_seeded_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG (per process / DataLoader worker)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return torch_seeded_rng() if rng is None else rng


def _size(value: int | Sequence[int], what: str) -> tuple[int, int]:
    h, w = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if h <= 0 or w <= 0:
        raise FcnEdgeError(f"{what} {value} must be positive (height, width)")
    return int(h), int(w)


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image, mask, rng: np.random.Generator | None = None):
        if rng is None and any(getattr(t, "random", True) for t in self.transforms):
            rng = torch_seeded_rng()  # only random pipelines consume torch's RNG
        for t in self.transforms:
            image, mask = t(image, mask, rng=rng)
        return image, mask


class Resize:
    """Resize to a fixed (h, w): image bilinear, mask nearest."""

    random = False

    def __init__(self, h: int, w: int):
        self.size = _size((h, w), "resize size")

    def __call__(self, image, mask, rng=None):
        h, w = self.size
        if image.shape[:2] == (h, w):
            return image, mask
        return (
            cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR),
            cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST),
        )


class RandomScale:
    """Scale both by one factor drawn uniformly from [min_scale, max_scale]."""

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0):
        if not 0 < min_scale <= max_scale:
            raise FcnEdgeError(f"scale range ({min_scale}, {max_scale}) must satisfy 0 < min <= max")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, image, mask, rng=None):
        s = _rng(rng).uniform(self.min_scale, self.max_scale)
        h, w = image.shape[:2]
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        if (nh, nw) == (h, w):
            return image, mask
        return (
            cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR),
            cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST),
        )


class RandomCrop:
    """Crop (h, w) at a random place; smaller inputs are padded (image 0, mask 255 = ignore)."""

    def __init__(self, h: int, w: int):
        self.size = _size((h, w), "crop size")

    def __call__(self, image, mask, rng=None):
        rng = _rng(rng)
        ch, cw = self.size
        h, w = image.shape[:2]
        if h < ch or w < cw:
            bottom, right = max(ch - h, 0), max(cw - w, 0)
            image = cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            mask = cv2.copyMakeBorder(mask, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
            h, w = image.shape[:2]
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        return image[y : y + ch, x : x + cw], mask[y : y + ch, x : x + cw]


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, image, mask, rng=None):
        if _rng(rng).random() < self.p:
            return cv2.flip(image, 1), cv2.flip(mask, 1)  # contiguous, unlike [:, ::-1]
        return image, mask


class ColorJitter:
    """Random brightness, contrast and saturation gains in [1 - x, 1 + x]; image only."""

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0):
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= value < 1:
                raise FcnEdgeError(f"ColorJitter {name}={value} must be in [0, 1)")
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)

    def __call__(self, image, mask, rng=None):
        rng = _rng(rng)
        b, c, s = (rng.uniform(1 - x, 1 + x) for x in (self.brightness, self.contrast, self.saturation))
        x = image.astype(np.float32) * b
        gray = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
        x = gray[..., None] + (x - gray[..., None]) * s  # saturation: blend with grey
        x = x.mean() + (x - x.mean()) * c  # contrast: blend with the mean
        return np.clip(x, 0, 255).astype(np.uint8), mask


def train_transforms(
    crop_size: int | Sequence[int],
    scale: tuple[float, float] = (0.5, 2.0),
    jitter: float = 0.2,
) -> Compose:
    """The usual FCN recipe: random scale, pad-and-crop, flip, mild colour jitter."""
    h, w = _size(crop_size, "crop size")
    steps: list[Callable] = [RandomScale(*scale), RandomCrop(h, w), RandomHorizontalFlip(0.5)]
    if jitter:
        steps.append(ColorJitter(jitter, jitter, jitter))
    return Compose(steps)


def eval_transforms(size: int | Sequence[int] | None = None) -> Compose:
    """Evaluation: the image as it is (batch size 1), or resized to ``size`` to batch it."""
    return Compose([] if size is None else [Resize(*_size(size, "eval size"))])
