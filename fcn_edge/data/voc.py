"""Pascal VOC 2012 segmentation, read straight from the layout the archive unpacks to.

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png      palette PNG (index 255 = ignore, the object borders)
    root/ImageSets/Segmentation/<split>.txt

OpenCV has no way to read a PNG palette index: it expands palette PNGs to colours. The
VOC palette is the bit-interleaving colour map, which is invertible, so colours are turned
back into class ids exactly (see :func:`fcn_edge.data.palette.voc_colors_to_index`).
Masks already converted to single-channel ids are accepted too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FcnEdgeError
from .files import IGNORE_INDEX, check_mask, check_same_size, read_image, read_label_png, require_dir
from .palette import default_palette, voc_colors_to_index

CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
PALETTE = default_palette(len(CLASSES))

LAYOUT = "a Pascal VOC 2012 tree with JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/<split>.txt"


class VOCSegmentation:
    """VOC 2012 ``split`` ("train", "val", "trainval" or any list in ImageSets/Segmentation)."""

    classes = CLASSES
    palette = PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        self.root = require_dir(Path(root), LAYOUT)
        self.transform = transform
        require_dir(self.root / "JPEGImages", LAYOUT)
        require_dir(self.root / "SegmentationClass", LAYOUT)
        list_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise FcnEdgeError(f"split list {list_file} not found: expected {LAYOUT} (split {split!r})")
        self.ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise FcnEdgeError(f"split list {list_file} is empty: it should list one image id per line")

    def __len__(self) -> int:
        return len(self.ids)

    def paths(self, i: int) -> tuple[Path, Path]:
        image_id = self.ids[i]
        return self.root / "JPEGImages" / f"{image_id}.jpg", self.root / "SegmentationClass" / f"{image_id}.png"

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.paths(i)
        image = read_image(image_path)
        mask = self.decode_mask(read_label_png(mask_path), mask_path)
        check_same_size(image, mask, image_path, mask_path)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    @staticmethod
    def decode_mask(raw: np.ndarray, path: Path) -> np.ndarray:
        """Palette colours (or single-channel ids) -> uint8 class ids with 255 = ignore."""
        if raw.ndim == 2:
            return check_mask(raw, len(CLASSES), path)
        mask, bad = voc_colors_to_index(raw)
        if bad.any():
            colours = np.unique(raw[bad][:, ::-1], axis=0)[:5]
            listed = ", ".join(f"RGB{tuple(int(c) for c in rgb)}" for rgb in colours)
            raise FcnEdgeError(
                f"mask {path} has colours {listed} that are not in the VOC palette: "
                "use the original SegmentationClass PNGs (not re-encoded or JPEG masks)"
            )
        return check_mask(mask, len(CLASSES), path)
