"""Evaluate a checkpoint on a dataset: per-class IoU, boundary F-score and boundary IoU, mIoU and pixel accuracy.

Every image is scored at its own full size, one at a time (see fcn_edge.train.loop.evaluate).
--scales/--flip (multi-scale inference), --refine (the guided filter the exported graph runs)
and --crf (an offline dense CRF) show what each does to the edges (docs/boundaries.md).

By default it scores the val split of the dataset the checkpoint records it was trained on
(--dataset, --data-root, --split override), and writes a sheet of predictions beside ground
truth and the run's loss/mIoU plot to runs/evaluate/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fcn_edge.boundary import DEFAULT_TOLERANCE, BoundaryCounts
from fcn_edge.checkpoint import load_checkpoint
from fcn_edge.cli import HelpFormatter, finite_float, nonempty_path, positive_int, size_hw
from fcn_edge.data import DATASETS, build_dataset
from fcn_edge.data.record import describe, recorded_val_split
from fcn_edge.data.splits import FLAT_LAYOUT, layout
from fcn_edge.data.transforms import eval_transforms
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.metadata import class_difference
from fcn_edge.models.edges import EdgeOptions, guided_arg, scales_arg
from fcn_edge.paths import DEFAULT_CHECKPOINT
from fcn_edge.train.loop import evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge evaluate", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", type=nonempty_path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--dataset", choices=DATASETS, help="default: the dataset the checkpoint records (else synthetic)")
    p.add_argument("--data-root", type=nonempty_path, help="default: the checkpoint's dataset folder")
    p.add_argument("--split", help="default: the checkpoint's val split")
    p.add_argument(
        "--val-fraction", type=finite_float, metavar="F", help="a flat folder's val fraction (default: the checkpoint's)"
    )
    p.add_argument("--split-seed", type=int, help="seed of the --val-fraction split (default: the checkpoint's, else 0)")
    p.add_argument(
        "--plots",
        type=nonempty_path,
        default=Path("runs/evaluate"),
        help="folder for <run>.predictions.png (and <run>.results.png, the run's loss and mIoU per epoch)",
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--length", type=int, default=200, help="held-out synthetic scenes")
    p.add_argument("--scene-size", type=size_hw, default=(160, 160), metavar="HxW")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--scales", type=scales_arg, default=(1.0,), help="multi-scale inference, e.g. 0.75,1,1.25")
    p.add_argument("--flip", action="store_true", help="also average the mirrored frame at every scale")
    p.add_argument(
        "--refine",
        help="guided filter RADIUS,EPS[,SUBSAMPLE] as exported with --refine, or 'search': "
        "score a grid on this split and print the best first",
    )
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
    dataset, where = open_data(args, checkpoint.training.get("data") or {})
    print(where)
    if list(dataset.classes) != checkpoint.classes:
        raise FcnEdgeError(
            f"{args.checkpoint} {class_difference(checkpoint.classes, list(dataset.classes), f'the {args.dataset} dataset')}: "
            "evaluate on the dataset it was trained for (--dataset, --data-root)"
        )
    model = EdgeOptions(tuple(args.scales), args.flip).wrap(checkpoint.build().eval())
    if args.refine == "search":
        from fcn_edge.train.refine_search import search

        print(f"guided filter on {args.dataset}/{args.split} ({len(dataset)} images), best boundary IoU first")
        for t in search(model, dataset, checkpoint.preprocess, len(checkpoint.classes)):
            p = t.params
            print(
                f"  --refine {p.radius},{p.eps:g},{p.subsample}  mIoU {t.miou:.4f}  boundary F {t.boundary_f:.4f}"
                f"  boundary IoU {t.boundary_iou:.4f}"
            )
        return 0
    if args.refine:
        model = EdgeOptions(refine=_guided(args.refine)).wrap(model)
    post = None
    if args.crf:
        from fcn_edge.crf import dense_crf as post
    counts = BoundaryCounts(len(checkpoint.classes), args.boundary_tolerance)
    scores = evaluate(
        model, dataset, checkpoint.preprocess, len(checkpoint.classes), torch.device("cpu"), boundary=counts, post=post
    )
    print(f"{args.checkpoint} on {args.dataset}/{args.split} ({len(dataset)} images)")
    print(scores.table(checkpoint.classes))
    print(counts.scores().table(checkpoint.classes))
    if not args.no_plots:
        write_plots(args, checkpoint, model, dataset)
    return 0


def open_data(args: argparse.Namespace, record: dict) -> tuple[object, str]:
    """The dataset to score and one line saying which and why: the checkpoint's record, or the flags."""
    same_root = args.data_root is None or (record.get("root") and args.data_root.resolve() == Path(record["root"]))
    recorded = bool(record.get("dataset")) and args.dataset in (None, record["dataset"]) and same_root
    if recorded:
        args.dataset = record["dataset"]
        args.data_root = Path(record["root"]) if record.get("root") else None
        if args.data_root is not None and not args.data_root.is_dir():
            raise FcnEdgeError(
                f"{args.checkpoint} was trained on {describe(record)}, which is not here: pass --dataset and --data-root"
            )
        split, on_train = recorded_val_split(record)
        args.split = args.split or split
        if args.val_fraction is None:
            args.val_fraction = record.get("val_fraction")
        if args.split_seed is None:
            args.split_seed = record.get("split_seed") or 0
        why = "the dataset the checkpoint records; --dataset, --data-root, --split override"
        source = describe(record)
    else:
        args.dataset = args.dataset or "synthetic"
        args.split = args.split or "val"
        why = "--dataset" if args.dataset != "synthetic" or record else "the checkpoint records no dataset"
        source = args.dataset if args.data_root is None else f"{args.dataset}:{args.data_root}"
    extra = ({"length": args.length, "size": tuple(args.scene_size)} if args.dataset == "synthetic"
             else {"val_fraction": args.val_fraction, "split_seed": args.split_seed or 0})  # fmt: skip
    try:
        dataset = build_dataset(args.dataset, args.data_root, args.split, eval_transforms(), **extra)
    except FcnEdgeError as error:
        flags = (
            f"--dataset {args.dataset}" + (f" --data-root {args.data_root}" if args.data_root else "") + f" --split {args.split}"
        )
        raise FcnEdgeError(f"{flags}{' (from the checkpoint)' if recorded else ''}: {error}") from None
    if args.dataset == "folder" and args.val_fraction is None and layout(args.data_root) == FLAT_LAYOUT:
        args.split = "all"  # a flat folder has no splits: never call its images "val"
    line = f"data: {args.split} split of {source}, {len(dataset)} images ({why})"
    if recorded and on_train and args.split in ("train", "all"):
        line += "\n  these are the run's training images (it had no val split): the figures are not val figures"
    return dataset, line


def write_plots(args: argparse.Namespace, checkpoint, model, dataset) -> None:
    """<run>.predictions.png (and the run's <run>.results.png) in --plots."""
    from fcn_edge.atomic import ensure_folder
    from fcn_edge.sidecar import artifact_name
    from fcn_edge.train.plots import plot_history, prediction_sheet

    folder = ensure_folder(args.plots, "--plots")
    name = artifact_name(args.checkpoint)
    written = [prediction_sheet(model, dataset, checkpoint.preprocess, checkpoint.palette, folder / f"{name}.predictions.png")]
    history = checkpoint.training.get("history")
    if history:
        score = "train" if (checkpoint.training.get("data") or {}).get("val_on_train") else "val"
        written.append(plot_history(history, folder / f"{name}.results.png", score))
    print("plots: " + ", ".join(map(str, written)))


def _guided(text: str):
    try:
        return guided_arg(text)
    except argparse.ArgumentTypeError as e:
        raise FcnEdgeError(f"--refine {e}") from None


if __name__ == "__main__":
    raise SystemExit(main())
