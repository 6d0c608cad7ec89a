"""Write the default calibration set: synthetic scenes as JPEG camera frames.

Deterministic: scene i comes from seed CALIBRATION_SEED + i, disjoint from the training
and held-out seeds, so calibrating never sees a scene the model is evaluated on. JPEG
(quality 90) rather than PNG: the scenes' sensor noise makes a 512x256 PNG ~200 KB, and
a camera's frames are compressed too.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from tqdm import tqdm

from fcn_edge.atomic import ensure_folder, write_bytes_atomic
from fcn_edge.data.synthetic import render_scene
from fcn_edge.cli import HelpFormatter, nonempty_path, size_hw
from fcn_edge.errors import FcnEdgeError, run_cli
from fcn_edge.quantize.calibration import CALIBRATION_SEED, DEFAULT_DIR, DEFAULT_SIZE

JPEG_QUALITY = 90


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge calibration-set", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--out", type=nonempty_path, default=DEFAULT_DIR)
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--size", type=size_hw, default=DEFAULT_SIZE, metavar="HxW")
    p.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    return p.parse_args(argv)


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.count < 1:
        raise FcnEdgeError(f"--count {args.count} must be at least 1")
    ensure_folder(args.out, "--out")
    total = 0
    written = []
    try:
        for i in tqdm(range(args.count), desc="scenes"):
            image, _ = render_scene(np.random.default_rng(args.seed + i), tuple(args.size))
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise FcnEdgeError(f"OpenCV could not encode scene {i} as JPEG")
            written.append(args.out / f"scene_{i:03d}.jpg")
            write_bytes_atomic(written[-1], data.tobytes())
            total += data.size
    except BaseException:  # a part of a set would be calibrated on as if it were all of it
        for path in written:
            path.unlink(missing_ok=True)
        raise
    print(f"wrote {args.count} scenes ({args.size[0]}x{args.size[1]}, {total / 1e6:.2f} MB) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
