"""Which thread policy keeps a CPU runner fast under a camera's pacing: a table of policies x pacings, in one run.

A runner alone, timed back to back, is not how a camera uses it. Frames arrive every 33 ms with
idle gaps (a worker thread that sleeps must be woken, and the OS may then put it on the caller's
core), or back to back while the overlay of the last frame runs in another thread (a worker that
spins steals that thread's core). Each policy is one ONNX Runtime session option set (or an
OpenVINO pinning choice); each pacing is run in turn for every policy, in rounds, so a shared
machine's drifting load hits them alike. Figures are inference latencies (ms) of the runner,
median and 90th percentile over all rounds; "gap" is the camera pacing, "busy" back to back with
a concurrent overlay thread, "alone" back to back with nothing else.

    python benchmarks/cpu_threads.py                                   # engines/default.int8.onnx at 640x480
    python benchmarks/cpu_threads.py --model engines/default.int8.onnx --size 480x640 --rounds 6 --frames 20

Writes benchmarks/cpu_threads.json and .md (the latest result); docs/cpu.md says what was chosen and why.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcn_edge.bench import report  # noqa: E402
from fcn_edge.backends.onnxruntime.runner import OrtRunner  # noqa: E402
from fcn_edge.bench.suite import sample_frame  # noqa: E402
from fcn_edge.cli import HelpFormatter, size_hw  # noqa: E402
from fcn_edge.errors import FcnEdgeError, run_cli  # noqa: E402

DEFAULT_MODEL = ROOT / "engines" / "default.int8.onnx"
CAMERA_PERIOD_S = 1 / 30
SETTLE_S = 0.05  # between blocks: a spinning pool from the block before stops before the next one starts

# name -> session config entries replacing the project's THREAD_POLICY (2 threads); "threads" changes the count
ORT_POLICIES: dict[str, dict[str, str]] = {
    "no spin": {"session.intra_op.allow_spinning": "0"},
    "spin": {"session.intra_op.allow_spinning": "1"},
    "spin, stop after run": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"},
    "spin at most 1 ms": {"session.intra_op.allow_spinning": "1", "session.intra_op.spin_duration_us": "1000"},
    "spin at most 0.2 ms": {"session.intra_op.allow_spinning": "1", "session.intra_op.spin_duration_us": "200"},
    "no spin, worker pinned": {"session.intra_op.allow_spinning": "0", "session.intra_op_thread_affinities": "2"},
    "1 thread": {"threads": "1"},  # the project's policy, one thread
}  # fmt: skip


def ort_runner(model: Path, entries: dict[str, str]) -> OrtRunner:
    entries = dict(entries)
    threads = int(entries.pop("threads", "2"))
    return OrtRunner(model, threads=threads, policy=entries or None, check_inputs=False).activate()


def openvino_runner(model: Path, pinning: bool):
    from fcn_edge.backends.openvino import OvRunner

    runner = OvRunner(model, threads=2, check_inputs=False)
    runner.config["ENABLE_CPU_PINNING"] = pinning  # the project's choice is False (fcn_edge.backends.openvino.core)
    return runner.activate()


def overlay_work(frame: np.ndarray) -> Callable[[np.ndarray], None]:
    """The stream's per-frame host work on another thread: colour the labels and blend them onto the frame."""
    palette = np.random.default_rng(0).integers(0, 255, (256, 1, 3), dtype=np.uint8)

    def work(labels: np.ndarray) -> None:
        colours = cv2.applyColorMap(labels, palette) if labels.ndim == 2 else labels
        cv2.addWeighted(frame, 0.5, colours, 0.5, 0.0)

    return work


def block(infer: Callable[[], np.ndarray], pacing: str, frames: int, overlay: Callable[[np.ndarray], None]) -> list[float]:
    """Latencies (ms) of ``frames`` inferences under one pacing."""
    times = []
    pending: threading.Thread | None = None
    next_tick = time.perf_counter()
    for _ in range(frames):
        if pacing == "gap":
            next_tick += CAMERA_PERIOD_S
        start = time.perf_counter()
        labels = infer()
        times.append(1000 * (time.perf_counter() - start))
        if pacing == "busy":
            if pending is not None:
                pending.join()
            pending = threading.Thread(target=overlay, args=(labels.copy(),))
            pending.start()
        elif pacing == "gap":
            time.sleep(max(0.0, next_tick - time.perf_counter()))
    if pending is not None:
        pending.join()
    return times


def markdown(result: dict) -> str:
    pacings = result["pacings"]
    lines = [
        "# CPU runner thread policies under camera pacing (latest run)",
        "",
        f"{result['machine']}; model {result['model']} at {result['size']}; {result['rounds']} rounds of "
        f"{result['frames']} frames per policy and pacing; 1-minute load average {result['load_average'][0]} before, "
        f"{result['load_average'][1]} after.",
        "gap: one frame every 33 ms (a 30 fps camera slower than the model); busy: back to back while another thread "
        "colours and blends the previous frame (the stream's overlay); alone: back to back, nothing else. "
        "Latency of infer() in ms, median / p90.",
        "",
        "| policy | " + " | ".join(pacings) + " |",
        "|---|" + "---|" * len(pacings),
    ]
    for name, row in result["policies"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[p]['median']:.1f} / {row[p]['p90']:.1f}" for p in pacings) + " |")
    return "\n".join(lines) + "\n"


@run_cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a frame-input .onnx (default engines/default.int8.onnx)")
    p.add_argument("--size", type=size_hw, default=(480, 640), metavar="HxW")
    p.add_argument("--frames", type=int, default=20, help="frames per block (default 20)")
    p.add_argument("--rounds", type=int, default=6, help="blocks per policy and pacing (default 6)")
    p.add_argument("--no-openvino", action="store_true", help="ONNX Runtime policies only")
    p.add_argument("--only", nargs="+", metavar="POLICY", help=f"these ONNX Runtime policies only, of: {', '.join(ORT_POLICIES)}")
    p.add_argument("--out-dir", type=Path, default=Path("runs/benchmarks"), help="where the JSON and Markdown go")
    p.add_argument(
        "--update-docs", action="store_true", help="write the committed tables in benchmarks/ (docs/ links them) instead"
    )
    args = p.parse_args(argv)
    if not args.model.is_file():
        raise FcnEdgeError(f"--model {args.model} does not exist: build it with python scripts/build_engine.py --int8")
    frame = sample_frame(*args.size)
    load_before = os.getloadavg()[0]
    unknown = set(args.only or ()) - set(ORT_POLICIES)
    if unknown:
        raise FcnEdgeError(f"--only {', '.join(sorted(unknown))}: unknown policy; choose from {', '.join(ORT_POLICIES)}")
    chosen = {name: entries for name, entries in ORT_POLICIES.items() if not args.only or name in args.only}
    runners = {f"ORT {name}": ort_runner(args.model, entries) for name, entries in chosen.items()}
    if not args.no_openvino:
        try:
            runners.update({f"OpenVINO pinned={pin}": openvino_runner(args.model, pin) for pin in (True, False)})
        except FcnEdgeError as missing:
            print(f"OpenVINO rows skipped: {missing}", file=sys.stderr)
    overlay = overlay_work(frame)
    pacings = ("gap", "busy", "alone")
    samples: dict[str, dict[str, list[float]]] = {name: {pacing: [] for pacing in pacings} for name in runners}
    for runner in runners.values():
        for _ in range(3):
            runner.infer(frame)
    for index in range(args.rounds):
        for name, runner in runners.items():
            for pacing in pacings:
                time.sleep(SETTLE_S)
                samples[name][pacing] += block(lambda runner=runner: runner.infer(frame), pacing, args.frames, overlay)
        print(f"round {index + 1}/{args.rounds}", file=sys.stderr)
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "model": args.model.name, "size": f"{args.size[0]}x{args.size[1]}", "frames": args.frames, "rounds": args.rounds,
        "pacings": list(pacings), "ort_policies": chosen,
        "policies": {
            name: {pacing: {"median": statistics.median(v), "p90": float(np.percentile(v, 90))} for pacing, v in rows.items()}
            for name, rows in samples.items()
        },
    }  # fmt: skip
    report.save(ROOT / "benchmarks" if args.update_docs else args.out_dir, "cpu_threads", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
