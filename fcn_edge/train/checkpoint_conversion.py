"""Checkpoint-level deconv -> resize+conv conversion: what to fit and distil on, then convert and save.

No labels are needed: the resize convs are fitted to the deconvs by least squares on a few
images, then the whole model is distilled on unlabelled images (synthetic scenes, or a
user's folder) against the original (:func:`fcn_edge.models.resize_conv.convert`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data.files import read_image
from ..data.synthetic import CLASSES, HELDOUT_SEED, TRAIN_SEED, SyntheticScenes
from ..data.transforms import Compose, RandomCrop, RandomHorizontalFlip, train_transforms
from ..errors import FcnEdgeError
from ..media import IMAGE_SUFFIXES, image_files
from ..spec import Preprocess
from ..models.preprocess import images_to_tensor
from ..models.resize_conv import ConversionReport, convert, resize_conv_config
from .loop import evaluate

HELD_OUT_EVERY = 10  # with a folder, every 10th file measures agreement and is not distilled on


def batched(images: Iterator[np.ndarray], size: int, preprocess: Preprocess) -> Iterator[torch.Tensor]:
    """Group uint8 BGR images into preprocessed NCHW batches."""
    while batch := list(itertools.islice(images, size)):
        yield images_to_tensor(preprocess, batch)


class FolderImages:
    """Batches of one image each, read and preprocessed again on every pass: nothing large stays in memory."""

    def __init__(self, files: list[Path], preprocess: Preprocess) -> None:
        self.files, self.preprocess = files, preprocess

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (images_to_tensor(self.preprocess, read_image(path)) for path in self.files)


def folder_images(folder: Path) -> list[Path]:
    """The --images folder's images; one line when it is not a folder or holds none."""
    if not folder.is_dir():
        raise FcnEdgeError(f"--images {folder} is not a folder: pass a folder of {', '.join(IMAGE_SUFFIXES)} images")
    files = image_files(folder, "--images")
    if not files:
        raise FcnEdgeError(f"--images {folder} holds no {', '.join(IMAGE_SUFFIXES)} images: add some or omit --images")
    return files


Sources = tuple[Iterable[torch.Tensor], Iterator[torch.Tensor], Iterable[torch.Tensor], str]


def folder_sources(
    folder: Path, size: tuple[int, int], batch_size: int, calibration_count: int, preprocess: Preprocess
) -> Sources:
    """(calibration, training batches, evaluation batches, what they are) from a user's folder of images."""
    files = folder_images(folder)
    held = files[::HELD_OUT_EVERY] if len(files) >= HELD_OUT_EVERY else []
    train_files = [f for f in files if f not in held]
    crop = Compose([RandomCrop(*size), RandomHorizontalFlip()])

    def crops() -> Iterator[np.ndarray]:
        while True:
            for i in torch.randperm(len(train_files)).tolist():
                yield crop(read_image(train_files[i]), np.zeros(size, np.uint8))[0]

    calibration = FolderImages(train_files[:calibration_count], preprocess)
    evaluation = FolderImages(held or train_files, preprocess)
    where = f"{len(held)} held-out images of {folder}" if held else f"the {len(files)} images of {folder}"
    return calibration, batched(crops(), batch_size, preprocess), evaluation, where


def scenes(dataset: SyntheticScenes) -> Iterator[np.ndarray]:
    return (dataset[i][0] for i in range(len(dataset)))


def synthetic_sources(
    size: tuple[int, int], batch_size: int, calibration_count: int, steps: int, eval_length: int, preprocess: Preprocess
) -> Sources:
    """(calibration, training batches, evaluation batches, what they are) from synthetic scenes; no labels used."""
    calibration_set = SyntheticScenes(calibration_count, TRAIN_SEED, size)
    train_seed = TRAIN_SEED + calibration_count
    train_set = SyntheticScenes(steps * batch_size, train_seed, size, train_transforms(size))
    eval_set = SyntheticScenes(eval_length, HELDOUT_SEED, size)
    calibration = list(batched(scenes(calibration_set), batch_size, preprocess))
    evaluation = list(batched(scenes(eval_set), batch_size, preprocess))
    where = f"{eval_length} held-out synthetic scenes"
    return calibration, batched(scenes(train_set), batch_size, preprocess), evaluation, where


def count_transposed(model: nn.Module) -> int:
    return sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules())


@dataclass
class Converted:
    model: nn.Module
    report: ConversionReport
    where: str  # what agreement was measured on
    mious: dict[str, float]  # "teacher"/"student" on held-out synthetic scenes, for models of the synthetic classes


def convert_checkpoint(
    checkpoint: Path,
    output: Path,
    resize_mode: str = "bilinear",
    steps: int = 300,
    images: Path | None = None,
    size: tuple[int, int] = (128, 128),
    batch_size: int = 8,
    lr: float = 1e-3,
    calibration_count: int = 16,
    eval_length: int = 200,
) -> Converted:
    """Convert ``checkpoint`` and write the resize_conv checkpoint to ``output`` (atomically)."""
    source = load_checkpoint(checkpoint)
    config = resize_conv_config(source.config, resize_mode, source=str(checkpoint))
    teacher = source.build()
    if images is not None:
        sources = folder_sources(images, size, batch_size, calibration_count, source.preprocess)
    else:
        sources = synthetic_sources(size, batch_size, calibration_count, steps, eval_length, source.preprocess)
    calibration, train_batches, evaluation, where = sources
    student, report = convert(teacher, resize_mode, calibration, train_batches, evaluation, steps, lr)

    mious = {}
    if source.classes == CLASSES:
        heldout = SyntheticScenes(eval_length, HELDOUT_SEED, size)
        for name, model in (("teacher", teacher), ("student", student)):
            mious[name] = evaluate(model, heldout, source.preprocess, len(CLASSES), torch.device("cpu")).miou

    record = {
        "source": str(checkpoint),
        "source_sha256": source.sha256(),
        "resize_mode": resize_mode,
        "images": str(images) if images else "synthetic",
        "evaluated_on": where,
        **report.to_dict(),
        **{f"{name}_miou": value for name, value in mious.items()},
    }
    training = {"conversion": record, "source_training": {k: v for k, v in source.training.items() if k != "optimizer"}}
    save_checkpoint(output, student, config, source.classes, source.palette, source.preprocess, training)

    return Converted(student, report, where, mious)
