"""What a recorded frame costs the host: decode, overlay and encode, CPU ms per frame, per recording path.

On two cores the stream's loop / runner-alone ratio is bounded by the host CPU a frame takes
beside inference (docs/stream.md, "Where the host time goes"). This times the three steps one
after another in one thread, on an mp4 of the synthetic camera (as the stream records it)
with the model's own labels, for each way a recording can be made:

- ``opencv``: BGR overlay, OpenCV's ``mp4v`` writer (the recording path before PyAV);
- ``pyav-bgr``: BGR overlay, PyAV (a recording beside another sink);
- ``pyav-yuv``: the overlay straight in YUV 4:2:0, PyAV (a lone recording, the default).

The paths alternate in rounds, so a drifting background load hits them alike; figures are
medians over rounds. Each recording's size and PSNR against the BGR overlays say what the
CPU bought.

    python benchmarks/recording_cost.py                         # engines/default.int8.onnx, 640x480
    python benchmarks/recording_cost.py --rounds 9 --frames 120

Writes benchmarks/recording_cost.json and .md (the latest result).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcn_edge.backends import open_runner  # noqa: E402
from fcn_edge.bench import report  # noqa: E402
from fcn_edge.cli import HelpFormatter, size_hw  # noqa: E402
from fcn_edge.errors import FcnEdgeError, run_cli  # noqa: E402
from fcn_edge.stream import sources  # noqa: E402
from fcn_edge.stream.overlay import Overlay  # noqa: E402
from fcn_edge.stream.sinks import VideoFileSink  # noqa: E402

from fcn_edge.stream.bench_inputs import DEFAULT_MODEL, write_video  # noqa: E402

PATHS = ("opencv", "pyav-bgr", "pyav-yuv")


def decode_all(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while (frame := capture.read()[1]) is not None:
        decoded.append(frame)
    capture.release()
    return decoded


def record(kind: str, video: Path, labels: list[np.ndarray], overlay: Overlay, out: Path) -> dict[str, float]:
    """Decode ``video``, draw each frame's overlay and record it the ``kind`` way; CPU ms per frame of each step."""
    source = sources.video(video)  # as the stream opens a file: one decoding thread
    source.open()
    size = (labels[0].shape[1], labels[0].shape[0])
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30, size) if kind == "opencv" else None
    sink = None if writer else VideoFileSink(out, 30)
    spent = {"decode": 0.0, "overlay": 0.0, "encode": 0.0}
    frame = None
    for frame_labels in labels:
        start = time.thread_time()
        frame = source.read(frame)
        decoded = time.thread_time()
        if kind == "pyav-yuv":
            image = sink.draw(frame, frame_labels, overlay)
        else:
            image = overlay.render(frame, frame_labels, out=frame)
        drawn = time.thread_time()
        writer.write(image) if writer else sink.write(image)
        spent["decode"] += decoded - start
        spent["overlay"] += drawn - decoded
        spent["encode"] += time.thread_time() - drawn
    writer.release() if writer else sink.close()
    source.close()
    return {step: 1e3 * seconds / len(labels) for step, seconds in spent.items()}


def picture(out: Path, expected: list[np.ndarray]) -> dict[str, float]:
    """Bytes per frame and mean PSNR of the recording against the overlays it should show."""
    decoded = decode_all(out)
    if len(decoded) != len(expected):
        raise FcnEdgeError(f"{out.name} holds {len(decoded)} frames, not {len(expected)}")
    psnr = statistics.mean(cv2.PSNR(e, d) for e, d in zip(expected, decoded))
    return {"bytes_per_frame": out.stat().st_size / len(expected), "psnr_db": psnr}


def markdown(result: dict) -> str:
    lines = [
        "# Host CPU of a recorded frame (latest run)",
        "",
        f"{result['machine']}; {result['size']} frames of the synthetic camera (an mp4 as the stream records it), "
        f"labels from {result['model']}; {result['rounds']} rounds of {result['frames']} frames, the paths alternating; "
        "CPU ms per frame of one thread doing the three steps one after another, median over rounds; PSNR of the "
        "decoded recording against the BGR overlays.",
        "",
        "| path | decode | overlay | encode | total | bytes/frame | PSNR dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in result["paths"].items():
        lines.append(
            f"| {kind} | {r['decode']:.2f} | {r['overlay']:.2f} | {r['encode']:.2f} | **{r['total']:.2f}** "
            f"| {r['bytes_per_frame']:.0f} | {r['psnr_db']:.1f} |"
        )
    return "\n".join(lines) + "\n"


@run_cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="labels from this model (default: engines/default.int8.onnx)"
    )
    p.add_argument("--frames", type=int, default=90, help="frames per recording (default 90)")
    p.add_argument("--rounds", type=int, default=5, help="recordings per path (default 5)")
    p.add_argument("--size", type=size_hw, default=(480, 640), metavar="HxW")
    p.add_argument("--out-dir", type=Path, default=Path("runs/benchmarks"), help="where the JSON and Markdown go")
    p.add_argument(
        "--update-docs", action="store_true", help="write the committed tables in benchmarks/ (docs/ links them) instead"
    )
    args = p.parse_args(argv)
    if args.frames < 1 or args.rounds < 1:
        raise FcnEdgeError("--frames and --rounds must be at least 1")
    if not args.model.is_file():
        raise FcnEdgeError(f"{args.model} does not exist: build it (python scripts/build_engine.py --int8) or pass --model")
    cv2.setNumThreads(1)  # as the stream runs OpenCV
    size = (args.size[1], args.size[0])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = write_video(tmp / "camera.mp4", args.frames, size)
        with open_runner(args.model, "auto", check_inputs=False) as runner:
            labels = [runner.infer(frame).copy() for frame in frames]
            overlay = Overlay(runner.palette or [], 0.5)
        expected = [overlay.render(frame, frame_labels) for frame, frame_labels in zip(frames, labels)]
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in PATHS}
        for _ in range(args.rounds):
            for kind in PATHS:
                runs[kind].append(record(kind, tmp / "camera.mp4", labels, overlay, tmp / f"{kind}.mp4"))
        paths = {}
        for kind, timings in runs.items():
            steps = {step: statistics.median(t[step] for t in timings) for step in timings[0]}
            total = statistics.median(sum(t.values()) for t in timings)
            paths[kind] = {**steps, "total": total, **picture(tmp / f"{kind}.mp4", expected)}
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "model": args.model.name,
        "size": f"{size[0]}x{size[1]}",
        "frames": args.frames,
        "rounds": args.rounds,
        "paths": paths,
    }
    report.save(ROOT / "benchmarks" if args.update_docs else args.out_dir, "recording_cost", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
