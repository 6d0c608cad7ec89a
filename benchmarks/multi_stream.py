"""Many cameras, one engine: N video streams at 640x480 through one batched process, against N single-stream processes
and one process running the streams in turn, on ONNX Runtime and OpenVINO; interleaved in one run.

Per N (1, 2, 4, 8 streams) and backend, in each round, in this order:

- runner alone: the N frames run back to back as the loop runs them (parts of ceil(N / runner streams)
  frames, one running on each runner stream, the next starting as one finishes), nothing else in the
  process (what batching can give at best);
- batched: ``python -m fcn_edge.stream --video v0 ... --video vN-1 --headless`` (fcn_edge/stream/multi.py);
- N processes: N ``python -m fcn_edge.stream --video vi --headless`` at once, each with its defaults
  (what users run today: one process per camera);
- in turn: one process, the same loop with the runner's ``max_batch`` set to 1 and one stream
  (each stream's frame runs alone, on every thread, one after another).

Every frame of every video is processed (files: no drops), so fps is throughput. Aggregate fps:
every frame over the time from the first frame started to the last frame done, in the batched and
in-turn process and across the N processes alike (their stats JSON stamps both on the system's
monotonic clock). The sum of each process's own fps, used before, counted a process's frames
over its own window only: start-ups are staggered by seconds (OpenVINO compiles per process), so
a process ran part of its frames while the others were still starting, with the cores to itself.

Per-stream latency p95: the slowest stream's p95 of the time from the start of its frame's
inference to its labels (for a batch, the whole batch). Resident memory: each
process's peak RSS (``wait4``), summed over the N processes.

    python benchmarks/multi_stream.py                   # N = 1 2 4 8, both backends, 1 round
    python benchmarks/multi_stream.py --quick           # N = 1 4, 8 frames a stream: a few minutes
    python benchmarks/multi_stream.py --streams 4 --backends openvino --rounds 3 --frames 16

Writes benchmarks/results/multi_stream.json, .md and .png (aggregate fps per N; ``--stem`` renames them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcn_edge.atomic import atomic_path, write_json_atomic, write_text_atomic  # noqa: E402
from fcn_edge.cli import size_hw  # noqa: E402
from fcn_edge.errors import FcnEdgeError, run_cli  # noqa: E402

DEFAULT_MODEL = ROOT / "engines" / "default.int8.onnx"
OUT = ROOT / "benchmarks" / "results"
MODES = ("batched", "processes", "in_turn")
ALONE_CALLS = 15  # rounds of the N frames timed


def write_videos(folder: Path, count: int, frames: int, size: tuple[int, int]) -> list[Path]:
    """``count`` MJPG videos of synthetic scenes, each its own scene (a camera each)."""
    from fcn_edge.stream.sources import SyntheticSource

    paths = []
    for index in range(count):
        source = SyntheticSource(size[::-1], fps=0, seed=index)
        source.open()
        path = folder / f"cam{index}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size[::-1])
        for _ in range(frames):
            writer.write(source.read(None))
        writer.release()
        paths.append(path)
    return paths


def run_processes(commands: list[list[str]]) -> list[tuple[int, float]]:
    """Start every command at once; each one's (peak resident memory in MiB, CPU seconds) from wait4, once all have
    ended."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    peaks = []
    for process in started:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise FcnEdgeError(
                f"{' '.join(process.args[:6])} ... failed ({process.returncode}): {process.stderr.read().decode()[-400:]}"
            )
        process.stderr.close()
        peaks.append((usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime))
    return peaks


def stream_command(videos: list[Path], model: Path, backend: str, stats: Path) -> list[str]:
    sources = [arg for video in videos for arg in ("--video", str(video))]
    return [sys.executable, "-m", "fcn_edge.stream", *sources, "--model", str(model), "--backend", backend, "--headless",
            "--stats-json", str(stats)]  # fmt: skip


def measure(mode: str, videos: list[Path], model: Path, backend: str, work: Path) -> dict:
    """One mode's run over ``videos``: aggregate fps, each stream's fps, the slowest stream's infer p95, RSS."""
    if mode == "processes":
        jsons = [work / f"single{i}.json" for i in range(len(videos))]
        peaks = run_processes([stream_command([video], model, backend, j) for video, j in zip(videos, jsons)])
        streams = [json.loads(j.read_text()) for j in jsons]
        first = min(s["monotonic_s"][0] for s in streams)
        last = max(s["monotonic_s"][1] for s in streams)
        fps = [s["fps"] for s in streams]
        return {"fps": sum(s["frames"] for s in streams) / (last - first), "stream_fps": fps,
                "rss_mib": sum(rss for rss, _ in peaks),
                "cpu_ms_per_frame": 1e3 * sum(cpu for _, cpu in peaks) / sum(s["frames"] for s in streams),
                "p95_ms": max(s["stages_ms"]["infer"]["p95_ms"] for s in streams)}  # fmt: skip
    out = work / f"{mode}.json"
    if mode == "batched":
        command = stream_command(videos, model, backend, out)
    else:
        command = [sys.executable, __file__, "--child", mode, "--model", str(model), "--backends", backend, "--out", str(out),
                   *map(str, videos)]  # fmt: skip
    ((peak, cpu),) = run_processes([command])
    result = json.loads(out.read_text())
    result.setdefault("streams", [result])  # one source: the single-stream loop's summary
    return {"fps": result["fps"], "stream_fps": [s["fps"] for s in result["streams"]], "rss_mib": peak,
            "cpu_ms_per_frame": 1e3 * cpu / sum(s["frames"] for s in result["streams"]),
            "p95_ms": max(s["stages_ms"]["infer"]["p95_ms"] for s in result["streams"]),
            "mean_batch": result.get("mean_batch")}  # fmt: skip


def child(mode: str, videos: list[Path], model: Path, backend: str, out: Path) -> None:
    """In a process of its own: the streams in turn through the multi-stream loop, or the runner alone on a batch."""
    from fcn_edge.backends import open_runner
    from fcn_edge.backends.onnxruntime import default_threads
    from fcn_edge.stream import sources
    from fcn_edge.stream.multi import MultiStream
    from fcn_edge.stream.overlay import Overlay
    from fcn_edge.stream.pipeline import StreamOptions

    runner = open_runner(model, backend, inflight=default_threads() if mode == "alone" else 1)  # alone: as the CLI
    with runner:
        if mode == "alone":
            captures = [cv2.VideoCapture(str(v)) for v in videos]
            batch = np.stack([c.read()[1] for c in captures])
            share = -(-len(batch) // runner.inflight)  # as the loop runs it: a part a runner stream, pipelined (multi.py)
            parts = [batch[low : low + share].copy() for low in range(0, len(batch), share)]
            parts = [part[0] if len(part) == 1 else part for part in parts]

            lanes = min(runner.inflight, len(parts))  # a stream has one frame running: N = 1 runs one part at a time

            def run(rounds: int) -> None:
                """Every part ``rounds`` times, as the loop keeps each runner stream busy: one starts as the oldest returns."""
                running = 0
                for _ in range(rounds):
                    for part in parts:
                        if runner.inflight == 1:
                            runner.infer(part)
                            continue
                        if running == lanes:
                            runner.wait()
                            running -= 1
                        runner.start(part)
                        running += 1
                for _ in range(running):
                    runner.wait()

            run(1)  # compile / first-run costs
            start = time.perf_counter()
            run(ALONE_CALLS)
            write_json_atomic(out, {"fps": ALONE_CALLS * len(videos) / (time.perf_counter() - start)})
            return
        runner.max_batch = 1  # in turn: each stream's frame runs alone, one after the other
        opened = [sources.video(v) for v in videos]
        for source in opened:
            source.open()
        multi = MultiStream([(v.stem, s, []) for v, s in zip(videos, opened)], runner, Overlay([], 0.5),
                            StreamOptions(status_interval=0))  # fmt: skip
        multi.run()
        write_json_atomic(out, multi.to_dict())


def alone(videos: list[Path], model: Path, backend: str, work: Path) -> float:
    out = work / "alone.json"
    run_processes([[sys.executable, __file__, "--child", "alone", "--model", str(model), "--backends", backend,
                    "--out", str(out), *map(str, videos)]])  # fmt: skip
    return json.loads(out.read_text())["fps"]


def markdown(result: dict) -> str:
    lines = [
        "# Many streams, one engine (latest run)", "",
        f"{result['machine']}; load average {result['load_average'][0]} before, {result['load_average'][1]} after "
        f"(a machine shared with other work: runs interleaved, {result['rounds']} round(s)); model {result['model']}; "
        f"{result['frames']} frames a stream at {result['size']}; medians over rounds.", "",
        "| backend | N | runner alone fps | batched fps | N processes fps | in turn fps | batched / N processes | "
        "batched / runner alone | per-stream fps spread (batched) | p95 ms batched / processes / in turn | "
        "RSS MiB batched / processes / in turn | CPU ms a frame batched / processes / in turn |",
        "| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |",
    ]  # fmt: skip
    for row in result["rows"]:
        b, p, t = (row[m] for m in MODES)
        lines.append(
            f"| {row['backend']} | {row['streams']} | {row['alone_fps']:.2f} | {b['fps']:.2f} | {p['fps']:.2f} | {t['fps']:.2f} | "
            f"{b['fps'] / p['fps']:.2f}x | {b['fps'] / row['alone_fps']:.2f} | {row['spread']:.1%} | "
            f"{b['p95_ms']:.0f} / {p['p95_ms']:.0f} / {t['p95_ms']:.0f} | {b['rss_mib']:.0f} / {p['rss_mib']:.0f} / {t['rss_mib']:.0f} | "
            f"{b['cpu_ms_per_frame']:.0f} / {p['cpu_ms_per_frame']:.0f} / {t['cpu_ms_per_frame']:.0f} |"
        )
    lines += ["", "Spread: (fastest - slowest) / slowest stream fps in the batched process. RSS of N processes: their "
              "peaks summed. CPU ms a frame: user + system CPU time of the process(es), start-up included, over the "
              "frames they processed (on a shared machine N processes also take a larger share of the cores from "
              "other tenants, which fps alone does not show)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    backends = list(dict.fromkeys(r["backend"] for r in result["rows"]))
    figure, axes = plt.subplots(1, len(backends), figsize=(5 * len(backends), 3.6), squeeze=False)
    for axis, backend in zip(axes[0], backends):
        rows = [r for r in result["rows"] if r["backend"] == backend]
        counts = [r["streams"] for r in rows]
        for key, label in (("alone_fps", "runner alone (batch)"), *((m, m.replace("_", " ")) for m in MODES)):
            values = [r[key] if key == "alone_fps" else r[key]["fps"] for r in rows]
            axis.plot(counts, values, marker="o", label=label, linestyle="--" if key == "alone_fps" else "-")
        axis.set_xticks(counts)
        axis.set_xlabel("streams (640x480 video each)")
        axis.set_ylabel("aggregate fps, higher is better")
        axis.set_title(backend)
        axis.legend(fontsize=8)
    figure.suptitle(f"Many streams, one engine: {result['model']}, {result['machine']}", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def median_run(runs: list[dict]) -> dict:
    """Per-field medians over rounds (per-stream fps element-wise)."""
    merged = {key: statistics.median(r[key] for r in runs) for key in ("fps", "p95_ms", "rss_mib", "cpu_ms_per_frame")}
    merged["stream_fps"] = [statistics.median(values) for values in zip(*(r["stream_fps"] for r in runs))]
    return merged


@run_cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="default engines/default.int8.onnx (fcn-edge build --int8)")
    p.add_argument("--backends", nargs="+", default=["openvino", "onnxruntime"], choices=("openvino", "onnxruntime"))
    p.add_argument("--streams", nargs="+", type=int, default=[1, 2, 4, 8], metavar="N")
    p.add_argument("--frames", type=int, default=12, help="frames a stream (12)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--size", type=size_hw, default=(480, 640), metavar="HxW")
    p.add_argument("--quick", action="store_true", help="N = 1 4, 8 frames a stream")
    p.add_argument("--out-dir", type=Path, default=Path("runs/benchmarks"), help="where the JSON, Markdown and chart go")
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="write the committed tables in benchmarks/results/ (docs/stream.md shows them) instead",
    )
    p.add_argument("--stem", default="multi_stream", help="result file names: STEM.json, .md, .png")
    p.add_argument("--child", choices=("in_turn", "alone"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("videos", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.videos, args.model, args.backends[0], args.out)
        return 0
    if not args.model.is_file():
        raise FcnEdgeError(f"--model {args.model} does not exist: build it with fcn-edge build --int8")
    if args.quick:
        args.streams, args.frames = [1, 4], 8
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        videos = write_videos(work, max(args.streams), args.frames, args.size)
        runs: dict[tuple[str, int], dict[str, list]] = {}
        for round_ in range(args.rounds):
            for backend in args.backends:
                for count in args.streams:
                    chosen = videos[:count]
                    cell = runs.setdefault((backend, count), {"alone": [], **{m: [] for m in MODES}})
                    cell["alone"].append(alone(chosen, args.model, backend, work))
                    order = MODES[round_ % 3 :] + MODES[: round_ % 3]  # who runs first rotates across rounds
                    for mode in order:
                        cell[mode].append(measure(mode, chosen, args.model, backend, work))
                        print(f"round {round_ + 1} {backend} N={count} {mode}: {cell[mode][-1]['fps']:.2f} fps", file=sys.stderr)
    rows = []
    for (backend, count), cell in runs.items():
        row = {"backend": backend, "streams": count, "alone_fps": statistics.median(cell["alone"])}
        row.update({mode: median_run(cell[mode]) for mode in MODES})
        fps = row["batched"]["stream_fps"]
        row["spread"] = (max(fps) - min(fps)) / min(fps) if min(fps) > 0 else float("inf")
        rows.append(row)
    result = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores ({cpu_name()})",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "model": args.model.name, "size": "x".join(map(str, args.size)), "frames": args.frames, "rounds": args.rounds,
        "rows": rows,
    }  # fmt: skip
    if args.update_docs:
        args.out_dir = OUT
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out_dir / f"{args.stem}.json", result)
    text = markdown(result)
    write_text_atomic(args.out_dir / f"{args.stem}.md", text)
    chart(result, args.out_dir / f"{args.stem}.png")
    print(text)
    return 0


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
