"""Convert a checkpoint trained with deconv (transposed-conv) upsampling to resize + conv.

No labels needed: the resize convs are fitted to the deconvs by least squares, then the
whole model is distilled on unlabelled images (synthetic scenes, or --images DIR) against
the original. Prints the fit residual per upsampler, label agreement with the original
and, for models of the synthetic classes, both mIoUs on held-out synthetic scenes.
"""

from __future__ import annotations

import argparse
import time

import torch

from fcn_edge.atomic import check_distinct, check_output
from fcn_edge.cli import HelpFormatter, finite_float, nonempty_path, positive_int, size_hw
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.train.checkpoint_conversion import convert_checkpoint, count_transposed
from fcn_edge.models.upsample import RESIZE_MODES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge convert", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", type=nonempty_path, required=True, help="a checkpoint trained with --upsample deconv")
    p.add_argument("--output", type=nonempty_path, required=True, help="where to write the resize_conv checkpoint")
    p.add_argument("--resize-mode", default="bilinear", choices=list(RESIZE_MODES))
    p.add_argument("--steps", type=int, default=300, help="distillation steps (0: least-squares fit only)")
    p.add_argument("--images", type=nonempty_path, help="folder of unlabelled images to distil on (default: synthetic scenes)")
    p.add_argument(
        "--size", type=size_hw, default=(128, 128), metavar="HxW", help="synthetic scene size, or crop size for --images"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=finite_float, default=1e-3, help="for the new upsampler convs; shared weights get lr/10")
    p.add_argument("--calibration", type=int, default=16, help="images whose upsampler inputs the fit uses")
    p.add_argument("--eval-length", type=int, default=200, help="held-out synthetic scenes for agreement and mIoU")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    for flag in ("steps", "batch_size", "calibration", "eval_length"):
        minimum = 0 if flag == "steps" else 1
        if getattr(args, flag) < minimum:
            raise FcnEdgeError(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be at least {minimum}")
    check_distinct({"--checkpoint": args.checkpoint, "--images": args.images}, {"--output": args.output})
    check_output(args.output, "--output")  # before the conversion, which takes a minute
    return args


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.monotonic()
    done = convert_checkpoint(
        args.checkpoint,
        args.output,
        args.resize_mode,
        args.steps,
        args.images,
        args.size,
        args.batch_size,
        args.lr,
        args.calibration,
        args.eval_length,
    )
    report, where, mious, student = done.report, done.where, done.mious, done.model
    width = max(len(name) for name in report.residuals)
    print(f"{'upsampler':<{width}}  {'student':<30}  relative residual vs the deconv")
    for name, residual in report.residuals.items():
        kind = f"{args.resize_mode} resize + conv3, lstsq" if name in report.fitted else "fixed bilinear resize"
        print(f"{name:<{width}}  {kind:<30}  {residual:.4f}")
    print(
        f"label agreement with the original on {where}: {report.agreement_before:.4f} after the fit, "
        f"{report.agreement_after:.4f} after {args.steps} distillation steps ({report.loss})"
    )
    if mious:
        delta = 100 * (mious["student"] - mious["teacher"])
        print(
            f"mIoU on {args.eval_length} held-out synthetic scenes: original {mious['teacher']:.4f}, "
            f"converted {mious['student']:.4f} ({delta:+.2f} points)"
        )
    print(
        f"wrote {args.output} ({count_transposed(student)} ConvTranspose2d, resize {args.resize_mode}) "
        f"in {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
