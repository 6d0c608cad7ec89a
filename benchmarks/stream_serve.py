"""What ``--serve`` costs the stream loop: fps with a browser view against the same loop without one.

On the frames of a 640x480 video, the loop (``fcn_edge.stream.pipeline.Stream``, as
``python -m fcn_edge.stream`` runs it) runs headless, then with ``--serve`` and one client
that connects to /stream.mjpg and never reads (the issue's case: it must not slow the
loop), then with one client that reads every byte (a browser watching: every frame is
encoded once). The three alternate, in rounds, so a shared machine's drifting background
load hits them alike; each served run's ratio is its fps over the mean fps of the headless
runs just before and after it, and the reported ratio is the median over rounds. Each run
also records the process's CPU time per frame, which other work on a shared machine moves
far less than fps: what serving adds is visible there even when fps ratios scatter.

    python benchmarks/stream_serve.py                          # engines/default.int8.onnx, or an FP32 stand-in
    python benchmarks/stream_serve.py --frames 100 --rounds 15 # a busy machine: more, shorter rounds

Writes benchmarks/stream_serve.json and .md (the latest result).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcn_edge.bench import report  # noqa: E402
from fcn_edge.backends import open_runner  # noqa: E402
from fcn_edge.cli import HelpFormatter, size_hw  # noqa: E402
from fcn_edge.errors import FcnEdgeError, run_cli  # noqa: E402
from fcn_edge.stream import sources  # noqa: E402
from fcn_edge.stream.overlay import Overlay  # noqa: E402
from fcn_edge.stream.pipeline import Stream, StreamOptions  # noqa: E402
from fcn_edge.stream.serve import ServeSink  # noqa: E402

from fcn_edge.stream.bench_inputs import DEFAULT_MODEL, describe, stand_in_model, write_video  # noqa: E402

HEADLESS, STUCK, WATCHING = "headless", "--serve, 1 client that never reads", "--serve, 1 client reading every frame"


def connect_stuck(sink: ServeSink) -> socket.socket:
    """A client that asks for the stream and never reads a byte."""
    client = socket.create_connection(("127.0.0.1", sink.port))
    client.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    return client


def connect_reader(sink: ServeSink) -> threading.Thread:
    """A client that reads everything until the stream ends, as a browser's <img> does."""
    response = urllib.request.urlopen(sink.url + "stream.mjpg", timeout=60)

    def drain() -> None:
        while response.read(1 << 16):
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return reader


def run(kind: str, runner, video: Path, overlay: Overlay, frames: int, model: Path) -> dict:
    """One loop run over the video; a served run gets its client connected before the first frame."""
    sinks, client = [], None
    if kind != HEADLESS:
        sink = ServeSink(("127.0.0.1", 0), model)
        sinks.append(sink)
        client = connect_stuck(sink) if kind == STUCK else connect_reader(sink)
        while sink.frames.clients < 1:  # the server has taken the request
            time.sleep(0.01)
    source = sources.video(video)
    source.open()
    cpu = time.process_time()
    stats = Stream(source, runner, overlay, sinks, StreamOptions(max_frames=frames, status_interval=0)).run()
    cpu_ms = (time.process_time() - cpu) * 1e3 / stats.frames  # every thread of this process, the reader's too
    encoded = sinks[0].frames.seq if sinks else 0
    if isinstance(client, socket.socket):
        client.close()
    elif client is not None:
        client.join()
    return {"fps": stats.fps, "frames": stats.frames, "encoded": encoded, "cpu_ms_per_frame": cpu_ms,
            "write_p50_ms": stats.stages["write"].percentile(50), "write_p95_ms": stats.stages["write"].percentile(95)}  # fmt: skip


def markdown(result: dict) -> str:
    lines = [
        "# `--serve` cost to the stream loop (latest run)",
        "",
        f"{result['machine']} (1-minute load average {result['load_average'][0]} before, "
        f"{result['load_average'][1]} after); model: {result['model']}; {result['size']} video, "
        f"{result['runner']}, {result['threads']} threads; {result['rounds']} rounds of {result['frames']} frames, served runs "
        "between headless runs. ratio = served fps / mean fps of the headless runs just before and after "
        "(median over rounds); the issue's target for the client that never reads: >= 0.95. CPU ms per frame: "
        "process CPU time (all threads, the reading client's too) over frames, median over rounds: unlike fps, "
        "other work on the machine hardly moves it.",
        "",
        "| loop | fps | ratio | ratios per round | CPU ms per frame | frames encoded | write p50 / p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["loops"].items():
        rounds = ", ".join(f"{x:.3f}" for x in r["ratios"]) if r["ratios"] else "-"
        ratio = f"**{r['ratio']:.3f}**" if r["ratios"] else "1"
        lines.append(f"| {name} | {r['fps']:.2f} | {ratio} | {rounds} | {r['cpu_ms_per_frame']:.1f} | {r['encoded']} of {r['frames']} "
                     f"| {r['write_p50_ms']:.2f} / {r['write_p95_ms']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


@run_cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--model", type=Path, help="default: engines/default.int8.onnx, else an FP32 stand-in")
    p.add_argument("--frames", type=int, default=150, help="frames per loop run (default 150)")
    p.add_argument("--rounds", type=int, default=9, help="runs per kind (default 9)")
    p.add_argument("--size", type=size_hw, default=(480, 640), metavar="HxW")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: usable cores)")
    p.add_argument("--out-dir", type=Path, default=Path("runs/benchmarks"), help="where the JSON and Markdown go")
    p.add_argument(
        "--update-docs", action="store_true", help="write the committed tables in benchmarks/ (docs/ links them) instead"
    )
    args = p.parse_args(argv)
    if args.frames < 10 or args.rounds < 1:
        raise FcnEdgeError("--frames must be at least 10 and --rounds at least 1")
    size = (args.size[1], args.size[0])  # (width, height), as OpenCV and the sources take it
    load_before = os.getloadavg()[0]
    kinds = (HEADLESS, STUCK, HEADLESS, WATCHING)  # every served run sits between two headless runs
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model or DEFAULT_MODEL.is_file():
            model = args.model or DEFAULT_MODEL
            described = describe(model)
        else:
            model = tmp / "stand_in.onnx"
            described = stand_in_model(model)
        video = tmp / "frames.avi"
        write_video(video, args.frames, size)
        runner = open_runner(model, threads=args.threads, check_inputs=False)
        overlay = Overlay(runner.palette or [], 0.5)
        runs: list[tuple[str, dict]] = []
        with runner:
            run(HEADLESS, runner, video, overlay, args.frames, model)  # warm-up
            for _ in range(args.rounds):
                for kind in kinds:
                    runs.append((kind, run(kind, runner, video, overlay, args.frames, model)))
            runs.append((HEADLESS, run(HEADLESS, runner, video, overlay, args.frames, model)))
    loops = {}
    for name in (HEADLESS, STUCK, WATCHING):
        picks = [i for i, (kind, _) in enumerate(runs) if kind == name]
        ratios = [] if name == HEADLESS else [
            runs[i][1]["fps"] / statistics.mean((runs[i - 1][1]["fps"], runs[i + 1][1]["fps"])) for i in picks
        ]  # fmt: skip
        middle = runs[sorted(picks, key=lambda i: runs[i][1]["fps"])[len(picks) // 2]][1]
        cpu_ms = statistics.median(runs[i][1]["cpu_ms_per_frame"] for i in picks)
        loops[name] = {**middle, "ratio": statistics.median(ratios) if ratios else 1.0, "ratios": ratios,
                       "cpu_ms_per_frame": cpu_ms}  # fmt: skip
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "model": described,
        "size": f"{size[0]}x{size[1]}",
        "runner": runner.name,
        "threads": runner.threads,
        "frames": args.frames,
        "rounds": args.rounds,
        "loops": loops,
    }
    report.save(ROOT / "benchmarks" if args.update_docs else args.out_dir, "stream_serve", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
