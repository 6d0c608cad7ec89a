"""What refinement and multi-scale inference buy on edges and cost in latency: one table, one run.

For a checkpoint, four graphs are exported (plain, --refine, --scales, both) and each is
built to INT8 by scripts/build_engine.py (ONNX Runtime); every FP32 and INT8 graph is then
scored on labelled images (mIoU, boundary F-score, boundary IoU; fcn_edge.boundary) and
timed at --latency-size, batch 1, the project's ONNX Runtime session (2 threads).

    python benchmarks/boundaries.py                                      # default.pt on held-out synthetic scenes
    python benchmarks/boundaries.py --checkpoint runs/voc/best.pt --voc ROOT --name voc_photos
    python benchmarks/boundaries.py --picture docs/img/refine.png        # also the figure in docs/export.md

Writes benchmarks/boundaries_<name>.json and .md. The CPU is shared: latencies are medians of
interleaved rounds, so drifting load hits every variant alike.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcn_edge.atomic import write_text_atomic  # noqa: E402
from fcn_edge.backends.onnxruntime import session  # noqa: E402
from fcn_edge.boundary import BoundaryCounts  # noqa: E402
from fcn_edge.checkpoint import load_checkpoint  # noqa: E402
from fcn_edge.cli import HelpFormatter, size_hw  # noqa: E402
from fcn_edge.data.synthetic import HELDOUT_SEED, render_scene  # noqa: E402
from fcn_edge.data.voc import VOCSegmentation  # noqa: E402
from fcn_edge.export import export_checkpoint  # noqa: E402
from fcn_edge.metrics import confusion_matrix, scores_from_confusion  # noqa: E402
from fcn_edge.models.edges import EdgeOptions  # noqa: E402
from fcn_edge.models.refine import GuidedParams  # noqa: E402
from fcn_edge.paths import DEFAULT_CHECKPOINT  # noqa: E402

VARIANTS = {
    "plain": EdgeOptions(),
    "refined": EdgeOptions(refine=GuidedParams()),
    "multi-scale": EdgeOptions(scales=(0.75, 1.0, 1.25)),
    "both": EdgeOptions(scales=(0.75, 1.0, 1.25), refine=GuidedParams()),
}


def samples(args: argparse.Namespace) -> list[tuple[np.ndarray, np.ndarray]]:
    """(BGR frame, mask) pairs: the user's VOC-layout split, or held-out synthetic scenes."""
    if args.voc:
        data = VOCSegmentation(args.voc, "val")
        return [data[i] for i in range(len(data))]
    return [render_scene(np.random.default_rng(HELDOUT_SEED + i), args.scene_size) for i in range(args.scenes)]


def score(model: Path, pairs: list, num_classes: int) -> dict:
    sess = session(model)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    counts = BoundaryCounts(num_classes)
    for frame, mask in pairs:
        labels = sess.run(None, {"frame": frame[None]})[0][0]
        matrix += confusion_matrix(mask, labels, num_classes)
        counts.add(mask, labels)
    b = counts.scores()
    return {"miou": scores_from_confusion(matrix).miou, "boundary_f": b.mean_f, "boundary_iou": b.mean_iou}


def latencies(models: dict[str, Path], size: tuple[int, int], rounds: int, runs: int) -> dict[str, float]:
    """Median ms per model over ``rounds`` interleaved blocks of ``runs`` calls."""
    frame = render_scene(np.random.default_rng(HELDOUT_SEED), size)[0][None]
    sessions = {name: session(path) for name, path in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for sess in sessions.values():
        sess.run(None, {"frame": frame})
    for _ in range(rounds):
        for name, sess in sessions.items():
            time.sleep(0.05)  # a spinning pool from the block before stops first
            for _ in range(runs):
                started = time.perf_counter()
                sess.run(None, {"frame": frame})
                times[name].append(1000 * (time.perf_counter() - started))
    return {name: float(np.median(t)) for name, t in times.items()}


def build(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """FP32 exports and their INT8 builds, named '<variant> fp32|int8'."""
    models = {}
    for number, (name, options) in enumerate(VARIANTS.items(), 1):
        print(f"[{number}/{len(VARIANTS)}] exporting and building INT8 of {name} (a minute or two each)", flush=True)
        stem = name.replace("-", "_")
        fp32 = folder / f"{stem}.onnx"
        export_checkpoint(args.checkpoint, fp32, edges=options, verify_sizes=((1, 128, 160),))
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "build_engine.py"),
                "--onnx",
                str(fp32),
                "--int8",
                "--backend",
                "onnxruntime",
                "--engines-dir",
                str(folder),
                "--allow-accuracy-drop",
                "--search-minutes",
                "0",
                "--verify-scenes",
                "8",
                "--calib-size",
                "256x256",
                "--calib-images",
                "32",
                "--verify-size",
                "128x256",
                "--latency-size",
                "64x64",
                "--no-progress",
                *(["--val-data", f"voc:{args.voc}", "--val-images", "10", "--calib-data", f"voc:{args.voc}"] if args.voc else []),
            ],
            check=True,
            cwd=ROOT,
            capture_output=not args.verbose,
        )
        models[f"{name} fp32"] = fp32
        models[f"{name} int8"] = folder / f"{stem}.int8.onnx"
    return models


def picture(path: Path, models: dict[str, Path], palette: list) -> None:
    """A crop of frame | labels | refined labels | ground truth, from the held-out scene with the most star edge."""
    frame, mask = render_scene(np.random.default_rng(HELDOUT_SEED + 3), (256, 512))
    lut = np.array([c[::-1] for c in palette] + [(255, 255, 255)] * (256 - len(palette)), np.uint8)
    plain = session(models["plain fp32"]).run(None, {"frame": frame[None]})[0][0]
    refined = session(models["refined fp32"]).run(None, {"frame": frame[None]})[0][0]
    ys, xs = np.nonzero(mask == 4) if (mask == 4).any() else np.nonzero(mask > 0)  # star: the class the head loses most
    cy, cx = int(np.clip(ys.mean(), 48, 256 - 48)), int(np.clip(xs.mean(), 48, 512 - 48))
    crop = (slice(cy - 48, cy + 48), slice(cx - 48, cx + 48))
    tiles = [frame[crop], lut[plain[crop]], lut[refined[crop]], lut[mask[crop]]]
    tiles = [cv2.resize(t, (288, 288), interpolation=cv2.INTER_NEAREST) for t in tiles]
    gap = np.full((288, 6, 3), 255, np.uint8)
    strip = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
    caption = np.full((28, strip.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(("frame", "labels", "refined labels", "ground truth")):
        cv2.putText(caption, text, (i * 294 + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), np.concatenate([caption, strip]), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| variant | precision | mIoU | boundary F | boundary IoU | latency | vs plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['precision']} | {r['miou']:.4f} | {r['boundary_f']:.4f} | {r['boundary_iou']:.4f} "
            f"| {r['latency_ms']:.1f} ms | {r['latency_ratio']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--voc", type=Path, help="VOC-layout root; its val split is scored (default: held-out synthetic scenes)")
    p.add_argument("--name", default="synthetic")
    p.add_argument("--scenes", type=int, default=32)
    p.add_argument("--scene-size", type=size_hw, default=(256, 512), metavar="HxW")
    p.add_argument("--latency-size", type=size_hw, default=(512, 1024), metavar="HxW")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--picture", type=Path)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--out-dir", type=Path, default=Path("runs/benchmarks"), help="where the JSON and Markdown go")
    p.add_argument(
        "--update-docs", action="store_true", help="write the committed tables in benchmarks/ (docs/ links them) instead"
    )
    args = p.parse_args()
    checkpoint = load_checkpoint(args.checkpoint)
    pairs = samples(args)
    with tempfile.TemporaryDirectory(prefix="fcn_edge_boundaries_") as tmp:
        models = build(args, Path(tmp))
        if args.picture:
            picture(args.picture, models, checkpoint.palette)
        print(f"scoring {len(models)} models on {len(pairs)} images", flush=True)
        figures = {name: score(path, pairs, len(checkpoint.classes)) for name, path in models.items()}
        print(
            f"timing {len(models)} models, {args.rounds}x{args.runs} interleaved runs at {args.latency_size[1]}x{args.latency_size[0]}",
            flush=True,
        )
        times = latencies(models, args.latency_size, args.rounds, args.runs)
    rows = []
    for name in models:
        variant, precision = name.rsplit(" ", 1)
        base = times[f"plain {precision}"]
        rows.append(
            {
                "variant": variant,
                "precision": precision.upper(),
                **figures[name],
                "latency_ms": times[name],
                "latency_ratio": times[name] / base,
            }
        )
    h, w = args.latency_size
    header = (
        f"{args.checkpoint.name} on {args.name} ({len(pairs)} images); boundary figures at 3 px; latency at {w}x{h}, "
        f"ONNX Runtime, batch 1, median of {args.rounds}x{args.runs} interleaved runs on a shared 2-core CPU"
    )
    out = (ROOT / "benchmarks" if args.update_docs else args.out_dir) / f"boundaries_{args.name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.with_suffix(".json"), json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    write_text_atomic(out.with_suffix(".md"), markdown(rows, header))
    print(markdown(rows, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
