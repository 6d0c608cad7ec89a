"""``python -m fcn_edge.stream`` against bad input and faults: one error line that says what was kept, the
recording playable or absent (never half-written under its name), and exit 0 for every stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import ROOT
from faults import classifier, fill, frame_segmenter, frames_in, one_error_line, run_main, small_disk, snapshot, stream

SYNTHETIC = ("--synthetic", "--size", "120x160", "--fps", "0", "--threads", "1")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return frame_segmenter(tmp_path_factory.mktemp("model") / "frames.onnx")


def test_a_full_disk_stops_the_recording_keeps_it_playable_and_says_so(model, tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk, leave=300 * 1024)
        result = stream(*SYNTHETIC, "--model", model, "--output", disk / "rec.mp4")
        assert result.returncode == 2, result.stderr
        line = one_error_line(result.stderr, "is full", "kept in")
        kept = int(line.split("the ")[-1].split(" frames")[0])
        assert kept > 0 and frames_in(disk / "rec.mp4") == kept
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "rec.mp4"]  # no temporary file left


def test_a_killed_recording_leaves_nothing_under_its_name(model, tmp_path):
    output = tmp_path / "rec.mp4"
    process = subprocess.Popen([sys.executable, "-m", "fcn_edge.stream", *SYNTHETIC, "--model", str(model),
                                "--output", str(output)], cwd=ROOT, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for line in process.stderr:
        if line.startswith("streaming "):
            break
    time.sleep(1.0)
    process.kill()
    process.wait(timeout=30)
    assert not output.exists()  # the partial recording is a hidden temporary file, never rec.mp4
    assert [p.name.startswith(".rec.mp4.") for p in tmp_path.iterdir()] == [True]


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler yet (Linux: the SigCgt mask in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    return bool(mask >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the signal mask from /proc")
def test_sigterm_while_the_stream_imports_exits_0_and_writes_nothing(model, tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "fcn_edge.stream", *SYNTHETIC, "--model", str(model),
                                "--output", str(tmp_path / "rec.mp4")], cwd=ROOT, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 10
    while not catches_sigterm(process.pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGTERM)  # the first moment it can be handled: long before the model loads
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "streaming " not in err
    assert list(tmp_path.iterdir()) == []


def test_sigterm_while_the_source_opens_exits_0_and_writes_nothing(model, tmp_path, monkeypatch, capsys):
    from fcn_edge.stream import __main__ as cli
    from fcn_edge.stream.sources import SyntheticSource

    opened = SyntheticSource.open

    def open_slowly(self):
        os.kill(os.getpid(), signal.SIGTERM)  # as a service manager stopping the unit during start-up
        opened(self)

    monkeypatch.setattr(SyntheticSource, "open", open_slowly)
    status, _, err = run_main(cli.main, [*SYNTHETIC, "--model", model, "--output", tmp_path / "rec.mp4"], capsys)
    assert status == 0, err
    assert "SIGTERM: stopping" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_image_mid_folder_keeps_the_frames_before_it_and_says_so(model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        cv2.imwrite(str(images / f"{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    (images / "2.png").write_bytes(b"not a png")
    result = stream("--images", images, "--model", model, "--output", tmp_path / "out.mp4", "--save-dir", tmp_path / "png")
    assert result.returncode == 2
    one_error_line(result.stderr, "2.png is not a readable image", "2 frames recorded until then are kept in",
                   "2 PNGs written until then")  # fmt: skip
    assert frames_in(tmp_path / "out.mp4") == 2 and sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "0.png",
        "1.png",
    ]  # after their sources


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("stats-json is a folder", ["--stats-json", "is a folder"]),
        ("output is a folder", ["--output", "is a folder"]),
        ("model is a folder", ["--model", "is a folder"]),
        ("huge synthetic frames", ["--size", "too large"]),
        ("static model input", ["takes frames of 32x32 only", "--size 32x32"]),
        ("classifier", ["not uint8 [N,H,W] labels"]),
    ],
    ids=["stats-json-folder", "output-folder", "model-folder", "huge-size", "static-input", "classifier"],
)
def test_user_mistakes_are_one_line_and_leave_nothing(model, tmp_path, case, fragments, capsys):
    from fcn_edge.stream import __main__ as cli

    outputs = tmp_path / "out"
    outputs.mkdir()
    args = [*SYNTHETIC, "--model", model, "--max-frames", "5", "--headless"]
    if case == "stats-json is a folder":
        args += ["--stats-json", outputs]
    elif case == "output is a folder":
        (outputs / "rec.mp4").mkdir()
        args += ["--output", outputs / "rec.mp4"]
    elif case == "model is a folder":
        args += ["--model", outputs]
    elif case == "huge synthetic frames":
        args += ["--size", "100000x100000"]
    elif case == "static model input":
        args += ["--model", frame_segmenter(tmp_path / "static.onnx", shape=(1, 32, 32, 3)), "--output", outputs / "rec.mp4"]
    else:
        args += ["--model", classifier(tmp_path / "cls.onnx", frames=True)]
    before = snapshot(outputs)
    status, _, err = run_main(cli.main, args, capsys)  # in this process: a second interpreter costs a second
    assert status == 2
    one_error_line(err, *fragments)
    assert snapshot(outputs) == before


@pytest.mark.parametrize("flag, name", [("--stats-json", "stats.json"), ("--output", "rec.mp4")])
def test_unwritable_outputs_are_refused_before_the_run(model, tmp_path, capsys, flag, name):
    from fcn_edge.stream import __main__ as cli

    with small_disk(tmp_path / "disk", "64k", read_only=True) as disk:
        status, _, err = run_main(cli.main, [*SYNTHETIC, "--model", model, "--max-frames", "500", flag, disk / name], capsys)
    assert status == 2 and "streaming " not in err  # not after 500 frames: before the first
    one_error_line(err, flag, "Read-only file system")
