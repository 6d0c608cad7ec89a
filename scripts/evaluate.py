#!/usr/bin/env python3
"""Evaluate a checkpoint on a dataset: per-class IoU table, mIoU and pixel accuracy.

Every image is scored at its own full size, one at a time (see fcn_edge.train.loop.evaluate).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fcn_edge.errors import exit_without_torch

# before anything imports torch: on a deploy-only install, one line naming the extra
exit_without_torch("scripts/evaluate.py")

import torch

from fcn_edge.checkpoint import load_checkpoint
from fcn_edge.cli import size_hw
from fcn_edge.data import build_dataset
from fcn_edge.data.transforms import eval_transforms
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.paths import DEFAULT_CHECKPOINT
from fcn_edge.train.loop import evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "voc", "cityscapes", "folder"])
    p.add_argument("--data-root", type=Path)
    p.add_argument("--split", default="val")
    p.add_argument("--length", type=int, default=200, help="held-out synthetic scenes")
    p.add_argument("--scene-size", type=size_hw, default=(160, 160), metavar="HxW")
    p.add_argument("--threads", type=int)
    return p.parse_args(argv)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for flag in ("length", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise FcnEdgeError(f"--{flag} {value} is out of range: use at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    synthetic = args.dataset == "synthetic"
    extra = {"length": args.length, "size": tuple(args.scene_size)} if synthetic else {}
    dataset = build_dataset(args.dataset, args.data_root, args.split, eval_transforms(), **extra)
    if list(dataset.classes) != checkpoint.classes:
        raise FcnEdgeError(
            f"{args.checkpoint} was trained on classes {checkpoint.classes[:4]}... but the {args.dataset} dataset "
            f"has {list(dataset.classes)[:4]}...: evaluate on the dataset it was trained for"
        )
    scores = evaluate(checkpoint.build(), dataset, checkpoint.preprocess, len(checkpoint.classes), torch.device("cpu"))
    print(f"{args.checkpoint} on {args.dataset}/{args.split} ({len(dataset)} images)")
    print(scores.table(checkpoint.classes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
