"""Train an FCN. With no arguments: the default model on built-in synthetic scenes.

Your own data (docs/training.md, "Your own data"): --dataset folder --data-root ROOT, where ROOT holds
train/ and val/ (each images/ and masks/) and one classes.txt, or a flat images/ and masks/
split with --val-fraction 0.2. Each run writes runs/<name>/ (runs/default, runs/default2, ...):
best.pt, last.pt, results.png (loss and mIoU per epoch) and predictions.png.

Multi-process data-parallel: ``torchrun --nproc_per_node 2 -m fcn_edge.train ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from fcn_edge.atomic import check_distinct, check_writable
from fcn_edge.cli import HelpFormatter, finite_float, nonempty_path, positive_int, size_hw
from fcn_edge.data import build_dataset
from fcn_edge.data.record import describe, make_record
from fcn_edge.data.splits import FLAT_LAYOUT, check_fraction, layout
from fcn_edge.data.transforms import eval_transforms, train_transforms
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.models import HEADS, ModelConfig
from fcn_edge.models.backbones import BACKBONES
from fcn_edge.models.upsample import RESIZE_MODES, UPSAMPLE_MODES
from fcn_edge.train.distributed import init_distributed, shutdown
from fcn_edge.train.loop import TrainConfig, train
from fcn_edge.train.losses import LOSSES, QAT_LOSSES
from fcn_edge.train.runs import run_folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(prog="fcn-edge train", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "voc", "cityscapes", "folder"])
    p.add_argument("--data-root", type=nonempty_path, help="dataset folder (not needed for synthetic)")
    p.add_argument("--val-fraction", type=finite_float, metavar="F",
                   help="split a flat folder (images/, masks/) into train and val: this fraction of the images, "
                        "picked by a seeded hash of their file names, is val")  # fmt: skip
    p.add_argument("--split-seed", type=int, default=0, help="seed of the --val-fraction split")
    p.add_argument("--val-on-train", action="store_true",
                   help="score each epoch on the training images (a flat folder without --val-fraction); "
                        "the figure is reported as train mIoU, not val")  # fmt: skip
    p.add_argument("--train-length", type=int, default=4000, help="synthetic scenes per epoch")
    p.add_argument("--val-length", type=int, default=200, help="held-out synthetic scenes")
    p.add_argument("--scene-size", type=size_hw, default=(160, 160), metavar="HxW", help="synthetic scene size")
    p.add_argument("--crop-size", type=size_hw, default=(160, 160), metavar="HxW")
    p.add_argument("--backbone", default="edge_resnet", choices=list(BACKBONES))
    p.add_argument("--head", default="fcn8s", choices=list(HEADS))
    p.add_argument("--upsample", default="resize_conv", choices=list(UPSAMPLE_MODES))
    p.add_argument("--resize-mode", default="bilinear", choices=list(RESIZE_MODES))
    p.add_argument("--pretrained-backbone", type=nonempty_path, help="local torchvision-layout ImageNet state dict")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--optimizer", default=defaults.optimizer, choices=["sgd", "adamw"])
    p.add_argument("--lr", type=finite_float, help=f"learning rate (default {defaults.lr:g}; with --qat {QAT_LR:g})")
    p.add_argument("--weight-decay", type=finite_float, default=defaults.weight_decay)
    p.add_argument("--loss", default=defaults.loss, choices=list(LOSSES))
    p.add_argument("--class-weights", action="store_true", help="median-frequency class balancing")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--workers", type=int, default=defaults.workers, help="data-loader worker processes")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--max-minutes", type=finite_float, help="stop after the epoch that crosses this budget")
    p.add_argument(
        "--scale-range",
        type=_scale_range,
        metavar="MIN,MAX",
        help="multi-scale training crops: each sample resized by a factor drawn from MIN..MAX "
        "(default 0.75,1.25 on synthetic scenes, which already vary object size; 0.5,2 otherwise)",
    )
    p.add_argument(
        "--resume", type=nonempty_path, help="continue from a last.pt (with --qat: the checkpoint to fine-tune, e.g. best.pt)"
    )
    p.add_argument(
        "--qat",
        action="store_true",
        help="quantization-aware fine-tuning of --resume for INT8: fake quantization placed as the build's Q/DQ graph, "
        "writes qat.pt with the learned scales in the run folder (build it with --checkpoint qat.pt --int8)",
    )
    p.add_argument(
        "--qat-placement",
        default="onnxruntime",
        choices=["onnxruntime", "tensorrt"],
        help="which deployed Q/DQ graph --qat trains for",
    )
    p.add_argument(
        "--qat-loss",
        choices=list(QAT_LOSSES),
        help="what --qat trains on: teacher (match the --resume model's FP32 scores, what INT8 is verified by; "
        "the default) or labels (the ground truth with --loss, which also goes on training the model)",
    )
    p.add_argument(
        "--out",
        type=nonempty_path,
        default=Path("runs/default"),
        help="run folder; when it holds an earlier run, the next free one (runs/default2, ...)",
    )
    p.add_argument("--exist-ok", action="store_true", help="write into --out even when it holds an earlier run")
    return p.parse_args(argv)


QAT_LR = 1e-4  # fine-tuning a trained model: a small step, the poly schedule decays it further


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FcnEdgeError(f"--device {name}: this torch build sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def fine_tune_qat(args: argparse.Namespace, config: TrainConfig, device: torch.device, train_set, val_set) -> int:
    """--qat: the model, classes and preprocessing come from --resume; the flags give data and schedule."""
    from fcn_edge.checkpoint import load_checkpoint
    from fcn_edge.train.qat import fine_tune

    check_distinct({"--resume": args.resume}, {"--out qat.pt": args.out / "qat.pt"})
    checkpoint = load_checkpoint(args.resume)
    if list(checkpoint.classes) != list(train_set.classes):
        raise FcnEdgeError(f"--resume {args.resume} scores {len(checkpoint.classes)} classes, the --dataset {args.dataset} has "
                           f"{len(train_set.classes)}: fine-tune on the data it was trained on")  # fmt: skip
    summary = fine_tune(
        checkpoint, config, train_set, val_set, args.out, args.qat_placement, device, loss=args.qat_loss or QAT_LOSSES[0]
    )
    print(
        f"last epoch's fake-INT8 val mIoU {summary['miou']:.4f}, agreement with FP32 {summary['agreement']:.2%} "
        f"in {summary['minutes']:.1f} min -> {args.out / 'qat.pt'}"
    )
    print(f"next:  fcn-edge build --int8 --checkpoint {args.out / 'qat.pt'}")
    return 0


def check_args(args: argparse.Namespace) -> None:
    """Flag values TrainConfig does not hold; checked before any data is read or file written."""
    check_fraction(args.val_fraction)
    if args.val_fraction is not None and args.dataset != "folder":
        raise FcnEdgeError(
            f"--val-fraction splits a flat folder (--dataset folder); {args.dataset} has its own val split: leave it out"
        )
    for flag in ("threads", "train_length", "val_length"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise FcnEdgeError(f"--{flag.replace('_', '-')} {value} is out of range: use at least 1")
    # --resume may be --out's last.pt: continuing a run in its folder is what it is for
    check_distinct(
        {"--data-root": args.data_root, "--pretrained-backbone": args.pretrained_backbone},
        {"--out": args.out, "--out best.pt": args.out / "best.pt", "--out last.pt": args.out / "last.pt"},
    )
    if args.qat and args.resume is None:
        raise FcnEdgeError("--qat fine-tunes a trained model: pass it with --resume, e.g. --resume runs/default/best.pt")
    if args.qat_loss is not None and not args.qat:
        raise FcnEdgeError(f"--qat-loss {args.qat_loss} chooses what --qat trains on: add --qat, or leave it out")
    if args.qat and (args.qat_loss or QAT_LOSSES[0]) == "teacher" and (args.class_weights or args.loss != "ce"):
        raise FcnEdgeError("--loss and --class-weights score the labels, which --qat-loss teacher (the default) does "
                           "not use: add --qat-loss labels, or leave them out")  # fmt: skip
    if args.resume is not None and not args.resume.is_file():
        raise FcnEdgeError(f"--resume {args.resume} does not exist: pass the last.pt of the run to continue")
    existing = next(folder for folder in (args.out, *args.out.parents) if folder.exists())  # made later, under this
    if not existing.is_dir():
        raise FcnEdgeError(f"--out {args.out}: {existing} is a file, not a folder: choose another --out")
    check_writable(existing, f"--out {args.out}")


def check_val_split(args: argparse.Namespace) -> None:
    """A flat folder has no val split: training on it needs --val-fraction, or --val-on-train said on purpose."""
    if args.dataset != "folder" or args.data_root is None or args.val_fraction is not None or args.val_on_train:
        return
    if args.data_root.is_dir() and layout(args.data_root) == FLAT_LAYOUT:
        raise FcnEdgeError(
            f"--data-root {args.data_root} has no train/ and val/ folders, so its only images to validate on are the "
            f"training ones: pass --val-fraction 0.2 (a seeded split by file name), move them into train/ and val/ "
            f"(docs/training.md, Your own data), or pass --val-on-train to score on the training images as 'train mIoU'"
        )


def summary_lines(args: argparse.Namespace, train_set, val_set, record: dict[str, Any], device: torch.device,
                  config: TrainConfig) -> list[str]:  # fmt: skip
    """What this run is about to do, printed before the first progress bar."""
    classes = train_set.classes
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    if record["val_on_train"]:
        val = f"{len(val_set)} training images (--val-on-train: reported as train mIoU, not val)"
    else:
        val = f"{len(val_set)} images of the {record['val_split']} split"
    threads = torch.get_num_threads() if device.type == "cpu" else None
    return [
        f"data     {describe(record)}",
        f"train    {len(train_set)} images, crops {args.crop_size[0]}x{args.crop_size[1]} (HxW)",
        f"val      {val}",
        f"classes  {len(classes)}: {shown}",
        f"model    {args.backbone} {args.head}, upsample {args.upsample}",
        f"run      {config.epochs} epochs, batch {config.batch_size}, {config.optimizer} lr {config.lr:g}, "
        f"device {device}{f' ({threads} threads)' if threads else ''}",
        f"out      {args.out} (best.pt, last.pt, results.png, predictions.png)",
    ]


def _scale_range(text: str) -> tuple[float, float]:
    """'0.5,2' -> (0.5, 2.0): the --scale-range flag."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN,MAX like 0.5,2") from None
    if not 0 < low <= high <= 8:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < MIN <= MAX <= 8")
    return low, high


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lr = args.lr if args.lr is not None else (QAT_LR if args.qat else TrainConfig.lr)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=lr,
        weight_decay=args.weight_decay,
        loss=args.loss,
        class_weights=args.class_weights,
        seed=args.seed,
        workers=args.workers,
        amp=not args.no_amp,
        max_minutes=args.max_minutes,
    )
    check_args(args)
    check_val_split(args)
    asked = args.out
    args.out = run_folder(asked, args.exist_ok or (args.resume is not None and args.resume.parent.resolve() == asked.resolve()))
    if args.out != asked:
        print(f"{asked} holds an earlier run: writing {args.out} (--exist-ok writes into {asked})")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    common = (
        {"size": tuple(args.scene_size)}
        if args.dataset == "synthetic"
        else {"val_fraction": args.val_fraction, "split_seed": args.split_seed}
    )
    # synthetic scenes already vary object scale; real datasets get the usual 0.5-2x
    scale = args.scale_range or ((0.75, 1.25) if args.dataset == "synthetic" else (0.5, 2.0))
    train_set = build_dataset(
        args.dataset,
        args.data_root,
        "train",
        train_transforms(tuple(args.crop_size), scale=scale),
        **common,
        **({"length": args.train_length} if args.dataset == "synthetic" else {}),
    )
    val_split = "train" if args.val_on_train else "val"
    val_set = build_dataset(
        args.dataset,
        args.data_root,
        val_split,
        eval_transforms(),
        **common,
        **({"length": args.val_length} if args.dataset == "synthetic" else {}),
    )
    record = make_record(args.dataset, args.data_root, args.val_fraction, args.split_seed, args.val_on_train,
                         train_set.classes, train_set.palette)  # fmt: skip
    if args.qat:
        return fine_tune_qat(args, config, device, train_set, val_set)
    model_config = ModelConfig(
        num_classes=len(train_set.classes),
        backbone=args.backbone,
        head=args.head,
        upsample=args.upsample,
        resize_mode=args.resize_mode,
    )
    context = init_distributed(device)
    if context.is_main:
        print("\n".join(summary_lines(args, train_set, val_set, record, device, config)), flush=True)
    try:
        summary = train(
            model_config,
            config,
            train_set,
            val_set,
            train_set.classes,
            train_set.palette,
            args.out,
            context=context,
            device=device,
            pretrained_backbone=args.pretrained_backbone,
            resume=args.resume,
            log=print if context.is_main else (lambda _: None),
            data=record,
        )
        if context.is_main:
            write_plots(summary, val_set, train_set.palette, args.out, "train" if args.val_on_train else "val")
    finally:
        shutdown(context)
    if context.is_main:
        score = "train" if args.val_on_train else "val"
        print(f"best {score} mIoU {summary['best_miou']:.4f} in {summary['minutes']:.1f} min -> {args.out / 'best.pt'}")
        print(f"plots: {args.out / 'results.png'}, {args.out / 'predictions.png'}")
        print(f"next:  fcn-edge evaluate --checkpoint {args.out / 'best.pt'}")
        print(f"       fcn-edge build --int8 --checkpoint {args.out / 'best.pt'}")
    return 0


def write_plots(summary: dict[str, Any], val_set, palette, out: Path, score_name: str) -> None:
    """results.png and predictions.png in the run folder (the best.pt weights on the val images)."""
    from fcn_edge.checkpoint import load_checkpoint
    from fcn_edge.train.plots import plot_history, prediction_sheet

    if summary["history"]:
        plot_history(summary["history"], out / "results.png", score_name)
    best = load_checkpoint(out / "best.pt")
    prediction_sheet(best.build(), val_set, best.preprocess, palette, out / "predictions.png")


if __name__ == "__main__":
    raise SystemExit(main())
