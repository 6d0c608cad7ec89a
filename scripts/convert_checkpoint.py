#!/usr/bin/env python3
"""Convert a checkpoint trained with deconv (transposed-conv) upsampling to resize + conv.

No labels needed: the resize convs are fitted to the deconvs by least squares, then the
whole model is distilled on unlabelled images (synthetic scenes, or --images DIR) against
the original. Prints the fit residual per upsampler, label agreement with the original
and, for models of the synthetic classes, both mIoUs on held-out synthetic scenes.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Iterable, Iterator

from fcn_edge.errors import exit_without_torch

# before anything imports torch: on a deploy-only install, one line naming the extra
exit_without_torch("scripts/convert_checkpoint.py")

import numpy as np
import torch
from torch import nn

from fcn_edge.checkpoint import load_checkpoint, save_checkpoint
from fcn_edge.data.files import read_image
from fcn_edge.paths import IMAGE_EXTENSIONS
from fcn_edge.data.synthetic import CLASSES, HELDOUT_SEED, TRAIN_SEED, SyntheticScenes
from fcn_edge.data.transforms import Compose, RandomCrop, RandomHorizontalFlip, train_transforms
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.models.convert import convert, resize_conv_config
from fcn_edge.models.upsample import RESIZE_MODES
from fcn_edge.models.preprocess import images_to_tensor
from fcn_edge.spec import Preprocess
from fcn_edge.train.loop import evaluate

HELD_OUT_EVERY = 10  # with --images, every 10th file measures agreement and is not distilled on


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint trained with --upsample deconv")
    p.add_argument("--output", type=Path, required=True, help="where to write the resize_conv checkpoint")
    p.add_argument("--resize-mode", default="bilinear", choices=list(RESIZE_MODES))
    p.add_argument("--steps", type=int, default=300, help="distillation steps (0: least-squares fit only)")
    p.add_argument("--images", type=Path, help="folder of unlabelled images to distil on (default: synthetic scenes)")
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                   help="synthetic scene size, or crop size for --images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="for the new upsampler convs; shared weights get lr/10")
    p.add_argument("--calibration", type=int, default=16, help="images whose upsampler inputs the fit uses")
    p.add_argument("--eval-length", type=int, default=200, help="held-out synthetic scenes for agreement and mIoU")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    for flag in ("steps", "batch_size", "calibration", "eval_length"):
        minimum = 0 if flag == "steps" else 1
        if getattr(args, flag) < minimum:
            raise FcnEdgeError(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be at least {minimum}")
    if args.output.resolve() == args.checkpoint.resolve():
        raise FcnEdgeError(f"--output {args.output} is the input checkpoint: write the converted model to a new file")
    return args


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


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FcnEdgeError(f"--images {folder} is not a folder: pass a folder of {', '.join(IMAGE_EXTENSIONS)} images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        kinds = ", ".join(IMAGE_EXTENSIONS)
        raise FcnEdgeError(f"--images {folder} holds no {kinds} images: add some or omit --images")
    return files


Sources = tuple[Iterable[torch.Tensor], Iterator[torch.Tensor], Iterable[torch.Tensor], str]


def folder_sources(args: argparse.Namespace, preprocess: Preprocess) -> Sources:
    """(calibration, training batches, evaluation batches, what they are) from a user's folder of images."""
    files = image_files(args.images)
    held = files[::HELD_OUT_EVERY] if len(files) >= HELD_OUT_EVERY else []
    train_files = [f for f in files if f not in held]
    crop = Compose([RandomCrop(*args.size), RandomHorizontalFlip()])

    def crops() -> Iterator[np.ndarray]:
        while True:
            for i in torch.randperm(len(train_files)).tolist():
                yield crop(read_image(train_files[i]), np.zeros(args.size, np.uint8))[0]

    calibration = FolderImages(train_files[: args.calibration], preprocess)
    evaluation = FolderImages(held or train_files, preprocess)
    where = f"{len(held)} held-out images of {args.images}" if held else f"the {len(files)} images of {args.images}"
    return calibration, batched(crops(), args.batch_size, preprocess), evaluation, where


def scenes(dataset: SyntheticScenes) -> Iterator[np.ndarray]:
    return (dataset[i][0] for i in range(len(dataset)))


def synthetic_sources(args: argparse.Namespace, preprocess: Preprocess) -> Sources:
    """(calibration, training batches, evaluation batches, what they are) from synthetic scenes; no labels used."""
    size = tuple(args.size)
    calibration_set = SyntheticScenes(args.calibration, TRAIN_SEED, size)
    train_seed = TRAIN_SEED + args.calibration
    train_set = SyntheticScenes(args.steps * args.batch_size, train_seed, size, train_transforms(size))
    eval_set = SyntheticScenes(args.eval_length, HELDOUT_SEED, size)
    calibration = list(batched(scenes(calibration_set), args.batch_size, preprocess))
    evaluation = list(batched(scenes(eval_set), args.batch_size, preprocess))
    where = f"{args.eval_length} held-out synthetic scenes"
    return calibration, batched(scenes(train_set), args.batch_size, preprocess), evaluation, where


def count_transposed(model: nn.Module) -> int:
    return sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules())


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.monotonic()
    source = load_checkpoint(args.checkpoint)
    config = resize_conv_config(source.config, args.resize_mode, source=str(args.checkpoint))
    teacher = source.build()
    sources = folder_sources if args.images else synthetic_sources
    calibration, train_batches, evaluation, where = sources(args, source.preprocess)
    student, report = convert(teacher, args.resize_mode, calibration, train_batches, evaluation, args.steps, args.lr)

    mious = {}
    if source.classes == CLASSES:
        heldout = SyntheticScenes(args.eval_length, HELDOUT_SEED, tuple(args.size))
        for name, model in (("teacher", teacher), ("student", student)):
            mious[name] = evaluate(model, heldout, source.preprocess, len(CLASSES), torch.device("cpu")).miou

    record = {
        "source": str(args.checkpoint),
        "source_sha256": source.sha256(),
        "resize_mode": args.resize_mode,
        "images": str(args.images) if args.images else "synthetic",
        "evaluated_on": where,
        **report.to_dict(),
        **{f"{name}_miou": value for name, value in mious.items()},
    }
    training = {"conversion": record, "source_training": {k: v for k, v in source.training.items() if k != "optimizer"}}
    save_checkpoint(args.output, student, config, source.classes, source.palette, source.preprocess, training)

    width = max(len(name) for name in report.residuals)
    print(f"{'upsampler':<{width}}  {'student':<30}  relative residual vs the deconv")
    for name, residual in report.residuals.items():
        kind = f"{args.resize_mode} resize + conv3, lstsq" if name in report.fitted else "fixed bilinear resize"
        print(f"{name:<{width}}  {kind:<30}  {residual:.4f}")
    print(f"label agreement with the original on {where}: {report.agreement_before:.4f} after the fit, "
          f"{report.agreement_after:.4f} after {args.steps} distillation steps ({report.loss})")
    if mious:
        delta = 100 * (mious["student"] - mious["teacher"])
        print(f"mIoU on {args.eval_length} held-out synthetic scenes: original {mious['teacher']:.4f}, "
              f"converted {mious['student']:.4f} ({delta:+.2f} points)")
    print(f"wrote {args.output} ({count_transposed(student)} ConvTranspose2d, resize {args.resize_mode}) "
          f"in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
