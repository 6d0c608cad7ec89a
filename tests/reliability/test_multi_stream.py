"""Several sources through one runner (``python -m fcn_edge.stream --video a --video b --url ...``), as a user runs it:
real videos, a real MJPEG-over-HTTP server that is stopped mid-run, a real ONNX Runtime model."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import assert_user_error
from faults import frame_segmenter, frames_in, stream
from fcn_edge.backends import open_runner
from fcn_edge.runner import Runner
from fcn_edge.stream.feeds import SourceSpec, output_paths, read_sources_file, stream_names
from fcn_edge.stream.multi import MultiStream
from fcn_edge.stream.overlay import Overlay
from fcn_edge.stream.pipeline import StreamOptions
from fcn_edge.stream.sinks import Sink
from fcn_edge.stream.sources import SyntheticSource, video
from fcn_edge.stream.stats import END_OF_INPUT, MAX_FRAMES, SOURCE_LOST
from fcn_edge.errors import FcnEdgeError

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
pytestmark = pytest.mark.slow  # seconds each: real videos, a real HTTP camera


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return frame_segmenter(tmp_path_factory.mktemp("model") / "frames.onnx")


def write_video(path: Path, frames: int, size=(64, 96)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size[::-1])
    for i in range(frames):
        writer.write(np.random.default_rng(i).integers(0, 256, (*size, 3), dtype=np.uint8))
    writer.release()
    return path


class MjpegCamera:
    """An IP camera: multipart MJPEG over HTTP on localhost at ``fps``, until ``stop()`` closes the socket."""

    def __init__(self, fps: float = 20, size=(64, 96)) -> None:
        frame = np.random.default_rng(7).integers(0, 256, (*size, 3), dtype=np.uint8)
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not camera.stopped.is_set():
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                        self.wfile.write(jpeg + b"\r\n")
                        self.wfile.flush()
                        camera.served += 1
                        time.sleep(1 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.stopped = threading.Event()
        self.served = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cam.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_stopped_camera_and_an_ended_video_leave_the_other_streams_and_their_recordings_whole(model, tmp_path):
    """Two long videos, one short video that ends, and an HTTP camera stopped mid-run: the long videos' recordings
    hold every frame, the short one ends with one line, the camera is tried again and reported lost (exit 3)."""
    long_a, long_b = write_video(tmp_path / "a.avi", 60), write_video(tmp_path / "b.avi", 60)
    short = write_video(tmp_path / "short.avi", 5)
    camera = MjpegCamera()

    def stop_after_20_frames() -> None:
        while camera.served < 20 and not camera.stopped.is_set():
            time.sleep(0.01)
        camera.stop()

    stopper = threading.Thread(target=stop_after_20_frames, daemon=True)
    stopper.start()
    try:
        result = stream("--video", long_a, "--video", long_b, "--video", short, "--url", camera.url, "--model", model,
                        "--threads", "1", "--output", tmp_path / "runs" / "{name}.mp4", "--stats-json", tmp_path / "s.json",
                        "--reconnect", "2", "--reconnect-delay", "0.05", timeout=120)  # fmt: skip
    finally:
        camera.stop()
    assert result.returncode == 3, result.stderr
    stats = {s["name"]: s for s in json.loads((tmp_path / "s.json").read_text())["streams"]}
    assert [frames_in(tmp_path / "runs" / f"{name}.mp4") for name in ("a", "b", "short")] == [60, 60, 5]
    assert stats["a"]["frames"] == stats["b"]["frames"] == 60 and stats["short"]["end_reason"] == END_OF_INPUT
    assert stats["127.0.0.1-cam.mjpg"]["end_reason"] == SOURCE_LOST
    assert stats["127.0.0.1-cam.mjpg"]["reconnect_attempts"] == 2 and stats["127.0.0.1-cam.mjpg"]["frames"] > 0
    assert sum("stream short ended (end of input)" in line for line in result.stderr.splitlines()) == 1
    assert "lost after 2 reconnect attempts" in result.stderr


class Recorder(Sink):
    description = "recorder"

    def __init__(self) -> None:
        self.count = 0

    def write(self, image) -> None:
        self.count += 1

    def close(self) -> None:
        pass


def test_a_stream_faster_than_the_model_drops_its_own_frames_and_cannot_starve_the_others(model, tmp_path):
    """An unpaced synthetic camera (always a new frame) beside a 10 fps one and a video: every step takes one frame of
    each ready stream, so the video loses nothing and the unpaced camera gets no more turns than the video."""
    path = write_video(tmp_path / "v.avi", 20)
    bursty, paced, clip = SyntheticSource((96, 64), 0), SyntheticSource((96, 64), 10, seed=1), video(path)
    sinks = {name: Recorder() for name in ("bursty", "paced", "clip")}
    for source in (bursty, paced, clip):
        source.open()
    with open_runner(model, "onnxruntime", threads=1) as runner:
        multi = MultiStream([("bursty", bursty, [sinks["bursty"]]), ("paced", paced, [sinks["paced"]]),
                             ("clip", clip, [sinks["clip"]])], runner, Overlay(PALETTE, 0.5),
                            StreamOptions(max_frames=40, status_interval=0))  # fmt: skip
        timer = threading.Timer(5.0, multi.stop.set)  # the paced camera alone would take 4 s for 40 frames
        timer.start()
        stats = {s.info["name"]: s for s in multi.run()}
        timer.cancel()
    assert sinks["clip"].count == stats["clip"].frames == 20 and stats["clip"].end_reason == END_OF_INPUT
    assert stats["bursty"].dropped > 0 and stats["clip"].dropped == 0
    assert stats["bursty"].frames == 40 and stats["bursty"].end_reason == MAX_FRAMES
    assert stats["paced"].frames >= 10  # never starved by the bursty one


class SlowRunner(Runner):
    """The real ONNX Runtime runner, 20 ms slower a call (a bigger model), recording the shapes it is given."""

    def __init__(self, inner: Runner) -> None:
        super().__init__(inner.name)
        self.inner, self.shapes = inner, []

    def activate_impl(self) -> None:
        self.inner.activate()

    def infer_impl(self, frame):
        self.shapes.append(frame.shape)
        time.sleep(0.02)
        return self.inner.infer(frame)

    def deactivate_impl(self) -> None:
        self.inner.deactivate()


def test_frames_of_different_sizes_are_batched_by_size(model, tmp_path):
    """Two streams at one size and one at another: a step runs one batch per size present, and each stream keeps all."""
    paths = [write_video(tmp_path / "a.avi", 8), write_video(tmp_path / "b.avi", 8), write_video(tmp_path / "c.avi", 8, (48, 80))]
    opened = []
    for path in paths:
        opened.append(video(path))
        opened[-1].open()
    with SlowRunner(open_runner(model, "onnxruntime", threads=1)) as runner:
        multi = MultiStream([(p.stem, s, [Recorder()]) for p, s in zip(paths, opened)], runner, Overlay(PALETTE, 0.5),
                            StreamOptions(status_interval=0))  # fmt: skip
        stats = multi.run()
    assert [s.frames for s in stats] == [8, 8, 8]
    assert multi.batch_frames == 24
    assert (2, 64, 96, 3) in runner.shapes  # the two same-size streams ran as one batch
    assert all(shape[-3:-1] in ((64, 96), (48, 80)) and (len(shape) == 3 or shape[1:3] == (64, 96)) for shape in runner.shapes)


class RecordingRunner(Runner):
    """The real ONNX Runtime runner with two lanes, recording each start and wait: how many parts were running then."""

    def __init__(self, inner: Runner) -> None:
        super().__init__(inner.name)
        self.inner, self.inflight, self.events = inner, inner.inflight, []

    def activate_impl(self) -> None:
        self.inner.activate()

    def infer_impl(self, frame):
        return self.inner.infer(frame)

    def start_impl(self, frame) -> None:
        self.events.append(("start", len(self._pending), frame.shape))
        self.inner.start(frame)

    def wait_impl(self, frame):
        self.events.append(("wait", len(self._pending), frame.shape))
        return self.inner.wait()

    def deactivate_impl(self) -> None:
        self.inner.deactivate()


class Labels(Sink):
    description = "labels"

    def __init__(self) -> None:
        self.seen = []

    def draw(self, frame, labels, overlay):
        self.seen.append((frame.copy(), labels.copy()))
        return frame

    def write(self, image) -> None:
        pass

    def close(self) -> None:
        pass


def test_parts_run_on_the_runner_lanes_pipelined_and_every_frame_keeps_its_labels(model, tmp_path):
    """Four videos on a runner with two lanes: parts of two frames, the next one started as soon as the oldest is back
    while the other still runs (a barrier per step waited for both parts before starting any), each frame's labels as
    when it runs alone, and no frame lost."""
    paths = [write_video(tmp_path / f"{i}.avi", 12) for i in range(4)]
    opened = [video(path) for path in paths]
    for source in opened:
        source.open()
    sinks = [Labels() for _ in opened]
    with RecordingRunner(open_runner(model, "onnxruntime", threads=1, inflight=2)) as runner:
        multi = MultiStream([(p.stem, s, [k]) for p, s, k in zip(paths, opened, sinks)], runner, Overlay(PALETTE, 0.5),
                            StreamOptions(status_interval=0))  # fmt: skip
        assert [s.frames for s in multi.run()] == [12] * 4
        starts = [event for event in runner.events if event[0] == "start"]
        assert {shape for _, _, shape in starts} <= {(2, 64, 96, 3), (64, 96, 3)}  # a lane's share of the 4 streams
        events = runner.events
        beside = sum(a[0] == "wait" and b[:2] == ("start", 1) for a, b in zip(events, events[1:]))
        assert beside >= len(starts) // 2  # the oldest part back, the next one started beside the other, running
        for sink in sinks:
            assert len(sink.seen) == 12
            for frame, labels in sink.seen:
                assert (labels == runner.infer(frame)).mean() >= 0.999


def test_sources_files_names_and_output_templates(tmp_path):
    clip = write_video(tmp_path / "door.avi", 1)
    listing = tmp_path / "cams.txt"
    listing.write_text(f"# yard and door\nyard rtsp://user:pw@10.0.0.5:554/live\n{clip}\ncamera:1\n\nsynthetic\n")
    specs = read_sources_file(listing)
    assert [(s.kind, s.name) for s in specs] == [("url", "yard"), ("video", ""), ("camera", ""), ("synthetic", "")]
    names = stream_names([*specs, SourceSpec("video", str(clip))])
    assert names == ["yard", "door", "camera1", "synthetic0", "door-2"]
    assert output_paths("--output", Path("runs/{name}.mp4"), names[:2], ".mp4") == [Path("runs/yard.mp4"), Path("runs/door.mp4")]
    assert output_paths("--save-dir", Path("png"), names[:2], "") == [Path("png/yard"), Path("png/door")]
    with pytest.raises(FcnEdgeError, match="names one file for 2 streams"):
        output_paths("--output", Path("run.mp4"), names[:2], ".mp4")
    with pytest.raises(FcnEdgeError, match="same path"):
        output_paths("--output", Path("runs/{{all}}.mp4"), names[:2], ".mp4")
    with pytest.raises(FcnEdgeError, match="may use {name} and {id} only"):
        output_paths("--output", Path("runs/{nme}.mp4"), names[:2], ".mp4")
    (tmp_path / "bad.txt").write_text("nowhere/at/all.avi\n")
    with pytest.raises(FcnEdgeError, match="line 1"):
        read_sources_file(tmp_path / "bad.txt")


def test_a_sources_file_names_the_streams_and_their_recordings(model, tmp_path):
    write_video(tmp_path / "a.avi", 4)
    write_video(tmp_path / "b.avi", 6, (48, 80))
    listing = tmp_path / "cams.txt"
    listing.write_text(f"front {tmp_path / 'a.avi'}\nvideo:{tmp_path / 'b.avi'}\n")
    result = stream("--sources", listing, "--model", model, "--threads", "1", "--output", tmp_path / "runs",
                    "--save-dir", tmp_path / "png/{id}-{name}", timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert frames_in(tmp_path / "runs" / "front.mp4") == 4 and frames_in(tmp_path / "runs" / "b.mp4") == 6
    assert (
        len(list((tmp_path / "png" / "0-front").glob("*.png"))) == 4 and len(list((tmp_path / "png" / "1-b").glob("*.png"))) == 6
    )
    rows = [line.split() for line in result.stderr.splitlines() if line.startswith(("front ", "b "))]
    assert [(row[0], row[1], row[-2:]) for row in rows] == [("front", "4", ["of", "input"]), ("b", "6", ["of", "input"])]


def test_user_mistakes_with_several_sources_are_one_line(model, tmp_path):
    clip = write_video(tmp_path / "a.avi", 2)
    assert_user_error(stream("--video", clip, "--synthetic", "--model", model, "--output", tmp_path / "one.mp4", timeout=120),
                      "--output", "names one file for 2 streams")  # fmt: skip
    assert_user_error(
        stream("--video", clip, "--synthetic", "--model", model, "--display", timeout=120), "--display shows one stream"
    )
    assert_user_error(stream("--model", model, timeout=120), "no source given")
    assert_user_error(stream("--video", clip, "--synthetic", "--model", model, "--output", tmp_path / "{name}.mp4",
                             "--save-dir", tmp_path / "{name}.mp4", timeout=120), "same file")  # fmt: skip
