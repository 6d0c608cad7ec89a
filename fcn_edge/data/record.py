"""The dataset record a checkpoint keeps: evaluate and build open the same splits training used.

A record is plain JSON-able data: ``dataset``, ``root`` (absolute), ``layout``, ``train_split``,
``val_split`` (``"train"`` when the run validated on its training images, ``val_on_train``),
``val_fraction`` and ``split_seed`` (a flat folder's split), ``classes`` and ``colors`` (RGB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .splits import FLAT_LAYOUT, FRACTION_LAYOUT, layout


def make_record(dataset: str, root: Path | None, val_fraction: float | None, split_seed: int, val_on_train: bool,
                classes: Sequence[str], palette: Sequence[Sequence[int]]) -> dict[str, Any]:  # fmt: skip
    if dataset != "folder":
        shape = dataset  # synthetic seeds, VOC's and Cityscapes' own split lists
    elif root is not None and val_fraction is not None:
        shape = FRACTION_LAYOUT
    else:
        shape = layout(Path(root)) if root is not None else FLAT_LAYOUT
    return {
        "dataset": dataset, "root": str(Path(root).resolve()) if root is not None else None, "layout": shape,
        "train_split": "train", "val_split": "train" if val_on_train else "val", "val_on_train": val_on_train,
        "val_fraction": val_fraction, "split_seed": split_seed,
        "classes": list(classes), "colors": [list(map(int, c)) for c in palette],
    }  # fmt: skip


def describe(record: dict[str, Any]) -> str:
    """'folder:/data/parts (train/ and val/)', for the one line each stage prints about its data."""
    name = record.get("dataset") or "?"
    text = name if not record.get("root") else f"{name}:{record['root']}"
    shape = record.get("layout")
    if shape == FRACTION_LAYOUT:
        return f"{text} (flat, --val-fraction {record['val_fraction']:g} --split-seed {record.get('split_seed') or 0})"
    if shape == FLAT_LAYOUT:
        return f"{text} (flat, no val split)"
    if shape == "split":
        return f"{text} (train/ and val/)"
    return text


def recorded_val_split(record: dict[str, Any]) -> tuple[str, bool]:
    """(split to score on, whether it is the run's training images): a flat folder's only split is its training one."""
    if record.get("val_on_train"):
        return "train", True
    root = record.get("root")
    if record.get("dataset") == "folder" and record.get("val_fraction") is None and root and layout(Path(root)) == FLAT_LAYOUT:
        return "train", True  # written before the split existed: "val" was the training images
    return record.get("val_split") or "val", False


def split_options(record: dict[str, Any]) -> dict[str, Any]:
    """The build_dataset keywords that reproduce the record's splits."""
    return {"val_fraction": record.get("val_fraction"), "split_seed": record.get("split_seed") or 0}
