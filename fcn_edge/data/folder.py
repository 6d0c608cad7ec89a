"""A user's own data: a folder of images with same-named single-channel masks.

    root/images/<stem>.{jpg,jpeg,png,bmp}
    root/masks/<stem>.png        uint8 class ids 0..N-1, 255 = ignore
    root/classes.txt             one class per line: ``name`` or ``name R G B`` (its overlay colour)

The simplest layout that any labelling tool can export to; classes without a colour take the
default palette's, so overlays are stable without a config file. Splits (``train/``, ``val/``
or a seeded fraction of a flat folder) are :mod:`.splits`' job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import FcnEdgeError
from ..media import image_files
from ..metadata import check_classes
from .files import IGNORE_INDEX, check_mask, check_same_size, read_image, read_index_mask, require_dir
from .palette import default_palette

LAYOUT = "images/<name>.{jpg,jpeg,png,bmp}, masks/<name>.png (class ids, 255 = ignore) and classes.txt"


CLASSES_FORMAT = "one class per line, class 0 first: a name, or a name and its colour as 'name R G B' (0-255)"


def read_classes(path: Path) -> list[str]:
    """Class names from a classes.txt (:func:`read_class_file`)."""
    return read_class_file(path)[0]


def read_class_file(path: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Names and RGB colours from a classes.txt; a line without a colour takes the default palette's."""
    if not path.is_file():
        raise FcnEdgeError(f"{path} not found: write it, {CLASSES_FORMAT}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not part of class 0's name
    except UnicodeDecodeError:
        raise FcnEdgeError(f"{path} is not UTF-8 text: save it as UTF-8, {CLASSES_FORMAT}") from None
    names, colours = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colour = _class_line(line.strip(), path, number)
        names.append(name)
        colours.append(colour)
    if not names:
        raise FcnEdgeError(f"{path} lists no classes: write {CLASSES_FORMAT}")
    check_classes(names, str(path))
    if not 1 <= len(names) <= 255:
        raise FcnEdgeError(f"{path} lists {len(names)} classes: between 1 and 255 are supported (255 = ignore)")
    default = default_palette(len(names))
    return names, [colour or default[i] for i, colour in enumerate(colours)]


def _class_line(line: str, path: Path, number: int) -> tuple[str, tuple[int, int, int] | None]:
    """'road 128 64 128' -> ('road', (128, 64, 128)); 'road' -> ('road', None); names may hold spaces."""
    words = line.split()
    if len(words) < 4 or not all(w.isdigit() for w in words[-3:]):
        return line, None
    colour = tuple(int(w) for w in words[-3:])
    if max(colour) > 255:
        raise FcnEdgeError(f"{path} line {number}: colour {' '.join(words[-3:])} is out of range: write R G B from 0 to 255")
    return " ".join(words[:-3]), colour  # type: ignore[return-value]


class ImageMaskFolder:
    """Pairs ``images/<stem>.*`` with ``masks/<stem>.png``, sorted by stem.

    ``classes_file``: the classes.txt to read (default ``root/classes.txt``); ``keep``: a test
    on the stem that picks this split's images out of a flat folder (:mod:`.splits`).
    """

    ignore_index = IGNORE_INDEX

    def __init__(self, root: str | Path, classes: Sequence[str] | None = None, transform: Callable | None = None,
                 classes_file: Path | None = None, keep: Callable[[str], bool] | None = None):  # fmt: skip
        self.root = require_dir(Path(root), LAYOUT)
        self.transform = transform
        image_dir = require_dir(self.root / "images", LAYOUT)
        mask_dir = require_dir(self.root / "masks", LAYOUT)
        if classes is not None:
            self.classes = list(classes)
            if not 1 <= len(self.classes) <= 255:
                raise FcnEdgeError(f"{len(self.classes)} classes given: between 1 and 255 are supported (255 = ignore)")
            self.palette = default_palette(len(self.classes))
        else:
            self.classes, self.palette = read_class_file(classes_file or self.root / "classes.txt")
        self.samples: list[tuple[Path, Path]] = []
        seen: dict[str, Path] = {}
        for image_path in image_files(image_dir, str(image_dir)):  # a FIFO named x.png: skipped, not a hang
            if keep is not None and not keep(image_path.stem):
                continue
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
