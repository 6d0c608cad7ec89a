"""Datasets for training and evaluation, all with one contract.

``dataset[i]`` is ``(image, mask)``: ``image`` HxWx3 uint8 **BGR** (as OpenCV reads it),
``mask`` HxW uint8 class ids with 255 = ignore. Each dataset has ``classes``, ``palette``
(RGB per class) and ``ignore_index``; an optional ``transform(image, mask)`` runs last.
Datasets never normalise or make tensors (:mod:`fcn_edge.spec` describes that, once) and never
import torch: a DataLoader takes any such sequence, and the compile stage verifies on the
same datasets on boxes without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import FcnEdgeError
from .cityscapes import Cityscapes
from .folder import ImageMaskFolder
from .synthetic import HELDOUT_SEED, TRAIN_SEED, SyntheticScenes
from .voc import VOCSegmentation

DATASETS = ("synthetic", "voc", "cityscapes", "folder")
SYNTHETIC_SPLITS = {"train": (TRAIN_SEED, 2000), "val": (HELDOUT_SEED, 200), "heldout": (HELDOUT_SEED, 200)}



class SegmentationDataset(Protocol):
    classes: list[str]
    palette: list[tuple[int, int, int]]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...


__all__ = [
    "DATASETS", "SegmentationDataset", "Cityscapes", "ImageMaskFolder", "SyntheticScenes", "VOCSegmentation", "build_dataset",
]  # fmt: skip


def build_dataset(name: str, root: str | None, split: str, transform: Callable | None = None, **kw: Any) -> SegmentationDataset:
    """Make a dataset by name, as the scripts' ``--dataset/--data-root/--split`` flags say.

    ``synthetic`` needs no root: split "train" is scenes from ``TRAIN_SEED`` (``length``
    2000 by default), "val"/"heldout" from ``HELDOUT_SEED`` (200); ``size`` is (H, W).
    ``folder`` uses ``root/<split>/`` when that holds an ``images/`` folder, else ``root``
    itself; it accepts ``classes`` (else it reads classes.txt).
    """
    if name == "synthetic":
        if split not in SYNTHETIC_SPLITS:
            raise FcnEdgeError(f"synthetic split {split!r} is unknown: choose one of {', '.join(SYNTHETIC_SPLITS)}")
        seed, default_length = SYNTHETIC_SPLITS[split]
        length = int(kw.get("length", default_length))
        if seed == TRAIN_SEED and length > HELDOUT_SEED - TRAIN_SEED:
            raise FcnEdgeError(
                f"synthetic train length {length} would reach the held-out seeds: use at most {HELDOUT_SEED}"
            )
        return SyntheticScenes(length, seed=seed, size=tuple(kw.get("size", (128, 128))), transform=transform)
    if name not in DATASETS:
        raise FcnEdgeError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if not root:
        raise FcnEdgeError(f"dataset {name!r} needs a data root folder (e.g. --data-root /path/to/{name})")
    if name == "voc":
        return VOCSegmentation(root, split=split, transform=transform)
    if name == "cityscapes":
        return Cityscapes(root, split=split, transform=transform)
    split_root = Path(root) / split
    folder_root = split_root if (split_root / "images").is_dir() else Path(root)
    return ImageMaskFolder(folder_root, classes=kw.get("classes"), transform=transform)
