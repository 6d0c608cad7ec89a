"""Evaluate a checkpoint on a dataset: per-class IoU, boundary F-score and boundary IoU, mIoU and pixel accuracy.

Every image is scored at its own full size, one at a time (see fcn_edge.train.loop.evaluate).
--scales/--flip (multi-scale inference), --refine (the guided filter the exported graph runs)
and --crf (an offline dense CRF) show what each does to the edges (docs/boundaries.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fcn_edge.errors import exit_without_torch, quiet_interrupt_while_importing

# before anything imports torch: on a deploy-only install, one line naming the extra
quiet_interrupt_while_importing()  # and Ctrl-C while they load: one line, exit 130
exit_without_torch("fcn-edge evaluate")

import torch

from fcn_edge.boundary import DEFAULT_TOLERANCE, BoundaryCounts
from fcn_edge.checkpoint import load_checkpoint
from fcn_edge.cli import positive_int, size_hw
from fcn_edge.data import build_dataset
from fcn_edge.data.transforms import eval_transforms
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.metadata import class_difference
from fcn_edge.models.edges import EdgeOptions, guided_arg, scales_arg
from fcn_edge.paths import DEFAULT_CHECKPOINT
from fcn_edge.train.loop import evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge evaluate", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "voc", "cityscapes", "folder"])
    p.add_argument("--data-root", type=Path)
    p.add_argument("--split", default="val")
    p.add_argument("--length", type=int, default=200, help="held-out synthetic scenes")
    p.add_argument("--scene-size", type=size_hw, default=(160, 160), metavar="HxW")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--scales", type=scales_arg, default=(1.0,), help="multi-scale inference, e.g. 0.75,1,1.25")
    p.add_argument("--flip", action="store_true", help="also average the mirrored frame at every scale")
    p.add_argument("--refine", help="guided filter RADIUS,EPS[,SUBSAMPLE] as exported with --refine, or 'search': "
                                    "score a grid on this split and print the best first")
    p.add_argument("--crf", action="store_true", help="dense CRF after the model (offline; needs pydensecrf2)")
    p.add_argument("--boundary-tolerance", type=int, default=DEFAULT_TOLERANCE, help="px, for boundary F and IoU")
    return p.parse_args(argv)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for flag in ("length", "threads", "boundary_tolerance"):
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
        raise FcnEdgeError(f"{args.checkpoint} {class_difference(checkpoint.classes, list(dataset.classes), f'the {args.dataset} dataset')}: "
                           "evaluate on the dataset it was trained for")
    model = EdgeOptions(tuple(args.scales), args.flip).wrap(checkpoint.build().eval())
    if args.refine == "search":
        from fcn_edge.train.refine_search import search

        print(f"guided filter on {args.dataset}/{args.split} ({len(dataset)} images), best boundary IoU first")
        for t in search(model, dataset, checkpoint.preprocess, len(checkpoint.classes)):
            p = t.params
            print(f"  --refine {p.radius},{p.eps:g},{p.subsample}  mIoU {t.miou:.4f}  boundary F {t.boundary_f:.4f}"
                  f"  boundary IoU {t.boundary_iou:.4f}")
        return 0
    if args.refine:
        model = EdgeOptions(refine=_guided(args.refine)).wrap(model)
    post = None
    if args.crf:
        from fcn_edge.crf import dense_crf as post
    counts = BoundaryCounts(len(checkpoint.classes), args.boundary_tolerance)
    scores = evaluate(model, dataset, checkpoint.preprocess, len(checkpoint.classes), torch.device("cpu"),
                      boundary=counts, post=post)
    print(f"{args.checkpoint} on {args.dataset}/{args.split} ({len(dataset)} images)")
    print(scores.table(checkpoint.classes))
    print(counts.scores().table(checkpoint.classes))
    return 0


def _guided(text: str):
    try:
        return guided_arg(text)
    except argparse.ArgumentTypeError as e:
        raise FcnEdgeError(f"--refine {e}") from None


if __name__ == "__main__":
    raise SystemExit(main())
