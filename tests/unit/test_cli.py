"""The installed ``fcn-edge`` command: its entry point resolves, its --help names every stage, and
build, stream and doctor run from a folder that is not the project (as after ``pip install``)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, assert_user_error
from fcn_edge import cli


def fcn_edge(*args, cwd) -> subprocess.CompletedProcess:
    """``fcn-edge ARGS`` as the console script runs it (``fcn_edge.cli:main``), this tree first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "fcn_edge.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_every_console_script_resolves_to_a_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"fcn-edge": "fcn_edge.cli:main"}
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_is_a_stage_main_named_fcn_edge(name, capsys):
    """Each subcommand's module has a ``main(argv)`` whose --help calls itself ``fcn-edge <name>``."""
    main = importlib.import_module(cli.COMMANDS[name].module).main
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: fcn-edge {name}")


def test_help_lists_every_command(tmp_path):
    shown = fcn_edge("--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    listed = [line.split()[0] for line in shown.stdout.split("commands:\n", 1)[1].splitlines() if line.startswith("  ")]
    assert listed == list(cli.COMMANDS)


def test_an_unknown_command_is_one_line_naming_the_commands(tmp_path):
    wrong = fcn_edge("biuld", "--int8", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "invalid choice: 'biuld'" in wrong.stderr and "build" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_a_missing_checkpoint_names_the_installed_commands(tmp_path):
    result = fcn_edge("build", "--int8", "--checkpoint", tmp_path / "absent.pt", "--no-progress", cwd=tmp_path)
    assert_user_error(result, "absent.pt does not exist", "fcn-edge train", "--onnx")
    assert not (tmp_path / "engines").exists()


@pytest.mark.slow
def test_the_defaults_fall_back_to_the_projects_files_from_an_empty_folder(tmp_path):
    """``fcn-edge build --int8`` and ``fcn-edge stream`` with no paths, where the working folder has no checkpoints/ or
    calibration/: the build uses the project's (saying which in one line each) and writes engines/ here, where the
    stream finds it."""
    small = ["--calib-size", "64x96", "--verify-scenes", "2", "--verify-size", "64x96", "--latency-size", "64x96"]
    built = fcn_edge("build", "--int8", "--backend", "onnxruntime", "--search-minutes", "0", "--allow-accuracy-drop",
                     *small, "--no-progress", cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert f"checkpoint: {ROOT / 'checkpoints' / 'default.pt'} (the project's" in built.stderr
    assert f"calibration: {ROOT / 'calibration'}/ (the project's" in built.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines"]  # nothing else written here, and nothing to ROOT
    assert (tmp_path / "engines" / "default.int8.onnx").is_file()

    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(5):
        writer.write(np.full((64, 96, 3), 40 * i, np.uint8))
    writer.release()
    streamed = fcn_edge("stream", "--video", video, "--headless", "--max-frames", "4", "--stats-json", "stats.json",
                        cwd=tmp_path)  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    assert "the project's" not in streamed.stderr  # engines/ of the working folder, not a fallback
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["model"] == str(Path("engines/default.int8.onnx")) and stats["frames"] == 4


@pytest.mark.slow
def test_build_then_stream_then_doctor_from_another_folder(frame_model, tmp_path):
    """The README's two commands and the doctor, run where neither scripts/ nor engines/ exist."""
    small = ["--calib-size", "64x96", "--verify-scenes", "3", "--verify-size", "64x96", "--latency-size", "64x96"]
    calib = tmp_path / "calibration"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(calib / f"{i}.png"), rng.integers(0, 256, (48 + 8 * i, 80, 3), np.uint8))
    built = fcn_edge("build", "--int8", "--onnx", frame_model, "--name", "cam", "--backend", "onnxruntime",
                     "--search-minutes", "0", "--allow-accuracy-drop", *small, "--no-progress", cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "engines" / "cam.int8.onnx").is_file() and (tmp_path / "engines" / "cam.int8.onnx.json").is_file()

    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(6):
        writer.write(np.full((64, 96, 3), 30 * i, np.uint8))
    writer.release()
    streamed = fcn_edge("stream", "--video", video, "--model", "engines/cam.int8.onnx", "--headless",
                        "--output", "out.mp4", cwd=tmp_path)  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()

    doctor = fcn_edge("doctor", cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "onnxruntime" in doctor.stdout
