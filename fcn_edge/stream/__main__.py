"""``python -m fcn_edge.stream --camera 0``: segment a camera, video, folder or network stream live.

Exit status: 0 when the input ends, --max-frames is reached, the window is closed or the
run is stopped with Ctrl-C/SIGTERM (stopping a live stream is the normal way to end it;
the recording is finalised and the summary printed first; during start-up, too); 2 for a
user error (bad flag, no camera, missing model) or a failure while running (a full disk, an
unreadable image: the line says what was kept); 3 when a live source is lost and
reconnecting fails; 130 when a second Ctrl-C aborts without waiting.
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":  # a stop while the imports below load (about a second) is a clean stop, too
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, lambda *_: sys.exit(0))

import argparse
import threading
from pathlib import Path

from .. import cpu_features
from ..atomic import check_distinct, check_output, write_json_atomic
from ..backends import BACKENDS
from ..cli import finite_float, nonempty, size_hw
from ..errors import FcnEdgeError, run_cli
from ..paths import DEFAULT_MODEL
from ..sidecar import read_sidecar
from . import serve, sinks, sources
from .stats import SOURCE_LOST, StreamStats

EXIT_SOURCE_LOST = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fcn_edge.stream", description=__doc__.split("\n\n")[0])
    src = p.add_argument_group("source (one)").add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="N", help="V4L2 camera index (/dev/videoN)")
    src.add_argument("--device", type=nonempty, metavar="PATH", help="camera device path, e.g. /dev/video2")
    src.add_argument("--csi", type=int, metavar="N", help="Jetson CSI camera sensor id (needs OpenCV with GStreamer)")
    src.add_argument("--gst", type=nonempty, metavar="PIPELINE", help="GStreamer pipeline ending in appsink (BGR)")
    src.add_argument("--url", type=nonempty, metavar="URL", help="network stream, e.g. rtsp://host:8554/cam")
    src.add_argument("--video", type=Path, metavar="FILE", help="video file (every frame is processed)")
    src.add_argument("--images", type=Path, metavar="DIR", help="folder of images, in name order")
    src.add_argument("--synthetic", action="store_true", help="moving synthetic scenes (no device needed)")
    p.add_argument("--size", type=size_hw, metavar="HxW", help="requested capture size, e.g. 720x1280 (cameras, CSI, synthetic)")
    p.add_argument("--fps", type=finite_float, help="requested capture rate (synthetic: 30, 0 = unpaced)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="engine or .onnx (default: engines/default.int8.onnx)")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="default: by file type (.engine/.plan: tensorrt; .onnx: the CPU runtime its build measured fastest, onnxruntime without a sidecar)")
    p.add_argument("--threads", type=int, help="CPU inference threads, ONNX Runtime or OpenVINO (default: usable cores)")
    p.add_argument("--inflight", type=int, metavar="N",
                   help="frames in inference at once, OpenVINO only (a stream each up to the threads, which they split; "
                        "more wait for a free stream); default threads + 1 for --video/--images (throughput), "
                        "1 for live sources (each frame on every thread: latency)")
    p.add_argument("--providers", default="cpu", help="ONNX Runtime providers, comma-separated: cpu, cuda, tensorrt")
    p.add_argument("--cuda-binding", choices=("auto", "cuda-python", "pycuda"), default="auto", help="TensorRT runner")
    p.add_argument("--alpha", type=finite_float, default=0.5, help="overlay opacity, 0..1 (default 0.5)")
    p.add_argument("--legend", action="store_true", help="draw class names and colours")
    p.add_argument("--display", action="store_true", help="show an OpenCV window (q or Esc quits)")
    p.add_argument("--output", type=Path, metavar="FILE.mp4", help="record the overlays (MPEG-4 video in .mp4, .mov, .mkv or .avi)")
    p.add_argument("--save-dir", type=Path, metavar="DIR", help="write one PNG per frame")
    p.add_argument("--serve", type=serve.parse_address, metavar="[HOST:]PORT",
                   help="live page at http://HOST:PORT/ (HOST: 127.0.0.1 unless given; PORT 0: a free one)")
    p.add_argument("--serve-host", action="append", default=[], metavar="NAME",
                   help="a name the page may be reached by besides its IP address, localhost and this machine's name, "
                        "e.g. jetson.local (repeatable; other Host headers get 403: DNS rebinding)")
    p.add_argument("--serve-quality", type=int, default=80, metavar="Q", help="JPEG quality served, 1..100 (80)")
    p.add_argument("--serve-width", type=int, default=640, metavar="W", help="wider frames are served scaled to W (640; 0: as is)")
    p.add_argument("--serve-clients", type=int, default=4, metavar="N", help="viewers at once; more get 503 (4)")
    p.add_argument("--headless", action="store_true", help="no window even if one is possible")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--reconnect", type=int, default=3, metavar="N", help="tries when a live source stops (default 3)")
    p.add_argument("--reconnect-delay", type=finite_float, default=0.5, metavar="S", help="first retry delay, doubling (0.5)")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write the summary as JSON")
    args = p.parse_args(argv)
    checks = [
        (args.max_frames is not None and args.max_frames < 1, f"--max-frames {args.max_frames} must be at least 1"),
        (args.reconnect < 0, f"--reconnect {args.reconnect} must be 0 or more"),
        (args.inflight is not None and args.inflight < 1, f"--inflight {args.inflight} must be at least 1"),
        (args.reconnect_delay < 0, f"--reconnect-delay {args.reconnect_delay} must be 0 or more"),
        (args.headless and args.display, "--headless and --display contradict each other: choose one"),
        (not 1 <= args.serve_quality <= 100, f"--serve-quality {args.serve_quality} must be between 1 and 100"),
        (args.serve_width < 0, f"--serve-width {args.serve_width} must be 0 (frame size) or more"),
        (args.serve_clients < 1, f"--serve-clients {args.serve_clients} must be at least 1"),
    ]
    for failed, message in checks:
        if failed:
            raise FcnEdgeError(message)
    check_distinct(
        {"--model": args.model, "--video": args.video, "--images": args.images, "--device": args.device},
        {"--output": args.output, "--save-dir": args.save_dir, "--stats-json": args.stats_json},
    )  # a recording over its own video, PNGs into the folder being read
    if args.stats_json is not None:
        check_output(args.stats_json, "--stats-json")  # written after the run: found unwritable now, not then
    return args


def open_source(args: argparse.Namespace) -> sources.Source:
    size = (args.size[1], args.size[0]) if args.size else None  # sources take (width, height), as OpenCV does
    if args.camera is not None:
        source = sources.camera(args.camera, size, args.fps)
    elif args.device is not None:
        source = sources.device(args.device, size, args.fps)
    elif args.csi is not None:
        source = sources.csi(args.csi, size, args.fps)
    elif args.gst is not None:
        source = sources.gstreamer(args.gst, fps=args.fps)
    elif args.url is not None:
        source = sources.url(args.url)
    elif args.video is not None:
        source = sources.video(args.video)
    elif args.images is not None:
        source = sources.ImageFolderSource(args.images)
    else:
        default = sources.SYNTHETIC_DEFAULT
        source = sources.SyntheticSource(size or default[:2], default[2] if args.fps is None else args.fps)
    source.open()
    return source


def frames_in_flight(args: argparse.Namespace, source: sources.Source) -> int:
    """--inflight, else 1 for a live source (its frame's latency first) and, for files, where only throughput
    counts, a stream per thread and one frame waiting."""
    from ..backends.onnxruntime import default_threads
    from .pipeline import frames_in_flight_for_files

    if args.inflight is not None:
        return args.inflight
    return 1 if source.live else frames_in_flight_for_files(args.threads or default_threads())


def open_sinks(args: argparse.Namespace, fps: float) -> list[sinks.Sink]:
    chosen: list[sinks.Sink] = []
    wants_window = args.display or not (args.headless or args.output or args.save_dir or args.serve)
    if wants_window:
        problem = sinks.display_problem()
        if problem is None or args.display:
            chosen.append(sinks.DisplaySink())  # raises with the problem when --display was asked for
        else:
            print(f"note: no window ({problem}); running headless: add --output FILE.mp4 or --save-dir DIR", file=sys.stderr)
    if args.output:
        chosen.append(sinks.VideoFileSink(args.output, fps))
    if args.save_dir:
        chosen.append(sinks.ImageFolderSink(args.save_dir))
    if args.serve:
        server = serve.ServeSink(args.serve, args.model, args.serve_quality, args.serve_width, args.serve_clients,
                                 tuple(args.serve_host))
        print(server.banner, file=sys.stderr, flush=True)
        chosen.append(server)
    return chosen


def check_model(path: Path) -> None:
    if path.is_file():
        return
    if path.is_dir():
        raise FcnEdgeError(f"--model {path} is a folder: pass the model file in it, e.g. {path / DEFAULT_MODEL.name}")
    if path == DEFAULT_MODEL:
        raise FcnEdgeError(
            f"no model at {path}: build the default INT8 artifact with python scripts/build_engine.py --int8, "
            "or pass --model PATH"
        )
    raise FcnEdgeError(f"model {path} does not exist: check the path, or build one with python scripts/build_engine.py")


def install_stop_handlers(stop: threading.Event) -> dict:
    """First Ctrl-C/SIGTERM: finish the frame in flight and exit cleanly; a second one aborts.

    Returns the previous handlers, to put back when the stream is over.
    """

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\n{signal.Signals(signum).name}: stopping after the current frame (again to abort)", file=sys.stderr)

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}


def stream(args: argparse.Namespace, source: sources.Source, stop: threading.Event) -> StreamStats:
    """Load the model, set up overlay and sinks, run until the input ends or ``stop`` is set; the source is closed
    on every path, and a failure says what the sinks kept."""
    from ..backends import open_runner  # ONNX Runtime (and TensorRT, CUDA when asked for): after the cheap checks
    from .overlay import Overlay
    from .pipeline import Stream, StreamOptions

    chosen: list[sinks.Sink] = []
    try:
        # Input checks stay on: they cost microseconds, and a --gst pipeline may not deliver BGR frames.
        runner = open_runner(
            args.model, args.backend, threads=args.threads, providers=args.providers.split(","),
            cuda_binding=args.cuda_binding, inflight=frames_in_flight(args, source),
        )
        different_cpu = cpu_features.mismatch(((read_sidecar(Path(args.model)) or {}).get("verification") or {}).get("instruction_set"))
        if different_cpu:
            print(f"note: {args.model} was {different_cpu}", file=sys.stderr)
        if runner.palette is None:
            print(f"note: neither {args.model} nor its sidecar names the classes: default colours", file=sys.stderr)
        overlay = Overlay(runner.palette or [], args.alpha, runner.classes, args.legend)
        chosen = open_sinks(args, source.fps)
        runner.activate()
    except BaseException:
        source.close()
        for sink in chosen:  # a server already listening releases its port, a recording its temporary file
            sink.close()
        raise
    outputs = ", ".join(sink.description for sink in chosen) or "headless"
    at_once = f" ({runner.inflight} frames at once)" if runner.inflight > 1 else ""
    print(f"streaming {source.description} -> {runner.name}{at_once} -> {outputs} (Ctrl-C stops)", file=sys.stderr)
    options = StreamOptions(args.max_frames, args.reconnect, args.reconnect_delay)
    try:
        with runner:
            stats = Stream(source, runner, overlay, chosen, options, stop).run()  # closes the source and sinks
    except FcnEdgeError as error:
        kept = [k for k in (sink.kept() for sink in chosen) if k]
        raise FcnEdgeError("; ".join([str(error), *kept])) from None
    stats.info.update(model=str(args.model))
    return stats


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.display:
        sinks.require_display()
    check_model(args.model)
    stop = threading.Event()
    previous = install_stop_handlers(stop)  # from here a stop during start-up ends the run as cleanly as one later
    try:
        source = open_source(args)  # before the model loads: a missing camera is reported at once
        stats = stream(args, source, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(stats.summary(), file=sys.stderr)
    if args.stats_json:
        write_json_atomic(args.stats_json, stats.to_dict())
    return EXIT_SOURCE_LOST if stats.end_reason == SOURCE_LOST else 0


if __name__ == "__main__":
    sys.exit(main())
