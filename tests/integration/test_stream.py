"""The stream loop: in-process with fake sources where hardware is missing, and ``python -m fcn_edge.stream``
as a user runs it, with real OpenCV video I/O and a real ONNX Runtime model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from fcn_edge.data.synthetic import PALETTE, render_scene
from fcn_edge.errors import FcnEdgeError
from fcn_edge.backends import open_runner
from fcn_edge.runner import Runner
from fcn_edge.stream.overlay import Overlay
from fcn_edge.stream.pipeline import FRAME_POOL, Stream, StreamOptions
from fcn_edge.stream.sinks import Sink, VideoFileSink
from fcn_edge.stream.sources import Source, SyntheticSource
from fcn_edge.stream.stats import END_OF_INPUT, SOURCE_LOST, STOPPED, StageStats

from conftest import ROOT, assert_user_error

pytestmark = pytest.mark.slow


# --- fakes --------------------------------------------------------------------------------------


class FakeRunner(Runner):
    """Labels = blue channel // 32, after ``delay`` s: a model of known output and speed."""

    def __init__(self, delay=0.0):
        super().__init__("fake")
        self.delay = delay

    def activate_impl(self):
        self.out = np.empty(0, np.uint8)

    def infer_impl(self, frame):
        time.sleep(self.delay)
        if self.out.shape != frame.shape[:2]:
            self.out = np.empty(frame.shape[:2], np.uint8)
        np.floor_divide(frame[..., 0], 32, out=self.out)
        return self.out

    def deactivate_impl(self):
        del self.out


class FileLike(Source):
    """Given frames, read like a video file (into the buffer when sizes match, as OpenCV does)."""

    description = "test frames"

    def __init__(self, frames):
        self.frames, self.index, self.closed = frames, 0, False

    def open(self):
        self.index = 0

    def read(self, buffer):
        if self.index >= len(self.frames):
            return None
        frame = self.frames[self.index]
        self.index += 1
        if buffer is None or buffer.shape != frame.shape:
            buffer = np.empty_like(frame)
        np.copyto(buffer, frame)
        return buffer

    def close(self):
        self.closed = True


class UnpluggedCamera(Source):
    """Stands in for a USB camera unplugged mid-stream, which this machine lacks: each connection delivers
    the next burst of frames, and the first ``refusals`` reconnect attempts fail as a missing device does."""

    description = "fake camera"
    live = True

    def __init__(self, bursts, refusals):
        self.bursts, self.refusals = list(bursts), refusals
        self.left = self.delivered = 0

    def open(self):
        if self.delivered and self.refusals:
            self.refusals -= 1
            raise FcnEdgeError("camera 9 is gone")
        if not self.bursts:
            raise FcnEdgeError("camera 9 is gone")
        self.left = self.bursts.pop(0)

    def read(self, buffer):
        if self.left == 0:
            return None
        self.left -= 1
        self.delivered += 1
        time.sleep(0.002)
        return np.full((24, 32, 3), self.delivered, np.uint8)

    def close(self):
        pass


class Recorder(Sink):
    def __init__(self, stop_after=None, fail_after=None):
        self.images, self.stop_after, self.fail_after = [], stop_after, fail_after

    def write(self, image):
        if self.fail_after is not None and len(self.images) >= self.fail_after:
            raise FcnEdgeError("disk full")
        self.images.append(image.copy())
        self.stop_requested = self.stop_after is not None and len(self.images) >= self.stop_after

    def close(self):
        self.closed = True


def run(source, runner, sinks=(), **options):
    source.open()
    with runner:
        stream = Stream(
            source,
            runner,
            Overlay(PALETTE, 0.5),
            list(sinks),
            StreamOptions(status_interval=0, **options),
            log=lambda message: logged.append(message),
        )
        return stream.run()


logged: list[str] = []


# --- the loop, in process ----------------------------------------------------------------------


def test_every_file_frame_is_overlaid_in_order_across_size_changes(frame_model):
    sizes = [(120, 160), (120, 160), (96, 128), (96, 128), (120, 160)]
    frames = [np.random.default_rng(i).integers(0, 256, (*hw, 3), dtype=np.uint8) for i, hw in enumerate(sizes)]
    recorder = Recorder()
    runner = open_runner(frame_model, threads=1)
    stats = run(FileLike(frames), runner, [recorder])
    assert stats.frames == 5 and stats.dropped == 0 and stats.end_reason == END_OF_INPUT
    assert runner.rebinds == 3  # the runner rebound its output for each new size
    session = ort.InferenceSession(str(frame_model), providers=["CPUExecutionProvider"])
    for frame, written in zip(frames, recorder.images):
        labels = session.run(None, {"frame": frame[None]})[0][0]
        assert np.array_equal(written, Overlay(PALETTE, 0.5).render(frame, labels))
    assert recorder.closed


class PoolRunner(FakeRunner):
    """Hands out its own frame memory, as the TensorRT runner does (page-locked/mapped on a GPU), and
    records where every frame it infers lies."""

    def __init__(self):
        super().__init__()
        self.slots, self.seen = [], []

    def frame_buffer(self, shape):
        self.slots.append(np.empty(shape, np.uint8))
        return self.slots[-1]

    def infer_impl(self, frame):
        self.seen.append(frame.ctypes.data)
        return super().infer_impl(frame)


def test_frames_are_decoded_into_runner_memory_allocated_once_per_slot_and_size():
    frames = [np.full((24, 32, 3), i, np.uint8) for i in range(30)] + [np.full((16, 16, 3), 7, np.uint8)] * 10
    runner = PoolRunner()
    stats = run(FileLike(frames), runner)
    assert stats.frames == 40
    slots = {slot.ctypes.data for slot in runner.slots}
    assert set(runner.seen) <= slots  # every frame was inferred where the runner allocated it: no host copy
    assert len(runner.slots) <= 2 * (FRAME_POOL + 1)  # one per pool slot and frame size, not one per frame


class OverlappingRunner(FakeRunner):
    """Runs up to two frames at once on worker threads, as OpenVINO's streams do, and records how many ran
    together and whether a frame changed while it ran."""

    inflight = 2

    def __init__(self, delay):
        super().__init__(delay)
        self.running, self.most_running, self.changed = [], 0, 0

    def start_impl(self, frame):
        checksum = int(frame.sum())
        job = {"frame": frame, "done": threading.Event()}

        def work():
            time.sleep(self.delay)
            job["labels"] = frame[..., 0] // 32
            self.changed += int(frame.sum()) != checksum
            job["done"].set()

        self.running.append(job)
        self.most_running = max(self.most_running, sum(not j["done"].is_set() for j in self.running))
        threading.Thread(target=work).start()

    def wait_impl(self, frame):
        job = self.running.pop(0)
        job["done"].wait()
        assert job["frame"] is frame
        return job["labels"]


def test_a_runner_with_two_frames_in_flight_gets_two_and_frames_leave_in_order_unchanged():
    frames = [np.full((24, 32, 3), 8 * i, np.uint8) for i in range(30)]
    recorder = Recorder()
    runner = OverlappingRunner(delay=0.01)
    stats = run(FileLike(frames), runner, [recorder])
    assert stats.frames == 30 and stats.end_reason == END_OF_INPUT
    assert runner.most_running == 2 and runner.changed == 0
    overlay = Overlay(PALETTE, 0.5)
    for frame, written in zip(frames, recorder.images):
        assert np.array_equal(written, overlay.render(frame, frame[..., 0] // 32))


@pytest.mark.latency  # its figure is a wall-clock time: out of the default suite, which a loaded machine must pass
def test_a_camera_slower_than_the_model_gets_labels_without_waiting_for_its_next_frame():
    runner = OverlappingRunner(delay=0.005)
    stats = run(SyntheticSource((64, 48), fps=20), runner, max_frames=6)  # a frame every 50 ms
    assert stats.frames == 6
    assert stats.stages["infer"].percentile(50) < 30  # 5 ms of inference, not held until the next frame arrives


def test_unplugged_camera_is_reconnected_then_reported_lost():
    camera = UnpluggedCamera(bursts=[5, 4], refusals=1)
    logged.clear()
    stats = run(camera, FakeRunner(), [Recorder()], reconnect=3, reconnect_delay=0.001)
    assert stats.end_reason == SOURCE_LOST
    assert stats.reconnects == 1 and stats.reconnect_attempts == 2 + 3
    assert stats.frames + stats.dropped == 9
    assert any("reconnecting in 0.001 s (attempt 1 of 3)" in m for m in logged)
    assert any("lost after 3 reconnect attempts" in m for m in logged)


def test_a_slow_model_on_a_live_source_drops_stale_frames_not_latency():
    stats = run(SyntheticSource((64, 48), fps=0), FakeRunner(delay=0.02), max_frames=8)
    assert stats.frames == 8 and stats.dropped > 0  # the frames that went stale while the model ran


def test_a_sink_can_stop_the_stream_and_frames_in_flight_still_arrive():
    frames = [np.full((24, 32, 3), i, np.uint8) for i in range(50)]
    recorder = Recorder(stop_after=3)
    stats = run(FileLike(frames), FakeRunner(), [recorder])
    assert stats.end_reason == STOPPED and 3 <= stats.frames == len(recorder.images) < 50
    assert [int(img[0, 0, 1]) for img in recorder.images] == [round(i * 0.5) for i in range(stats.frames)]


def test_a_failing_sink_ends_the_stream_with_its_error_and_closes_everything():
    source = FileLike([np.zeros((24, 32, 3), np.uint8)] * 50)
    recorder = Recorder(fail_after=2)
    with pytest.raises(FcnEdgeError, match="disk full"):
        run(source, FakeRunner(), [recorder])
    assert source.closed and recorder.closed


def test_stage_percentiles_are_within_two_percent():
    stage = StageStats()
    for ms in range(1, 101):
        stage.add(ms / 1e3)
    assert stage.percentile(50) == pytest.approx(50, rel=0.02)
    assert stage.percentile(95) == pytest.approx(95, rel=0.02)
    assert stage.to_dict()["max_ms"] == pytest.approx(100)


# --- the command line -------------------------------------------------------------------------


def stream_cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "fcn_edge.stream", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def count_frames(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def test_video_in_gives_an_mp4_with_every_frame_and_a_stats_file(frame_model, tmp_path):
    video = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), (i * 8, 100, 200 - i * 5), np.uint8))
    writer.release()
    output, stats_file = tmp_path / "out.mp4", tmp_path / "stats.json"
    result = stream_cli(
        "--video", video, "--model", frame_model, "--output", output, "--legend", "--stats-json", stats_file, "--threads", "1"
    )
    assert result.returncode == 0, result.stderr
    assert count_frames(output) == 30
    stats = json.loads(stats_file.read_text())
    assert stats["frames"] == 30 and stats["dropped"] == 0 and stats["end_reason"] == END_OF_INPUT
    assert set(stats["stages_ms"]) == {"capture", "infer", "overlay", "write"}
    assert "30 frames in" in result.stderr and "p95 ms" in result.stderr


def test_openvino_runs_a_video_three_frames_at_a_time_into_the_same_mp4_as_one_at_a_time(frame_model, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install -e '.[openvino]')")
    video = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(24):
        writer.write(render_scene(np.random.default_rng(i), (120, 160))[0])
    writer.release()
    outputs = {}
    for inflight in (3, 1):  # a file's default with 2 threads: a stream per thread and a frame waiting
        outputs[inflight] = tmp_path / f"out{inflight}.mp4"
        chosen = () if inflight == 3 else ("--inflight", inflight)
        result = stream_cli("--video", video, "--model", frame_model, "--backend", "openvino", "--threads", "2",
                            *chosen, "--output", outputs[inflight])  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert ("(3 frames at once)" in result.stderr) == (inflight == 3)
    overlapped, serial = (cv2.VideoCapture(str(outputs[k])) for k in (3, 1))
    frames = 0
    while (a := overlapped.read()[1]) is not None:
        b = serial.read()[1]
        assert b is not None and np.abs(a.astype(int) - b).mean() < 1.0  # the same labels, in the same order
        frames += 1
    assert frames == 24 and serial.read()[1] is None
    too_many = stream_cli("--video", video, "--model", frame_model, "--backend", "openvino", "--threads", "2",
                          "--inflight", "5", "--headless")  # fmt: skip
    assert_user_error(too_many, "--inflight 5 must be between 1 and twice the inference threads (4)")


def test_a_model_verified_on_another_instruction_set_says_so_in_one_line(frame_model, tmp_path):
    from fcn_edge import cpu_features

    model = tmp_path / "model.onnx"
    model.write_bytes(frame_model.read_bytes())
    other = "neon" if cpu_features.instruction_set() != "neon" else "avx2"
    sidecar = tmp_path / "model.onnx.json"
    sidecar.write_text(json.dumps({"verification": {"instruction_set": other}}))
    result = stream_cli("--synthetic", "--fps", "0", "--max-frames", "2", "--model", model, "--threads", "1")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if f"verified on a CPU with {other}" in line]
    assert len(notes) == 1 and cpu_features.instruction_set() in notes[0]
    sidecar.write_text(json.dumps({"verification": {"instruction_set": cpu_features.instruction_set()}}))
    same = stream_cli("--synthetic", "--fps", "0", "--max-frames", "2", "--model", model, "--threads", "1")
    assert same.returncode == 0 and "verified on a CPU" not in same.stderr


def test_images_of_changing_size_are_all_written(frame_model, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    sizes = [(120, 160), (120, 160), (160, 96), (120, 160)]
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((h, w, 3), 60 * i, np.uint8))
    result = stream_cli(
        "--images",
        folder,
        "--model",
        frame_model,
        "--save-dir",
        tmp_path / "out",
        "--output",
        tmp_path / "out.mp4",
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    written = sorted((tmp_path / "out").iterdir())
    assert [cv2.imread(str(p)).shape[:2] for p in written] == sizes
    assert count_frames(tmp_path / "out.mp4") == len(sizes)  # resized to the first frame's size


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_recording_keeps_every_frame_its_rate_and_picture_across_odd_and_changing_sizes(tmp_path, suffix):
    scenes = [render_scene(np.random.default_rng(i), (121, 161))[0] for i in range(8)]  # odd: 4:2:0 drops a row and column
    scenes += [render_scene(np.random.default_rng(i), (240, 320))[0] for i in range(4)]  # resized to the first size
    sink = VideoFileSink(tmp_path / f"rec{suffix}", 29.97)
    for scene in scenes:
        sink.write(scene)
    sink.close()
    capture = cv2.VideoCapture(str(tmp_path / f"rec{suffix}"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(29.97, abs=0.01)
    decoded = []
    while (frame := capture.read()[1]) is not None:
        decoded.append(frame)
    expected = [s[:120, :160] if s.shape[0] == 121 else cv2.resize(s, (160, 120), interpolation=cv2.INTER_AREA) for s in scenes]
    assert len(decoded) == len(scenes) and {f.shape for f in decoded} == {(120, 160, 3)}
    # every frame a new scene: 26-32 dB (OpenCV's mp4v writer 28-33); another frame's picture scores 5-17
    assert min(cv2.PSNR(e, d) for e, d in zip(expected, decoded)) > 24


def test_a_lone_recording_drawn_in_yuv_shows_the_same_overlays_as_one_beside_another_sink(tmp_path):
    # blurred: FakeRunner's labels follow the blue channel, and a sharp one makes pixel-sized regions no encoder keeps
    scenes = [cv2.GaussianBlur(render_scene(np.random.default_rng(i), (120, 160))[0], (0, 0), 2) for i in range(10)]
    lone, beside, shown = VideoFileSink(tmp_path / "lone.mp4", 30), VideoFileSink(tmp_path / "beside.mp4", 30), Recorder()
    run(FileLike(scenes), FakeRunner(), [lone])  # blended in YUV 4:2:0 by the recording itself
    run(FileLike(scenes), FakeRunner(), [beside, shown])  # blended in BGR once, for both
    expected = [Overlay(PALETTE, 0.5).render(s, s[..., 0] // 32) for s in scenes]  # FakeRunner's labels
    assert all(np.array_equal(e, image) for e, image in zip(expected, shown.images))
    for path in (tmp_path / "lone.mp4", tmp_path / "beside.mp4"):
        capture = cv2.VideoCapture(str(path))
        decoded = [capture.read()[1] for _ in scenes]
        # 28-31 dB here; the frame without its overlay scores 13, another frame's overlay 7.5
        assert min(cv2.PSNR(e, d) for e, d in zip(expected, decoded)) > 26 and capture.read()[1] is None


def test_ctrl_c_finishes_the_frame_and_leaves_a_playable_mp4(frame_model, tmp_path):
    output = tmp_path / "live.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "fcn_edge.stream", "--synthetic", "--size", "120x160", "--model",
         str(frame_model), "--output", str(output), "--threads", "1"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    for line in process.stderr:  # wait for the loop to start: the stop handlers are in place by then
        lines.append(line)
        if line.startswith("streaming "):
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=30)[1]
    stderr = "".join(lines) + rest
    assert process.returncode == 0, stderr
    assert "SIGINT: stopping after the current frame" in stderr and "ended: stopped" in stderr
    assert count_frames(output) >= 1


def test_a_camera_lost_for_good_ends_with_status_3_a_summary_and_a_finished_mp4(frame_model, tmp_path, monkeypatch, capsys):
    # In process, so the fake camera can stand in for an unplugged one (this machine has no camera).
    from fcn_edge.stream import __main__ as cli

    monkeypatch.setattr(cli.sources, "camera", lambda index, size, fps: UnpluggedCamera(bursts=[6], refusals=0))
    output, stats_file = tmp_path / "cam.mp4", tmp_path / "stats.json"
    handler = signal.getsignal(signal.SIGINT)
    status = cli.main(
        [
            "--camera",
            "0",
            "--model",
            str(frame_model),
            "--output",
            str(output),
            "--reconnect",
            "2",
            "--reconnect-delay",
            "0.01",
            "--stats-json",
            str(stats_file),
            "--threads",
            "1",
        ]
    )
    stderr = capsys.readouterr().err
    assert status == 3, stderr
    stats = json.loads(stats_file.read_text())
    assert stats["end_reason"] == SOURCE_LOST and stats["reconnect_attempts"] == 2 and stats["reconnects"] == 0
    assert stats["frames"] + stats["dropped"] == 6 and count_frames(output) == stats["frames"]
    assert "reconnecting in 0.01 s (attempt 1 of 2)" in stderr and "ended: source lost" in stderr
    assert signal.getsignal(signal.SIGINT) is handler  # the stream put the caller's handler back


def test_a_missing_camera_fails_fast_saying_what_was_tried_and_what_to_try(frame_model):
    result = stream_cli("--camera", "57", "--model", frame_model)
    assert_user_error(result, "camera index 57", "V4L2", "v4l2-ctl --list-devices", "--video", "--synthetic")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--synthetic", "--model", "{tmp}/missing.onnx"], ["missing.onnx does not exist"]),
        (["--synthetic", "--display"], ["--display", "no GUI", "--headless"]),
        (["--synthetic", "--max-frames", "0"], ["--max-frames 0"]),
        (["--images", "{tmp}/nowhere"], ["nowhere does not exist"]),
        (["--gst", "videotestsrc ! appsink"], ["no GStreamer", "system OpenCV"]),
    ],
    ids=["missing-model", "display-headless-opencv", "max-frames", "missing-folder", "gstreamer"],
)
def test_user_mistakes_are_one_line_errors(frame_model, tmp_path, args, fragments):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--model" not in args:
        args += ["--model", str(frame_model)]
    if "GUI" in fragments[1:2] and "NONE" not in cv2.getBuildInformation().split("GUI:")[1].split("\n")[0]:
        pytest.skip("this OpenCV has a GUI")
    if "GStreamer" in " ".join(fragments) and "YES" in cv2.getBuildInformation().split("GStreamer:")[1].split("\n")[0]:
        pytest.skip("this OpenCV has GStreamer")
    assert_user_error(stream_cli(*args), *(f.replace("{tmp}", str(tmp_path)) for f in fragments))


def test_the_default_model_missing_says_how_to_build_it(tmp_path, monkeypatch):
    """The message a fresh clone gets before its first build (engines/ here may already hold one)."""
    from fcn_edge.stream import __main__ as stream_main

    missing = tmp_path / "engines" / "default.int8.onnx"
    monkeypatch.setattr(stream_main, "DEFAULT_MODEL", missing)
    with pytest.raises(FcnEdgeError, match=r"build the default INT8 artifact with fcn-edge build --int8"):
        stream_main.check_model(missing)
