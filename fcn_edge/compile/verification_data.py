"""Which images a build calibrates and verifies on: the user's own labelled data wherever there is some.

Verification data, first that applies (the table and the sidecar say which, and why):
  1. ``--val-data NAME:ROOT`` (split ``--val-split``), or ``--val-data synthetic``;
  2. the dataset a checkpoint records it was trained on, when that folder exists here
     (synthetic scenes for one trained on them);
  3. synthetic scenes, for a model whose classes are the synthetic ones (our default model);
  4. the val split of ``--calib-data``'s dataset, when it has as many classes as the model;
  5. the calibration hold-out: unlabelled, so label agreement with FP32 only, no mIoU.
A labelled dataset gives FP32 and artifact mIoU on its images, at their own size (one at a
time, as ``fcn-edge evaluate`` does) or at the model's fixed input size, resized.

``--calib-data NAME:ROOT`` takes calibration frames from a dataset's train split instead of
the ``--calib-dir`` folder (fcn-edge build sets it to the dataset a checkpoint records
when neither is given): ``--calib-images`` of them, evenly spaced, with every
``HOLDOUT_EVERY``-th held out as in a folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..data import DATASETS, build_dataset
from ..data.record import recorded_val_split
from ..data.synthetic import CLASSES as SYNTHETIC_CLASSES
from ..errors import FcnEdgeError
from ..metadata import class_difference
from ..quantize import calibration
from . import verify
from .source import SourceModel

FORMS = "synthetic, voc:ROOT, cityscapes:ROOT or folder:ROOT"
STRIDE = 32  # foreign dynamic models see dataset images resized to multiples of this


@dataclass(frozen=True)
class DataSpec:
    name: str  # one of fcn_edge.data.DATASETS
    root: Path | None = None
    val_fraction: float | None = None  # a flat folder's train/val split (fcn_edge.data.splits)
    split_seed: int = 0

    def __str__(self) -> str:
        return self.name if self.root is None else f"{self.name}:{self.root}"

    def split_options(self) -> dict:
        return {"val_fraction": self.val_fraction, "split_seed": self.split_seed} if self.val_fraction is not None else {}


def parse_spec(text: str | None, flag: str, val_fraction: float | None = None, split_seed: int = 0) -> DataSpec | None:
    """'voc:/data/VOC2012' -> DataSpec; None stays None; a malformed value is a one-line error naming ``flag``.

    ``val_fraction``/``split_seed`` (--val-fraction, --split-seed) split a flat folder.
    """
    if text is None:
        return None
    name, _, root = text.partition(":")
    if name not in DATASETS:
        raise FcnEdgeError(f"{flag} {text!r}: unknown dataset {name!r}, write {FORMS}")
    if name == "synthetic":
        if root:
            raise FcnEdgeError(f"{flag} {text!r}: synthetic scenes need no folder, write {flag} synthetic")
        return DataSpec(name)
    if not root:
        raise FcnEdgeError(f"{flag} {text!r} names no folder: write {name}:ROOT, e.g. {name}:/data/{name}")
    return DataSpec(name, Path(root), val_fraction if name == "folder" else None, split_seed)


def open_split(spec: DataSpec, split: str, flag: str):
    """The dataset ``spec`` names, split ``split``; its own one-line errors name the folder, prefixed by ``flag``."""
    try:
        return build_dataset(spec.name, str(spec.root), split, **spec.split_options())
    except FcnEdgeError as error:
        raise FcnEdgeError(f"{flag} {spec} (split {split}): {error}") from None


def evenly_spaced(count: int, limit: int) -> list[int]:
    """``limit`` indices spread over ``range(count)`` (all of them when limit is 0 or at least count)."""
    if limit <= 0 or limit >= count:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, limit).round()})


def sample_files(dataset, index: int) -> tuple[Path, Path]:
    """(image, mask) files of a file-backed dataset's sample (VOC has ``paths``; Cityscapes and folders ``samples``)."""
    image, mask = dataset.paths(index) if hasattr(dataset, "paths") else dataset.samples[index]
    return Path(image), Path(mask)


def calibration_set(calib_dir: Path, calib_data: DataSpec | None, images: int) -> calibration.CalibrationSet:
    """The calibration folder, or ``images`` frames of ``calib_data``'s train split held out the same way."""
    if calib_data is None:
        return calibration.find_calibration_set(calib_dir)
    if calib_data.name == "synthetic":
        raise FcnEdgeError("--calib-data synthetic: synthetic calibration scenes are the default --calib-dir calibration/")
    dataset = open_split(calib_data, "train", "--calib-data")
    files = [sample_files(dataset, i)[0] for i in evenly_spaced(len(dataset), images)]
    if len(files) < 2:
        raise FcnEdgeError(f"--calib-data {calib_data} has {len(files)} training images: calibration needs at least 2")
    holdout = [p for i, p in enumerate(files) if i % calibration.HOLDOUT_EVERY == calibration.HOLDOUT_EVERY - 1]
    return calibration.CalibrationSet(calib_data.root, [p for p in files if p not in holdout], holdout)


def dataset_sha256(spec: DataSpec | None, split: str, images: int) -> str | None:
    """Hash of the labelled files (images and masks) a build would verify on (None for synthetic or none)."""
    if spec is None or spec.name == "synthetic":
        return None
    dataset = open_split(spec, split, "--val-data")
    files = [f for i in evenly_spaced(len(dataset), images) for f in sample_files(dataset, i)]
    return calibration.CalibrationSet(spec.root, files, []).sha256()


def verified_data_changed(sidecar: dict, images: int) -> bool:
    """Whether the dataset a built artifact was verified on (recorded in its sidecar) has changed since.

    --val-data is hashed into the build key up front; a dataset the build chose itself (the one
    the checkpoint was trained on, the val split of --calib-data) is known only once the source
    is read, so its hash is recorded with the result and checked here. A dataset no longer
    there cannot be compared: the artifact stands.
    """
    recorded = (sidecar.get("verification") or {}).get("images") or {}
    if recorded.get("kind") != "dataset" or not recorded.get("sha256"):
        return False
    spec = parse_spec(
        recorded["data"], "the recorded verification data", recorded.get("val_fraction"), recorded.get("split_seed") or 0
    )
    if spec.root is None or not spec.root.is_dir():
        return False
    try:
        return dataset_sha256(spec, recorded["split"], images) != recorded["sha256"]
    except FcnEdgeError:  # no longer a readable dataset of that kind
        return True


@dataclass
class VerificationChoice:
    """What a build verifies on, and why."""

    kind: str  # "dataset" | "synthetic" | "holdout"
    why: str
    data: DataSpec | None = None
    split: str | None = None
    resized: str = ""  # how dataset images were resized for the model, if they were (set by samples())

    def describe(self, samples: Sequence[verify.Sample], scenes: int) -> str:
        """The table header's account of the images, e.g. '20 labelled images of voc:/data val (--val-data)'."""
        holdout = [s for s in samples if s.mask is None]
        if self.kind == "dataset":
            resized = f", {self.resized}" if self.resized else ""
            return f"{len(samples)} labelled images of {self.data} {self.split} at {_sizes(samples)}{resized} ({self.why})"
        if self.kind == "synthetic":
            return (f"{scenes} held-out synthetic scenes {_sizes(samples[:scenes])} + {len(holdout)} calibration hold-out "
                    f"images ({self.why})")  # fmt: skip
        return f"{len(samples)} calibration hold-out images {_sizes(samples)}, unlabelled: agreement only ({self.why})"

    def record(self, samples: Sequence[verify.Sample], images: int) -> dict:
        """The sidecar's account; ``images``: the --val-images limit the samples were drawn with (for the hash)."""
        sha256 = dataset_sha256(self.data, self.split, images) if self.kind == "dataset" else None
        return {"kind": self.kind, "why": self.why, "data": str(self.data) if self.data else None, "split": self.split,
                "resized": self.resized or None, "images": [s.name for s in samples], "sha256": sha256,
                **(self.data.split_options() if self.data else {})}  # fmt: skip


def _sizes(samples: Sequence[verify.Sample]) -> str:
    sizes = sorted({s.frame.shape[:2] for s in samples}, key=lambda hw: hw[0] * hw[1])
    if not sizes:
        return "no size"
    text = [f"{h}x{w}" for h, w in sizes]
    return text[0] if len(text) == 1 else f"{len(text)} sizes {text[0]}..{text[-1]}"


def choose(source: SourceModel, val_data: DataSpec | None, val_split: str, calib_data: DataSpec | None) -> VerificationChoice:
    """The verification data by the rules in the module docstring."""
    if val_data is not None:
        return (
            VerificationChoice("synthetic", "--val-data synthetic")
            if val_data.name == "synthetic"
            else VerificationChoice("dataset", "--val-data", val_data, val_split)
        )
    note = "no labelled data for this model: pass --val-data for mIoU"
    trained = source.origin.get("trained_on") or {}
    if trained.get("dataset") == "synthetic":
        return VerificationChoice("synthetic", "the checkpoint was trained on them")
    if trained.get("root"):
        spec = DataSpec(trained["dataset"], Path(trained["root"]), trained.get("val_fraction"), trained.get("split_seed") or 0)
        if spec.root.is_dir():
            split, on_train = recorded_val_split(trained)
            why = "the run's training images: it had no val split" if on_train else "the dataset the checkpoint was trained on"
            return VerificationChoice("dataset", why, spec, split)
        note = f"the checkpoint's dataset {spec} is not here: pass --val-data for mIoU"
    elif source.classes == SYNTHETIC_CLASSES:
        return VerificationChoice("synthetic", "the model's classes are the synthetic scenes'")
    if calib_data is not None and calib_data.name != "synthetic":
        try:
            dataset = build_dataset(calib_data.name, str(calib_data.root), "val", **calib_data.split_options())
        except FcnEdgeError:
            dataset = None  # no val split beside the training one: fall through to the hold-out
        if dataset is not None and len(dataset.classes) == len(source.classes):
            return VerificationChoice("dataset", "the val split of --calib-data", calib_data, "val")
    return VerificationChoice("holdout", note)


def samples(plan: VerificationChoice, source: SourceModel, limit: int, scenes: int, size: tuple[int, int],
            holdout: Sequence[tuple[str, np.ndarray]]) -> list[verify.Sample]:  # fmt: skip
    """The verification samples ``plan`` names (``size``: synthetic scenes').

    Dataset images keep their own size for our models, which pad to their stride inside the
    graph; a model with a fixed input gets them resized to it, and any other foreign model
    to the nearest multiple of ``STRIDE`` per side (U-Nets fail on sizes their poolings cannot halve).
    """
    if plan.kind == "synthetic":
        _check_classes(SYNTHETIC_CLASSES, source, "synthetic scenes")
        return verify.verification_samples(scenes, size, holdout)
    if plan.kind == "holdout":
        if not holdout:
            raise FcnEdgeError(
                f"nothing to verify on: {plan.why}, and the calibration set has no hold-out images (every "
                f"{calibration.HOLDOUT_EVERY}th is one): add calibration images or pass --val-data"
            )
        return verify.verification_samples(0, size, holdout)
    dataset = open_split(plan.data, plan.split, "--val-data" if plan.why == "--val-data" else "verification data")
    _check_classes(dataset.classes, source, str(plan.data))
    found = []
    if source.fixed_size or source.metadata is None:
        plan.resized = "resized to the model's fixed input" if source.fixed_size else f"resized to multiples of {STRIDE}"
    for index in evenly_spaced(len(dataset), limit):
        image, mask = dataset[index]
        target = _target(source, image.shape[:2])
        if target and image.shape[:2] != tuple(target):
            shrinking = image.shape[0] > target[0] or image.shape[1] > target[1]
            image = cv2.resize(image, target[::-1], interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
            mask = cv2.resize(mask, target[::-1], interpolation=cv2.INTER_NEAREST)
        found.append(verify.Sample(f"{plan.data.name}:{plan.split}/{sample_files(dataset, index)[0].name}", image, mask))
    return found


def _target(source: SourceModel, shape: tuple[int, int]) -> tuple[int, int] | None:
    """The size a dataset image is resized to for ``source``, None to keep its own (see :func:`samples`)."""
    if source.fixed_size:
        return source.fixed_size
    return (
        None
        if source.metadata
        else (max(STRIDE, round(shape[0] / STRIDE) * STRIDE), max(STRIDE, round(shape[1] / STRIDE) * STRIDE))
    )


def _check_classes(classes: Sequence[str], source: SourceModel, data: str) -> None:
    """Ground truth only means something for the model's own classes: same names (ours) or the same count (foreign)."""
    same = list(classes) == list(source.classes) if source.metadata is not None else len(classes) == len(source.classes)
    if not same:
        raise FcnEdgeError(
            f"the model {class_difference(source.classes, list(classes), data)}: verify on the data the model is for (--val-data)"
        )
