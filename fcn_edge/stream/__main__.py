"""``fcn-edge stream --camera 0`` (or ``python -m fcn_edge.stream``): segment a camera, video, folder or network stream live.

Several sources (``--camera 0 --camera 1 --url rtsp://...``, or ``--sources FILE``) run as
one stream each through one model, batched (fcn_edge/stream/multi.py); each stream has its
own recording (``--output runs/{name}.mp4``), stats and drop policy.

Exit status: 0 when the input ends, --max-frames is reached, the window is closed or the
run is stopped with Ctrl-C/SIGTERM (stopping a live stream is the normal way to end it;
the recording is finalised and the summary printed first; during start-up, too); 2 for a
user error (bad flag, no camera, missing model) or a failure while running (a full disk, an
unreadable image: the line says what was kept); 3 when a live source is lost and
reconnecting fails (several streams: any of them; the others run on); 130 when a second Ctrl-C aborts without waiting.
"""

from __future__ import annotations

import os
import signal
import sys

if __name__ == "__main__":  # a stop while the imports below load (about a second) is a clean stop, too
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, lambda *_: sys.exit(0))

import argparse
import threading
from pathlib import Path
from typing import Sequence

from .. import cpu_features
from ..atomic import check_distinct, check_output, ensure_folder, write_json_atomic
from ..backends import BACKENDS
from ..cli import HelpFormatter, finite_float, nonempty, nonempty_path, positive_int, size_hw
from ..errors import FcnEdgeError, run_cli
from ..paths import DEFAULT_MODEL, default_input
from ..sidecar import Sidecar
from . import feeds, serve, sinks, sources
from .stats import SOURCE_LOST, StreamStats

EXIT_SOURCE_LOST = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fcn-edge stream", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    src = p.add_argument_group("sources (repeatable: several sources run as one batched stream each)")
    src.add_argument("--camera", type=int, action=AddSource, metavar="N", help="V4L2 camera index (/dev/videoN)")
    src.add_argument("--device", type=nonempty, action=AddSource, metavar="PATH", help="camera device path, e.g. /dev/video2")
    src.add_argument(
        "--csi", type=int, action=AddSource, metavar="N", help="Jetson CSI camera sensor id (needs OpenCV with GStreamer)"
    )
    src.add_argument(
        "--gst", type=nonempty, action=AddSource, metavar="PIPELINE", help="GStreamer pipeline ending in appsink (BGR)"
    )
    src.add_argument(
        "--url", "--rtsp", type=nonempty, action=AddSource, metavar="URL", help="network stream, e.g. rtsp://host:8554/cam"
    )
    src.add_argument(
        "--video", type=nonempty_path, action=AddSource, metavar="FILE", help="video file (every frame is processed)"
    )
    src.add_argument("--images", type=nonempty_path, action=AddSource, metavar="DIR", help="folder of images, in name order")
    src.add_argument(
        "--synthetic", nargs=0, action=AddSource, help="moving synthetic scenes (no device needed; again: another scene)"
    )
    src.add_argument(
        "--sources",
        type=nonempty_path,
        metavar="FILE",
        help="one source a line, [NAME] URI: rtsp://..., http://..., camera:N, /dev/videoN, video:PATH, images:DIR, synthetic",
    )
    p.add_argument("--size", type=size_hw, metavar="HxW", help="requested capture size, e.g. 720x1280 (cameras, CSI, synthetic)")
    p.add_argument("--fps", type=finite_float, help="requested capture rate (synthetic: 30, 0 = unpaced)")
    p.add_argument(
        "--model", type=nonempty_path, default=DEFAULT_MODEL, help="engine or .onnx (default: engines/default.int8.onnx)"
    )
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="default: by file type (.engine/.plan: tensorrt; .onnx: the CPU runtime its build measured fastest, "
                        "onnxruntime without a sidecar)")  # fmt: skip
    p.add_argument("--threads", type=positive_int, help="CPU inference threads, ONNX Runtime or OpenVINO (default: usable cores)")
    p.add_argument(
        "--inflight",
        type=int,
        metavar="N",
        help="frames in inference at once on the CPU runtimes (a stream or session each up to the threads, which they "
        "split; more wait for a free one); default threads + 1 for --video/--images (throughput), "
        "1 for live sources (each frame on every thread: latency)",
    )
    p.add_argument("--providers", default="cpu", help="ONNX Runtime providers, comma-separated: cpu, cuda, tensorrt")
    p.add_argument("--cuda-binding", choices=("auto", "cuda-python", "pycuda"), default="auto", help="TensorRT runner")
    p.add_argument("--alpha", type=finite_float, default=0.5, help="overlay opacity, 0..1 (default 0.5)")
    p.add_argument("--legend", action="store_true", help="draw class names and colours")
    p.add_argument("--display", action="store_true", help="show an OpenCV window (q or Esc quits)")
    p.add_argument(
        "--output",
        type=nonempty_path,
        metavar="FILE.mp4",
        help="record the overlays (MPEG-4 video in .mp4, .mov, .mkv or .avi); "
        "several streams: a template such as runs/{name}.mp4 ({name}, {id}) or a folder (FOLDER/NAME.mp4)",
    )
    p.add_argument(
        "--save-dir",
        type=nonempty_path,
        metavar="DIR",
        help="write one PNG per frame (several streams: DIR/NAME, or a {name} template)",
    )
    p.add_argument(
        "--serve",
        type=serve.parse_address,
        metavar="[HOST:]PORT",
        help="live page at http://HOST:PORT/ (HOST: 127.0.0.1 unless given; PORT 0: a free one)",
    )
    p.add_argument(
        "--serve-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the page may be reached by besides its IP address, localhost and this machine's name, "
        "e.g. jetson.local (repeatable; other Host headers get 403: DNS rebinding)",
    )
    p.add_argument(
        "--serve-token",
        metavar="TOKEN",
        help=f"viewers must give TOKEN (?token=, a cookie or Authorization: Bearer): for networks not "
        f"trusted; ${serve.TOKEN_ENV} keeps it out of ps",
    )
    p.add_argument("--serve-quality", type=int, default=80, metavar="Q", help="JPEG quality served, 1..100 (80)")
    p.add_argument(
        "--serve-width", type=int, default=640, metavar="W", help="wider frames are served scaled to W (640; 0: as is)"
    )
    p.add_argument("--serve-clients", type=int, default=4, metavar="N", help="viewers at once; more get 503 (4)")
    p.add_argument("--headless", action="store_true", help="no window even if one is possible")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--reconnect", type=int, default=3, metavar="N", help="tries when a live source stops (default 3)")
    p.add_argument("--reconnect-delay", type=finite_float, default=0.5, metavar="S", help="first retry delay, doubling (0.5)")
    p.add_argument("--stats-json", type=nonempty_path, metavar="FILE", help="write the summary as JSON")
    args = p.parse_args(argv)
    args.streams = [*(getattr(args, "streams", None) or []), *(feeds.read_sources_file(args.sources) if args.sources else [])]
    if not args.streams:
        raise FcnEdgeError(
            "no source given: add --camera N, --video FILE, --url URL, --images DIR, --synthetic (each repeatable) or --sources FILE"
        )
    args.names = feeds.stream_names(args.streams)
    several = len(args.streams) > 1
    args.outputs = feeds.output_paths("--output", args.output, args.names, ".mp4")
    args.save_dirs = feeds.output_paths("--save-dir", args.save_dir, args.names, "")
    checks = [
        (several and args.display, "--display shows one stream: with several sources use --serve (a grid of all) or --output"),
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
    if args.serve_token is not None and not args.serve:
        raise FcnEdgeError("--serve-token guards --serve, which is not given: add --serve PORT")
    if args.serve_token is not None:
        serve.check_token(args.serve_token, "--serve-token")
    elif args.serve and serve.TOKEN_ENV in os.environ:  # the environment's token: not in ps
        args.serve_token = serve.check_token(os.environ[serve.TOKEN_ENV], f"${serve.TOKEN_ENV}")
    inputs = {"--model": args.model, "--sources": args.sources}
    inputs.update(
        {f"--{spec.kind} {spec.value}": spec.value for spec in args.streams if spec.kind in ("video", "images", "device")}
    )
    outputs = {"--stats-json": args.stats_json}
    outputs.update({f"--output ({name})": path for name, path in zip(args.names, args.outputs)})
    outputs.update({f"--save-dir ({name})": path for name, path in zip(args.names, args.save_dirs)})
    check_distinct(inputs, outputs)  # a recording over its own video, PNGs into the folder being read
    if args.stats_json is not None:
        check_output(args.stats_json, "--stats-json")  # written after the run: found unwritable now, not then
    return args


class AddSource(argparse.Action):
    """Source flags append to one list, in command-line order: the streams' ids."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        specs = list(getattr(namespace, "streams", None) or [])
        kind = self.dest
        if kind == "synthetic":
            values = str(sum(spec.kind == "synthetic" for spec in specs))  # each another scene
        specs.append(feeds.SourceSpec(kind, str(values)))
        namespace.streams = specs


def open_source(args: argparse.Namespace, spec: feeds.SourceSpec | None = None) -> sources.Source:
    size = (args.size[1], args.size[0]) if args.size else None  # sources take (width, height), as OpenCV does
    source = feeds.open_spec(spec or args.streams[0], size, args.fps)
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


def overlay_names(source) -> list[str]:
    """The --images files' names for their overlays (a.jpg -> a), whole names where two stems clash (a.jpg, a.png)."""
    files = getattr(source, "files", None) or []
    stems = [p.stem for p in files]
    return stems if len(set(stems)) == len(stems) else [p.name for p in files]


def open_sinks(args: argparse.Namespace, fps: float, index: int = 0, names: Sequence[str] = ()) -> list[sinks.Sink]:
    """The sinks of stream ``index``: its recording and PNG folder (``names``: its source images' names, for the
    PNGs; a file source never drops a frame), the window and the page (one stream)."""
    chosen: list[sinks.Sink] = []
    output, save_dir = args.outputs[index], args.save_dirs[index]
    if len(args.streams) > 1:
        if output:
            ensure_folder(output.parent, "--output")  # a template's or folder's: made for the streams
        return ([sinks.VideoFileSink(output, fps)] if output else []) + (
            [sinks.ImageFolderSink(save_dir, names)] if save_dir else []
        )
    wants_window = args.display or not (args.headless or args.output or args.save_dir or args.serve)
    if wants_window:
        problem = sinks.display_problem()
        if problem is None or args.display:
            chosen.append(sinks.DisplaySink())  # raises with the problem when --display was asked for
        else:
            print(f"note: no window ({problem}); running headless: add --output FILE.mp4 or --save-dir DIR", file=sys.stderr)
    if output:
        chosen.append(sinks.VideoFileSink(output, fps))
    if save_dir:
        chosen.append(sinks.ImageFolderSink(save_dir, names))
    if args.serve:
        server = serve.ServeSink(
            args.serve,
            args.model,
            args.serve_quality,
            args.serve_width,
            args.serve_clients,
            tuple(args.serve_host),
            args.serve_token,
        )
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
            f"no model at {path}: build the default INT8 artifact with fcn-edge build --int8, "
            "or pass --model PATH; without torch here, copy engines/<name>.int8.onnx and its .json sidecar from the "
            "machine that built it (docs/install.md, Deploy only)"
        )
    raise FcnEdgeError(f"model {path} does not exist: check the path, or build one with fcn-edge build")


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


def note_other_cpu(model: str | Path) -> None:
    """One line when the model's sidecar says it was verified on a CPU with another instruction set (:mod:`..cpu_features`)."""
    verification = Sidecar.beside(Path(model)).content.get("verification")
    other = cpu_features.mismatch(verification.get("instruction_set") if isinstance(verification, dict) else None)
    if other:
        print(f"note: {model} was {other}", file=sys.stderr)


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
            args.model,
            args.backend,
            threads=args.threads,
            providers=args.providers.split(","),
            cuda_binding=args.cuda_binding,
            inflight=frames_in_flight(args, source),
        )
        note_other_cpu(args.model)
        if runner.palette is None:
            print(f"note: neither {args.model} nor its sidecar names the classes: default colours", file=sys.stderr)
        overlay = Overlay(runner.palette or [], args.alpha, runner.classes, args.legend)
        chosen = open_sinks(args, source.fps, names=overlay_names(source))
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


def stream_several(args: argparse.Namespace, opened: list[sources.Source], stop: threading.Event):
    """Several sources through one runner (fcn_edge/stream/multi.py); every source and sink is closed on every path."""
    from ..backends import open_runner
    from .multi import MultiStream
    from .overlay import Overlay
    from .pipeline import StreamOptions

    chosen: list[list[sinks.Sink]] = []
    page: serve.ServeSink | None = None  # one server for every stream: a grid at /, /stream/<id>.mjpg each
    try:
        from ..backends.onnxruntime import default_threads

        # OpenVINO and ONNX Runtime: a stream (session) per thread, a part of each batch each (multi.py); TensorRT takes
        # one batch at a time
        runner = open_runner(args.model, args.backend, threads=args.threads, providers=args.providers.split(","),
                             cuda_binding=args.cuda_binding, inflight=args.inflight or args.threads or default_threads())  # fmt: skip
        note_other_cpu(args.model)
        overlay = Overlay(runner.palette or [], args.alpha, runner.classes, args.legend)
        if args.serve:
            page = serve.ServeSink(args.serve, args.model, args.serve_quality, args.serve_width, args.serve_clients,
                                   tuple(args.serve_host), args.serve_token, streams=tuple(args.names))  # fmt: skip
            print(page.banner, file=sys.stderr, flush=True)
        for index, source in enumerate(opened):
            chosen.append(open_sinks(args, source.fps, index, overlay_names(source)) + ([page.channels[index]] if page else []))
        runner.activate()
    except BaseException:
        for source in opened:
            source.close()
        for sink in (sink for stream_sinks in chosen for sink in stream_sinks):
            sink.close()
        if page is not None:
            page.close()
        raise
    for name, source, stream_sinks in zip(args.names, opened, chosen):
        outputs = ", ".join(sink.description for sink in stream_sinks) or "headless"
        print(f"stream {name}: {source.description} -> {outputs}", file=sys.stderr)
    print(f"{len(opened)} streams -> {runner.name}, batched (Ctrl-C stops)", file=sys.stderr)
    options = StreamOptions(args.max_frames, args.reconnect, args.reconnect_delay)
    multi = MultiStream(list(zip(args.names, opened, chosen)), runner, overlay, options, stop)
    try:
        with runner:
            multi.run()
    except FcnEdgeError as error:
        kept = [k for k in (sink.kept() for stream_sinks in chosen for sink in stream_sinks) if k]
        raise FcnEdgeError("; ".join([str(error), *kept])) from None
    finally:
        if page is not None:
            page.close()  # after every stream's viewers got their closing boundary
    for feed in multi.feeds:
        feed.stats.info.update(model=str(args.model))
    return multi


@run_cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.display:
        sinks.require_display()
    if args.model == DEFAULT_MODEL:  # the working folder's engines/ (fcn-edge build writes there), else the project's
        args.model = default_input(DEFAULT_MODEL, "model")
    check_model(args.model)
    stop = threading.Event()
    previous = install_stop_handlers(stop)  # from here a stop during start-up ends the run as cleanly as one later
    try:
        if len(args.streams) > 1:
            return several(args, stop)
        source = open_source(args)  # before the model loads: a missing camera is reported at once
        stats = stream(args, source, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(stats.summary(), file=sys.stderr)
    if args.stats_json:
        write_json_atomic(args.stats_json, stats.to_dict())
    return EXIT_SOURCE_LOST if stats.end_reason == SOURCE_LOST else 0


def several(args: argparse.Namespace, stop: threading.Event) -> int:
    """Open every source first (a missing camera is reported before the model loads), run them batched, report."""
    opened: list[sources.Source] = []
    try:
        for spec in args.streams:
            opened.append(open_source(args, spec))
    except BaseException:
        for source in opened:
            source.close()
        raise
    multi = stream_several(args, opened, stop)
    print(multi.summary(), file=sys.stderr)
    if args.stats_json:
        write_json_atomic(args.stats_json, multi.to_dict())
    return EXIT_SOURCE_LOST if any(feed.stats.end_reason == SOURCE_LOST for feed in multi.feeds) else 0


if __name__ == "__main__":
    sys.exit(main())
