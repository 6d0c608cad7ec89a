"""Measure checkerboard artifacts: transposed-conv vs resize+conv decoders, and FCN checkpoints.

Scores the reference decoders of Odena et al. (stride-2 kernel-3 transposed conv vs
nearest/bilinear resize + 3x3 conv, two stages) at default init over several seeds and
after a short training on synthetic segmentation, optionally scores FCN checkpoints'
decoder maps and logits, prints a table and writes a side-by-side PNG. Method:
docs/checkerboard.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from fcn_edge.atomic import atomic_path, check_distinct, check_output
from fcn_edge.checkpoint import Checkpoint, load_checkpoint
from fcn_edge.data.synthetic import CLASSES, HELDOUT_SEED, TRAIN_SEED, SyntheticScenes
from fcn_edge.cli import HelpFormatter, nonempty_path, positive_int, size_hw
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.export.checkerboard import (
    REFERENCE_KINDS, REFERENCE_STRIDE, TILES, checkerboard_score, high_pass, reference_model, train_reference,
)  # fmt: skip
from fcn_edge.models.preprocess import images_to_tensor
from fcn_edge.spec import Preprocess

LABELS = {"deconv": "deconv k3 s2", "nearest": "nearest resize + conv3", "bilinear": "bilinear resize + conv3"}
PANEL = 128  # the figure shows (up to) the centre PANEL x PANEL of the first image, enlarged 2x


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge checkerboard", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--scenes", type=int, default=16, help="held-out synthetic scenes to score on")
    p.add_argument("--size", type=size_hw, default=(256, 256), metavar="HxW", help="size of those scenes")
    p.add_argument("--seeds", type=int, default=5, help="initialisations scored per decoder")
    p.add_argument("--steps", type=int, default=800, help="training steps per decoder (0: init only)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--train-size", type=size_hw, default=(64, 64), metavar="HxW", help="size of the synthetic training scenes")
    p.add_argument("--checkpoint", type=nonempty_path, action="append", default=[], help="also score this FCN (repeatable)")
    p.add_argument(
        "--fcn-size",
        type=size_hw,
        default=(512, 512),
        metavar="HxW",
        help="scene size for --checkpoint (the 1/8 decoder map needs room)",
    )
    p.add_argument(
        "--output",
        type=nonempty_path,
        default=Path("runs/checkerboard.png"),
        help="the chart (docs/img/checkerboard.png is the committed one docs/checkerboard.md shows)",
    )
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    for flag in ("scenes", "seeds", "batch_size"):
        if getattr(args, flag) < 1:
            raise FcnEdgeError(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be at least 1")
    if args.steps < 0:
        raise FcnEdgeError(f"--steps {args.steps} must be 0 or more")
    if args.output.suffix.lower() != ".png":
        raise FcnEdgeError(f"--output {args.output} must end in .png")
    check_output(args.output, "--output")  # before the measurements, which take minutes
    for checkpoint in args.checkpoint:
        check_distinct({"--checkpoint": checkpoint}, {"--output": args.output})
    return args


def training_batches(args: argparse.Namespace, preprocess: Preprocess) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same labelled synthetic batches for every decoder."""
    scenes = SyntheticScenes(args.steps * args.batch_size, TRAIN_SEED, args.train_size)
    batches = []
    for start in range(0, len(scenes), args.batch_size):
        images, masks = zip(*(scenes[i] for i in range(start, start + args.batch_size)))
        batches.append((images_to_tensor(preprocess, images), torch.from_numpy(np.stack(masks).astype(np.int64))))
    return batches


@torch.no_grad()
def logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model.eval()(images)


def stretch(channel: np.ndarray) -> np.ndarray:
    low, high = np.percentile(channel, (1, 99))
    return np.clip((channel - low) / max(high - low, 1e-12) * 255, 0, 255).astype(np.uint8)


def panel(gray_or_bgr: np.ndarray, label: str) -> np.ndarray:
    """Centre crop, 2x nearest enlargement (pixel patterns stay visible), label on a dark strip."""
    h, w = gray_or_bgr.shape[:2]
    side = min(PANEL, h, w)
    y, x = (h - side) // 2, (w - side) // 2
    crop = gray_or_bgr[y : y + side, x : x + side]
    image = cv2.resize(crop, (2 * side, 2 * side), interpolation=cv2.INTER_NEAREST)
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    strip = np.zeros((22, image.shape[1], 3), np.uint8)
    cv2.putText(strip, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([strip, image])


def figure_row(image: np.ndarray, outputs: dict[str, torch.Tensor], when: str) -> np.ndarray:
    """Input, deconv and nearest-resize background logits, and their high-pass residuals on one shared scale."""
    kinds = ("deconv", "nearest")
    maps = {k: outputs[k][:1, :1] for k in kinds}  # first image, background logit
    residuals = {k: high_pass(maps[k].double(), REFERENCE_STRIDE)[0, 0].numpy() for k in kinds}
    scale = max(np.percentile(np.abs(r), 99) for r in residuals.values()) or 1.0
    panels = [panel(image, "input")]
    panels += [panel(stretch(maps[k][0, 0].numpy()), f"{LABELS[k]}, {when}") for k in kinds]
    for k in kinds:
        grey = np.clip(128 + 127 * residuals[k] / scale, 0, 255).astype(np.uint8)
        panels.append(panel(grey, f"high-pass {LABELS[k].split()[0]}, {when}"))
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    return np.hstack([p for item in panels for p in (item, gap)][:-1])


def write_png(path: Path, rows: list[np.ndarray]) -> None:
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    image = np.vstack([r for row in rows for r in (row, gap)][:-1])
    data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]  # the noise panels are large otherwise
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def describe(checkpoint: Checkpoint) -> str:
    config = checkpoint.config
    if config.upsample == "deconv":
        return "deconv k4 s2"
    return f"{config.resize_mode} resize+conv3"


@torch.no_grad()
def score_checkpoint(checkpoint: Checkpoint, images: list[np.ndarray]) -> tuple[float, float]:
    """(decoder score, logits score) of an FCN.

    The decoder map is what enters the final (fixed bilinear) upsampler, at 1/8 of the input
    for FCN-8s, scored at the product of the learned x2 upsamplers' strides; the logits
    are scored at the final upsampler's factor (it matters for checkpoints whose final
    deconv was trained).
    """
    model = checkpoint.build()
    decoder_maps: list[torch.Tensor] = []
    hook = model.final_upsampler.register_forward_hook(lambda module, args, out: decoder_maps.append(args[0]))
    outputs = [model(images_to_tensor(checkpoint.preprocess, [image])) for image in images]
    hook.remove()
    skips = len(model.skip_upsamplers)
    decoder = checkerboard_score(decoder_maps, 2**skips) if skips else float("nan")
    return decoder, checkerboard_score(outputs, model.final_upsampler.factor)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoints = [load_checkpoint(path) for path in args.checkpoint]  # fail before minutes of training
    preprocess = Preprocess()
    scenes = SyntheticScenes(args.scenes, HELDOUT_SEED, args.size)
    images = [scenes[i][0] for i in range(args.scenes)]
    inputs = images_to_tensor(preprocess, images)
    classes = len(CLASSES)

    init: dict[str, list[float]] = {k: [] for k in REFERENCE_KINDS}
    first: dict[str, torch.Tensor] = {}
    for seed in range(args.seeds):
        for kind in REFERENCE_KINDS:
            out = logits(reference_model(kind, classes, seed), inputs)
            init[kind].append(checkerboard_score(out, REFERENCE_STRIDE))
            first.setdefault(kind, out)
    trained: dict[str, float] = {}
    trained_out: dict[str, torch.Tensor] = {}
    if args.steps:
        batches = training_batches(args, preprocess)
        for kind in REFERENCE_KINDS:
            model = reference_model(kind, classes, seed=0)
            loss = train_reference(model, batches)
            trained_out[kind] = logits(model, inputs)
            trained[kind] = checkerboard_score(trained_out[kind], REFERENCE_STRIDE)
            print(f"trained {LABELS[kind]}: final loss {loss:.3f}")

    print(
        f"\ncheckerboard score (stride {REFERENCE_STRIDE}, {TILES}-stride tiles; "
        f"{args.scenes} held-out synthetic {args.size[0]}x{args.size[1]} scenes; chance ~{1 / TILES**2:.3f})"
    )
    trained_head = f"  trained ({args.steps} steps)" if args.steps else ""
    print(f"{'decoder':<26}{'init mean [min, max] over ' + str(args.seeds) + ' seeds':>36}{trained_head}")
    for kind in REFERENCE_KINDS:
        values = init[kind]
        row = f"{LABELS[kind]:<26}{np.mean(values):>14.4f} [{min(values):.4f}, {max(values):.4f}]"
        print(row + (f"{trained[kind]:>12.4f}" if args.steps else ""))
    for other in REFERENCE_KINDS[1:]:
        ratios = [d / max(o, 1e-12) for d, o in zip(init["deconv"], init[other])]
        row = f"{'deconv / ' + other:<26}{'min ' + format(min(ratios), '.1f') + 'x':>36}"
        print(row + (f"{trained['deconv'] / max(trained[other], 1e-12):>11.1f}x" if args.steps else ""))

    if checkpoints:
        fcn_scenes = SyntheticScenes(args.scenes, HELDOUT_SEED, args.fcn_size)
        fcn_images = [fcn_scenes[i][0] for i in range(args.scenes)]
        print(f"\nFCN checkpoints ({len(fcn_images)} held-out synthetic {args.fcn_size[0]}x{args.fcn_size[1]} scenes)")
        print("decoder: the map entering the final upsampler, stride 2^(x2 upsamplers); logits: stride = final factor")
        print(f"{'checkpoint':<40}{'upsampling':>24}{'decoder':>10}{'logits':>10}")
        for path, checkpoint in zip(args.checkpoint, checkpoints):
            decoder, logits_score = score_checkpoint(checkpoint, fcn_images)
            decoder_text = "n/a" if np.isnan(decoder) else f"{decoder:.4f}"
            print(f"{str(path):<40}{describe(checkpoint):>24}{decoder_text:>10}{logits_score:>10.4f}")

    rows = [figure_row(images[0], trained_out, "trained")] if args.steps else []
    rows.append(figure_row(images[0], first, "init"))
    write_png(args.output, rows)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
