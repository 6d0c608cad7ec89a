"""Train and val splits of a user's folder, so that "val" never means the training images.

Two layouts (one ``classes.txt`` at the root serves both splits)::

    root/classes.txt                     root/classes.txt
    root/train/images/, masks/           root/images/, masks/      + --val-fraction F
    root/val/images/, masks/

The flat folder is split by a seeded hash of each file name: the same images land in the same
split on every machine and in every stage (train, evaluate, build), and adding images never
moves an old one across. A flat folder without a fraction has no val split at all.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

from ..errors import FcnEdgeError
from .folder import ImageMaskFolder

SPLITS = ("train", "val")
SPLIT_LAYOUT = "split"  # root/train/, root/val/
FRACTION_LAYOUT = "fraction"  # a flat folder split by --val-fraction
FLAT_LAYOUT = "flat"  # a flat folder, one set of images: no val split


def layout(root: Path) -> str:
    """Which layout ``root`` holds: train/ and val/ folders, or a flat images/ folder."""
    return SPLIT_LAYOUT if (root / "train" / "images").is_dir() else FLAT_LAYOUT


def in_val(stem: str, fraction: float, seed: int) -> bool:
    """Whether the image named ``stem`` is in the val part of a flat folder split at ``fraction``."""
    digest = hashlib.sha256(f"{seed}:{stem}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def check_fraction(fraction: float | None) -> None:
    if fraction is not None and not 0 < fraction < 1:
        raise FcnEdgeError(f"--val-fraction {fraction:g} is out of range: use a fraction between 0 and 1, e.g. 0.2")


def open_folder(root: str | Path, split: str, transform: Callable | None = None, classes: Sequence[str] | None = None,
                val_fraction: float | None = None, seed: int = 0) -> ImageMaskFolder:  # fmt: skip
    """Split ``split`` of the folder dataset at ``root`` (see the module docstring).

    A flat folder without ``val_fraction`` is one set: every split name gives all of it, and it
    is the caller's job (train.py's --val-on-train) to say so rather than call it "val".
    """
    check_fraction(val_fraction)
    root = Path(root)
    if layout(root) == SPLIT_LAYOUT:
        if val_fraction is not None:
            raise FcnEdgeError(
                f"--val-fraction {val_fraction:g}: {root} is already split into train/ and val/; leave the flag out"
            )
        folder = root / split
        if not (folder / "images").is_dir():
            raise FcnEdgeError(f"{root} has train/ but no {split}/images/: add {split}/images and {split}/masks "
                               f"(or pass --val-fraction with a flat folder)")  # fmt: skip
        classes_file = root / "classes.txt" if (root / "classes.txt").is_file() else folder / "classes.txt"
        return ImageMaskFolder(folder, classes=classes, transform=transform, classes_file=classes_file)
    if val_fraction is None:
        return ImageMaskFolder(root, classes=classes, transform=transform)
    if split not in SPLITS:
        raise FcnEdgeError(f"split {split!r} of {root} (--val-fraction {val_fraction:g}): choose {' or '.join(SPLITS)} (--split)")
    want_val = split == "val"
    try:
        return ImageMaskFolder(root, classes=classes, transform=transform,
                               keep=lambda stem: in_val(stem, val_fraction, seed) == want_val)  # fmt: skip
    except FcnEdgeError as error:
        if "no images in" not in str(error) or not (root / "images").is_dir():
            raise
        raise FcnEdgeError(
            f"--val-fraction {val_fraction:g} leaves no {split} images in {root / 'images'}: "
            f"{'raise' if want_val else 'lower'} it, or try another --split-seed"
        ) from None
