"""Datasets for training and evaluation, all with one contract.

``dataset[i]`` is ``(image, mask)``: ``image`` HxWx3 uint8 **BGR** (as OpenCV reads it),
``mask`` HxW uint8 class ids with 255 = ignore. Each dataset has ``classes``, ``palette``
(RGB per class) and ``ignore_index``; an optional ``transform(image, mask)`` runs last.
Datasets never normalise or make tensors (:mod:`fcn_edge.spec` describes that, once) and never
import torch: a DataLoader takes any such sequence, and the compile stage verifies on the
same datasets on boxes without torch.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from ..errors import FcnEdgeError
from .cityscapes import Cityscapes
from .folder import ImageMaskFolder
from .splits import open_folder
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
    ``folder`` takes ``root/<split>/`` when root has train/ and val/, else a flat ``root`` split
    by ``val_fraction`` (and ``split_seed``), or all of it without one (:mod:`.splits`); it
    accepts ``classes`` (else it reads classes.txt).
    """
    if name == "synthetic":
        if split not in SYNTHETIC_SPLITS:
            raise FcnEdgeError(f"synthetic split {split!r} is unknown: choose one of {', '.join(SYNTHETIC_SPLITS)}")
        seed, default_length = SYNTHETIC_SPLITS[split]
        length = int(kw.get("length", default_length))
        if seed == TRAIN_SEED and length > HELDOUT_SEED - TRAIN_SEED:
            raise FcnEdgeError(f"synthetic train length {length} would reach the held-out seeds: use at most {HELDOUT_SEED}")
        return SyntheticScenes(length, seed=seed, size=tuple(kw.get("size", (128, 128))), transform=transform)
    if name not in DATASETS:
        raise FcnEdgeError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if not root:
        raise FcnEdgeError(f"dataset {name!r} needs a data root folder (e.g. --data-root /path/to/{name})")
    if kw.get("val_fraction") is not None and name != "folder":
        raise FcnEdgeError(f"--val-fraction splits a flat folder (--dataset folder); {name} has its own splits: leave it out")
    if name == "voc":
        return VOCSegmentation(root, split=split, transform=transform)
    if name == "cityscapes":
        return Cityscapes(root, split=split, transform=transform)
    return open_folder(root, split, transform, kw.get("classes"), kw.get("val_fraction"), int(kw.get("split_seed") or 0))
