"""scripts/train.py --qat then build_engine.py --checkpoint qat.pt --int8, as a user runs them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

from conftest import assert_user_error, run_script
from fcn_edge.data.synthetic import render_scene

TINY = ["--scene-size", "64x64", "--crop-size", "64x64", "--val-length", "2", "--batch-size", "4", "--threads", "2"]


def test_qat_needs_a_checkpoint_to_fine_tune(tmp_path):
    result = run_script("train.py", "--qat", "--out", tmp_path / "run", *TINY)
    assert_user_error(result, "--qat", "--resume")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--qat-loss", "labels"], ["--qat-loss labels", "--qat"]),  # without --qat it would do nothing
        (["--qat", "--resume", "best.pt", "--class-weights"], ["--class-weights", "--qat-loss labels"]),  # teacher: unused
        (["--qat", "--resume", "best.pt", "--qat-loss", "teacher", "--loss", "focal"], ["--loss", "--qat-loss labels"]),
    ],
)
def test_qat_loss_flags_that_would_be_ignored_are_refused(tmp_path, flags, named):
    result = run_script("train.py", *flags, "--out", tmp_path / "run", *TINY)
    assert_user_error(result, *named)
    assert not (tmp_path / "run").exists()


@pytest.mark.training
def test_qat_checkpoint_builds_with_its_learned_scales(tmp_path):
    trained = run_script("train.py", "--backbone", "mobilenet_v3_small", "--train-length", "16", "--epochs", "1",
                         "--out", tmp_path / "fp32", *TINY)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    tuned = run_script("train.py", "--qat", "--resume", tmp_path / "fp32" / "best.pt", "--train-length", "8", "--epochs", "1",
                       "--out", tmp_path / "qat", *TINY)  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    assert "fake-quantized" in tuned.stdout and (tmp_path / "qat" / "qat.pt").is_file()
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(6):
        cv2.imwrite(str(calib / f"img{i}.png"), render_scene(np.random.default_rng(9_000 + i), (64, 96))[0])
    engines = tmp_path / "engines"
    built = run_script("build_engine.py", "--int8", "--checkpoint", tmp_path / "qat" / "qat.pt", "--calib-dir", calib,
                       "--engines-dir", engines, "--calib-size", "64x96", "--verify-scenes", "3", "--verify-size", "64x96",
                       "--latency-size", "64x96", "--no-progress", "--search-minutes", "0", "--allow-accuracy-drop")  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "scales: learned by QAT" in built.stdout
    sidecar = json.loads((engines / "qat.int8.onnx.json").read_text())
    calibration = sidecar["details"]["calibration"]
    assert calibration["scales"] == "learned by QAT" and calibration["qat"]["learned_tensors"] >= 80
    model = onnx.load(str(engines / "qat.int8.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 80
