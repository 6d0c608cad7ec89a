"""The deploy core, as a Jetson or an edge PC installs it: ``pip install -e .`` and no torch.

A real venv (PyPI is reachable here; pip's cache makes the install quick) proves that the
stream, the runners and ``build_engine.py --onnx`` need no torch, and that the training
side says which extra to install instead of failing with an ImportError.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, assert_user_error

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deploy_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("deploy") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0:
        pytest.skip(f"pip could not install the deploy core here (no registry?): {install.stderr.strip()[-300:]}")
    return python


def run(python: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=env)


def test_the_deploy_core_has_no_torch(deploy_python):
    result = run(deploy_python, "-c", "import torch")
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr


def test_build_from_onnx_and_stream_run_without_torch(deploy_python, tmp_path):
    from fcn_edge.export import export_checkpoint
    from fcn_edge.paths import DEFAULT_CHECKPOINT

    fp32 = tmp_path / "default.fp32.onnx"
    export_checkpoint(ROOT / DEFAULT_CHECKPOINT, fp32)
    engines = tmp_path / "engines"
    built = run(deploy_python, "scripts/build_engine.py", "--onnx", fp32, "--int8", "--engines-dir", engines, "--no-progress")
    assert built.returncode == 0, built.stdout + built.stderr
    int8 = engines / "default.fp32.int8.onnx"
    assert int8.is_file() and (engines / "default.fp32.int8.onnx.json").is_file()

    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(12):
        writer.write(np.full((120, 160, 3), 20 * i, np.uint8))
    writer.release()
    out = tmp_path / "o.mp4"
    streamed = run(deploy_python, "-m", "fcn_edge.stream", "--video", video, "--model", int8, "--headless", "--output", out)
    assert streamed.returncode == 0, streamed.stderr
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    capture.release()


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "export_onnx.py", "convert_checkpoint.py", "benchmark.py"])
def test_training_side_scripts_name_the_extra(deploy_python, script):
    result = run(deploy_python, f"scripts/{script}", timeout=60)
    assert result.returncode == 2
    assert_user_error(result, ".[train]")


@pytest.mark.parametrize("command", ["train", "evaluate", "export", "convert", "checkerboard", "bench"])
def test_training_side_commands_name_the_extra(deploy_python, command):
    """``fcn-edge train`` on a deploy box: the extra named before anything imports torch."""
    result = run(deploy_python, "-m", "fcn_edge.cli", command, timeout=60)
    assert result.returncode == 2
    assert_user_error(result, "'.[train]'", f"fcn-edge {command}")


def test_building_from_a_checkpoint_names_the_extra_or_onnx(deploy_python, tmp_path):
    result = run(deploy_python, "scripts/build_engine.py", "--int8", "--engines-dir", tmp_path / "engines", "--force")
    assert_user_error(result, ".[train]", "--onnx")
    assert not any((tmp_path / "engines").glob("*"))
