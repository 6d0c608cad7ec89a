"""Train an FCN. With no arguments: the default model on built-in synthetic scenes.

Multi-process data-parallel: ``torchrun --nproc_per_node 2 -m fcn_edge.train ...``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fcn_edge.errors import exit_without_torch, quiet_interrupt_while_importing

# before anything imports torch: on a deploy-only install, one line naming the extra
quiet_interrupt_while_importing()  # and Ctrl-C while they load: one line, exit 130
exit_without_torch("fcn-edge train")

import torch

from fcn_edge.atomic import check_distinct
from fcn_edge.cli import finite_float, positive_int, size_hw
from fcn_edge.data import build_dataset
from fcn_edge.data.transforms import eval_transforms, train_transforms
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.models import HEADS, ModelConfig
from fcn_edge.models.backbones import SPECS
from fcn_edge.models.upsample import RESIZE_MODES, UPSAMPLE_MODES
from fcn_edge.train.distributed import init_distributed, shutdown
from fcn_edge.train.loop import TrainConfig, train
from fcn_edge.train.losses import LOSSES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(prog="fcn-edge train", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "voc", "cityscapes", "folder"])
    p.add_argument("--data-root", type=Path, help="dataset folder (not needed for synthetic)")
    p.add_argument("--train-length", type=int, default=4000, help="synthetic scenes per epoch")
    p.add_argument("--val-length", type=int, default=200, help="held-out synthetic scenes")
    p.add_argument("--scene-size", type=size_hw, default=(160, 160), metavar="HxW", help="synthetic scene size")
    p.add_argument("--crop-size", type=size_hw, default=(160, 160), metavar="HxW")
    p.add_argument("--backbone", default="edge_resnet", choices=list(SPECS))
    p.add_argument("--head", default="fcn8s", choices=list(HEADS))
    p.add_argument("--upsample", default="resize_conv", choices=list(UPSAMPLE_MODES))
    p.add_argument("--resize-mode", default="bilinear", choices=list(RESIZE_MODES))
    p.add_argument("--pretrained-backbone", type=Path, help="local torchvision-layout ImageNet state dict")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--optimizer", default=defaults.optimizer, choices=["sgd", "adamw"])
    p.add_argument("--lr", type=finite_float, default=defaults.lr)
    p.add_argument("--weight-decay", type=finite_float, default=defaults.weight_decay)
    p.add_argument("--loss", default=defaults.loss, choices=list(LOSSES))
    p.add_argument("--class-weights", action="store_true", help="median-frequency class balancing")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--workers", type=int, default=defaults.workers, help="data-loader worker processes")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--max-minutes", type=finite_float, help="stop after the epoch that crosses this budget")
    p.add_argument("--scale-range", type=_scale_range, metavar="MIN,MAX",
                   help="multi-scale training crops: each sample resized by a factor drawn from MIN..MAX "
                        "(default 0.75,1.25 on synthetic scenes, which already vary object size; 0.5,2 otherwise)")
    p.add_argument("--resume", type=Path, help="continue from a last.pt")
    p.add_argument("--out", type=Path, default=Path("runs/default"), help="folder for best.pt and last.pt")
    return p.parse_args(argv)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FcnEdgeError(f"--device {name}: this torch build sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def check_args(args: argparse.Namespace) -> None:
    """Flag values TrainConfig does not hold; checked before any data is read or file written."""
    for flag in ("threads", "train_length", "val_length"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise FcnEdgeError(f"--{flag.replace('_', '-')} {value} is out of range: use at least 1")
    # --resume may be --out's last.pt: continuing a run in its folder is what it is for
    check_distinct({"--data-root": args.data_root, "--pretrained-backbone": args.pretrained_backbone},
                   {"--out": args.out, "--out best.pt": args.out / "best.pt", "--out last.pt": args.out / "last.pt"})
    if args.resume is not None and not args.resume.is_file():
        raise FcnEdgeError(f"--resume {args.resume} does not exist: pass the last.pt of the run to continue")
    for folder in (args.out, *args.out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise FcnEdgeError(f"--out {args.out}: {folder} is a file, not a folder: choose another --out")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise FcnEdgeError(f"--out {args.out}: {folder} is not writable: choose another --out")
            return


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
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, loss=args.loss, class_weights=args.class_weights, seed=args.seed,
        workers=args.workers, amp=not args.no_amp, max_minutes=args.max_minutes,
    )
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    common = {"size": tuple(args.scene_size)} if args.dataset == "synthetic" else {}
    # synthetic scenes already vary object scale; real datasets get the usual 0.5-2x
    scale = args.scale_range or ((0.75, 1.25) if args.dataset == "synthetic" else (0.5, 2.0))
    train_set = build_dataset(args.dataset, args.data_root, "train", train_transforms(tuple(args.crop_size), scale=scale),
                              **common, **({"length": args.train_length} if args.dataset == "synthetic" else {}))
    val_set = build_dataset(args.dataset, args.data_root, "val", eval_transforms(),
                            **common, **({"length": args.val_length} if args.dataset == "synthetic" else {}))
    model_config = ModelConfig(
        num_classes=len(train_set.classes), backbone=args.backbone, head=args.head,
        upsample=args.upsample, resize_mode=args.resize_mode,
    )
    context = init_distributed(device)
    try:
        summary = train(
            model_config, config, train_set, val_set, train_set.classes, train_set.palette, args.out,
            context=context, device=device, pretrained_backbone=args.pretrained_backbone, resume=args.resume,
            log=print if context.is_main else (lambda _: None),
            data={"dataset": args.dataset, "root": str(args.data_root.resolve()) if args.data_root else None, "val_split": "val"},
        )
    finally:
        shutdown(context)
    if context.is_main:
        print(f"best val mIoU {summary['best_miou']:.4f} in {summary['minutes']:.1f} min -> {args.out / 'best.pt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
