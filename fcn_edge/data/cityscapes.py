"""Cityscapes fine annotations, mapped to the 19 classes everyone trains and reports on.

    root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    root/gtFine/<split>/<city>/<name>_gtFine_labelIds.png

The labelIds files hold the 34 raw ids; a 256-entry table maps the 19 evaluated ones to
train ids 0..18 and everything else (void, license plate, rare classes) to 255 = ignore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FcnEdgeError
from .files import IGNORE_INDEX, check_same_size, read_image, read_index_mask, require_dir

CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip
PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip

# labelId of each train id, in train-id order (road = labelId 7 -> train id 0, ...).
LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
MAX_LABEL_ID = 33


def _label_to_train_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[LABEL_IDS] = np.arange(len(LABEL_IDS), dtype=np.uint8)
    return lut


LABEL_TO_TRAIN = _label_to_train_lut()

LAYOUT = "a Cityscapes tree with leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_labelIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes:
    """Cityscapes ``split`` ("train", "val"; "test" has no public labels)."""

    classes = CLASSES
    palette = PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        self.root = require_dir(Path(root), LAYOUT)
        self.transform = transform
        image_dir = require_dir(self.root / "leftImg8bit" / split, LAYOUT)
        mask_dir = require_dir(self.root / "gtFine" / split, LAYOUT)
        self.samples: list[tuple[Path, Path]] = []
        for image_path in sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}")):
            stem = image_path.name[: -len(IMAGE_SUFFIX)]
            mask_path = mask_dir / image_path.parent.name / f"{stem}{MASK_SUFFIX}"
            if not mask_path.is_file():
                raise FcnEdgeError(
                    f"image {image_path} has no label file {mask_path}: unpack gtFine_trainvaltest.zip into {self.root}"
                )
            self.samples.append((image_path, mask_path))
        if not self.samples:
            raise FcnEdgeError(f"no *{IMAGE_SUFFIX} images under {image_dir}: expected {LAYOUT}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.samples[i]
        image = read_image(image_path)
        label_ids = read_index_mask(mask_path)
        if label_ids.max() > MAX_LABEL_ID:
            bad = ", ".join(str(v) for v in np.unique(label_ids[label_ids > MAX_LABEL_ID])[:20])
            raise FcnEdgeError(
                f"mask {mask_path} has label values {bad} that are not Cityscapes labelIds (0..{MAX_LABEL_ID}): "
                f"use the *{MASK_SUFFIX} files"
            )
        mask = LABEL_TO_TRAIN[label_ids]
        check_same_size(image, mask, image_path, mask_path)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask
