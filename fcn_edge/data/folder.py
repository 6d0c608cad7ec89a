"""A user's own data: a folder of images with same-named single-channel masks.

    root/images/<stem>.{jpg,jpeg,png,bmp}
    root/masks/<stem>.png        uint8 class ids 0..N-1, 255 = ignore
    root/classes.txt             one class name per line (unless ``classes`` is given)

The simplest layout that any labelling tool can export to; colours come from the default
palette so that overlays are stable without a config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import FcnEdgeError
from ..metadata import check_classes
from ..paths import IMAGE_EXTENSIONS
from .files import IGNORE_INDEX, check_mask, check_same_size, read_image, read_index_mask, require_dir
from .palette import default_palette

LAYOUT = "images/<name>.{jpg,jpeg,png,bmp}, masks/<name>.png (class ids, 255 = ignore) and classes.txt"


def read_classes(path: Path) -> list[str]:
    """Class names from a text file, one per line; blank lines are skipped."""
    if not path.is_file():
        raise FcnEdgeError(f"{path} not found: write one class name per line (class 0 first) or pass classes=")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not part of class 0's name
    except UnicodeDecodeError:
        raise FcnEdgeError(f"{path} is not UTF-8 text: save it as UTF-8, one class name per line") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise FcnEdgeError(f"{path} lists no classes: write one class name per line (class 0 first)")
    check_classes(names, str(path))
    return names


class ImageMaskFolder:
    """Pairs ``images/<stem>.*`` with ``masks/<stem>.png``, sorted by stem."""

    ignore_index = IGNORE_INDEX

    def __init__(self, root: str | Path, classes: Sequence[str] | None = None, transform: Callable | None = None):
        self.root = require_dir(Path(root), LAYOUT)
        self.transform = transform
        image_dir = require_dir(self.root / "images", LAYOUT)
        mask_dir = require_dir(self.root / "masks", LAYOUT)
        self.classes = list(classes) if classes is not None else read_classes(self.root / "classes.txt")
        if not 1 <= len(self.classes) <= 255:
            raise FcnEdgeError(f"{len(self.classes)} classes given: between 1 and 255 are supported (255 = ignore)")
        self.palette = default_palette(len(self.classes))
        self.samples: list[tuple[Path, Path]] = []
        seen: dict[str, Path] = {}
        for image_path in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
            if image_path.stem in seen:
                raise FcnEdgeError(
                    f"images {seen[image_path.stem]} and {image_path} share a name and masks match by name: rename one"
                )
            seen[image_path.stem] = image_path
            mask_path = mask_dir / f"{image_path.stem}.png"
            if not mask_path.is_file():
                raise FcnEdgeError(f"image {image_path} has no mask {mask_path}: add the mask or remove the image")
            self.samples.append((image_path, mask_path))
        if not self.samples:
            raise FcnEdgeError(f"no images in {image_dir}: expected {LAYOUT}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.samples[i]
        image = read_image(image_path)
        mask = check_mask(read_index_mask(mask_path), len(self.classes), mask_path)
        check_same_size(image, mask, image_path, mask_path)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask
