"""Any file name the OS allows (issue 22): names that are not UTF-8 in the stream's sources, recordings, folders and
models run (OpenCV segfaulted on them, rc 139); a FIFO named like an image is skipped with a note (it hung the run);
recordings whose half-height is odd are written (``render_i420`` raised ValueError)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest

from conftest import ROOT
from faults import BUILD_FLAGS, frame_segmenter, one_error_line
from fcn_edge.sidecar import check_name
from fcn_edge.errors import FcnEdgeError
from fcn_edge.quantize.calibration import find_calibration_set
from fcn_edge.stream.overlay import Overlay


def stream(*args, timeout=60) -> subprocess.CompletedProcess:
    """The stream as a user runs it; arguments may be bytes (names that are not UTF-8)."""
    argv = [os.fsencode(a) if isinstance(a, os.PathLike) else a for a in args]
    return subprocess.run([sys.executable, "-m", "fcn_edge.stream", *argv], capture_output=True, cwd=ROOT, timeout=timeout)


def frames_in(path: bytes) -> int:
    """Frames of a recording, read back through a copy under a UTF-8 name (OpenCV takes no other)."""
    with tempfile.TemporaryDirectory() as folder:
        copy = os.path.join(folder, "copy.mp4")
        shutil.copyfile(path, copy)
        capture = cv2.VideoCapture(copy)
        count = 0
        while capture.read()[0]:
            count += 1
        capture.release()
    return count


def png(path: bytes, height: int, width: int) -> None:
    ok, encoded = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8))
    with open(path, "wb") as handle:
        handle.write(encoded.tobytes())


@pytest.fixture()
def place(tmp_path):
    """A folder with a model whose own name and folder are not UTF-8."""
    folder = os.fsencode(tmp_path) + b"/d\xfe"
    os.mkdir(folder)
    model = frame_segmenter(tmp_path / "frames.onnx")
    os.replace(model, folder + b"/m\xff.onnx")
    return folder


def test_images_video_recording_and_model_named_in_bytes_run(place):
    images = place + b"/imgs\xff"
    os.mkdir(images)
    for i in range(3):
        png(images + b"/f%d\xe9.png" % i, 50, 66)
    model, recording = place + b"/m\xff.onnx", place + b"/out\xff.mp4"
    first = stream(b"--images", images, b"--model", model, b"--headless", b"--output", recording)
    assert first.returncode == 0, first.stderr.decode(errors="replace")
    assert frames_in(recording) == 3
    again = place + b"/again\xff.mp4"
    second = stream(
        b"--video", recording, b"--model", model, b"--headless", b"--output", again, b"--save-dir", place + b"/png\xff"
    )
    assert second.returncode == 0, second.stderr.decode(errors="replace")
    assert frames_in(again) == 3 and len(os.listdir(place + b"/png\xff")) == 3


def test_a_fifo_named_like_an_image_is_skipped_with_a_note(place):
    images = place + b"/imgs"
    os.mkdir(images)
    png(images + b"/a.png", 48, 64)
    os.mkfifo(images + b"/b.png")  # opened for reading, it blocks until a writer comes: never
    result = stream(b"--images", images, b"--model", place + b"/m\xff.onnx", b"--headless", timeout=60)
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0, err
    assert "skipping" in err and "b.png" in err and "not a regular file" in err
    assert "1 frames" in err or "1 frame" in err


@pytest.mark.parametrize("height, width", [(270, 480), (50, 66), (486, 720)])
def test_recording_alone_at_an_odd_half_height(tmp_path, height, width):
    model = frame_segmenter(tmp_path / "frames.onnx")
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(2):
        png(os.fsencode(images / f"{i}.png"), height, width)
    result = stream("--images", str(images), "--model", str(model), "--output", str(tmp_path / "o.mp4"))
    assert result.returncode == 0, result.stderr.decode()
    capture = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    ok, frame = capture.read()
    assert ok and frame.shape[:2] == (height // 2 * 2, width // 2 * 2)


def test_the_i420_overlay_matches_the_bgr_one_at_an_odd_half_height():
    overlay = Overlay([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (270, 480, 3), np.uint8)
    labels = rng.integers(0, 3, (270, 480), np.uint8)
    yuv = overlay.render_i420(frame, labels)
    reference = cv2.cvtColor(overlay.render(frame, labels), cv2.COLOR_BGR2YUV_I420)
    assert yuv.shape == reference.shape
    assert np.abs(yuv.astype(int) - reference).mean() < 2  # chroma from each 2x2 block's top-left label


def test_a_name_that_is_not_utf8_is_one_line():
    with pytest.raises(FcnEdgeError, match="not UTF-8"):
        check_name(os.fsdecode(b"cam\xff"))


def test_build_refuses_a_name_that_is_not_utf8(tmp_path):
    model = frame_segmenter(tmp_path / "frames.onnx")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_engine.py"), "--onnx", str(model), "--fp32",
                             "--engines-dir", str(tmp_path / "engines"), b"--name", b"cam\xff"],
                            capture_output=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 2
    one_error_line(result.stderr.decode(errors="replace"), "not UTF-8", "--name")
    assert not (tmp_path / "engines").exists() or not os.listdir(tmp_path / "engines")


def test_a_fifo_in_the_calibration_folder_is_skipped_with_a_note(tmp_path, capsys):
    for i in range(3):
        png(os.fsencode(tmp_path / f"{i}.png"), 32, 32)
    os.mkfifo(tmp_path / "x.png")
    found = find_calibration_set(tmp_path)
    assert "x.png" not in [p.name for p in found.files + found.holdout]
    assert "skipping" in capsys.readouterr().err


def test_a_build_with_paths_that_are_not_utf8_prints_them_under_a_strict_utf8_stdout(place):
    """A desktop's UTF-8 locale makes stdout strict: the build's lines naming such paths raised UnicodeEncodeError."""
    calibration = place + b"/cal\xff"
    os.mkdir(calibration)
    for i in range(6):
        png(calibration + b"/%d.png" % i, 48, 64)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_engine.py"), b"--onnx", place + b"/m\xff.onnx",
                             "--input-format", "frame", "--num-classes", "3", "--fp32", "--name", "m", b"--calib-dir", calibration,
                             b"--engines-dir", place + b"/eng\xff", *BUILD_FLAGS], capture_output=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"eng\\udcff" in result.stdout
    assert sorted(os.listdir(place + b"/eng\xff")) == [b"m.fp32.onnx", b"m.fp32.onnx.json"]
