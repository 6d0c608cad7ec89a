"""scripts/build_engine.py as a user runs it: a foreign ONNX model, our checkpoint, and the mistakes users make."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from conftest import assert_user_error, run_script
from fcn_edge.backends.onnxruntime import default_threads
from fcn_edge.compile import timing
from fcn_edge.data.synthetic import render_scene
from fcn_edge.quantize import qdq

SMALL = ["--calib-size", "64x96", "--verify-scenes", "3", "--verify-size", "64x96", "--latency-size", "64x96", "--no-progress"]


class EncoderDecoder(nn.Module):
    """Not an FCN and not exported by us: strided convs down, transposed conv up, float NCHW input ``x``."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(1)
        self.down = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(32, 16, 4, 4), nn.ReLU(), nn.Conv2d(16, classes, 1))

    def forward(self, x):
        return self.up(self.down(x))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("foreign") / "segnet.onnx"
    torch.onnx.export(
        EncoderDecoder().eval(), (torch.zeros(1, 3, 64, 96),), str(path), input_names=["x"], output_names=["scores"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, dynamo=False, opset_version=17,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def near_tie(tmp_path_factory) -> Path:
    """EncoderDecoder whose class scores differ by 1% of their size: INT8 noise flips labels, float does not."""
    model = EncoderDecoder().eval()
    with torch.no_grad():
        classifier = model.up[2]
        classifier.weight.copy_(classifier.weight[:1] + 0.01 * classifier.weight)
        classifier.bias.zero_()
    path = tmp_path_factory.mktemp("near_tie") / "segnet.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 96),), str(path), input_names=["x"], output_names=["scores"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, dynamo=False, opset_version=17)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    for i in range(10):
        cv2.imwrite(str(folder / f"img{i:02d}.png"), render_scene(np.random.default_rng(7_000 + i), (64, 96))[0])
    return folder


def foreign_args(model: Path, calib: Path, engines: Path) -> list:
    return [
        "--onnx", model, "--input-format", "tensor", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25",
        "--num-classes", "3", "--calib-dir", calib, "--engines-dir", engines, "--min-agreement", "90", *SMALL,
    ]  # fmt: skip


@pytest.mark.slow
def test_foreign_onnx_builds_int8_then_skips(foreign, calib, tmp_path):
    engines = tmp_path / "engines"
    result = run_script("build_engine.py", "--int8", *foreign_args(foreign, calib, engines))
    assert result.returncode == 0, result.stderr
    assert "on the CPU" in result.stdout and "because TensorRT is not available" in result.stdout
    assert "agreement" in result.stdout and "INT8 TensorRT Q/DQ on CPU" in result.stdout
    names = sorted(p.name for p in engines.iterdir())
    assert names == sorted(
        ["segnet.int8.onnx", "segnet.int8.onnx.json", "segnet.int8.trt-qdq.onnx", "segnet.int8.calib", "segnet.int8.calib.onnx"]
    )
    sidecar = json.loads((engines / "segnet.int8.onnx.json").read_text())
    # the CPU runtime measured fastest (OpenVINO only where installed) runs it
    assert sidecar["backend"]["name"] in ("onnxruntime", "openvino") and sidecar["precision"] == "int8"
    assert sidecar["io"]["inputs"][0]["name"] == "x" and sidecar["io"]["outputs"][0]["dtype"] == "float32"
    assert sidecar["model"]["classes"] == ["class_0", "class_1", "class_2"]
    assert sidecar["sources"]["onnx_sha256"] and sidecar["sources"]["calibration_sha256"]
    rows = sidecar["verification"]["rows"]
    assert rows[0]["agreement"] >= 0.9 and rows[0]["max_logit_diff"] is not None and rows[0]["miou"] is None
    latency = sidecar["verification"]["latency"]  # float NCHW in, scores out: the stream's runners do not take it
    assert latency["through"] == "session" and latency["runs_on"] == sidecar["backend"]["name"]
    assert sidecar["layers"]["Conv"]["int8"] >= 1
    cache = (engines / "segnet.int8.calib").read_text().splitlines()
    assert cache[0] == "TRT-100300-EntropyCalibration2" and len(cache) > 3
    trt_model = onnx.load(str(engines / "segnet.int8.trt-qdq.onnx"))
    values = {t.name: onnx.numpy_helper.to_array(t) for t in trt_model.graph.initializer}
    assert all(not values[n.input[2]].any() for n in trt_model.graph.node if n.op_type in qdq.QDQ_OPS)

    started = time.perf_counter()
    again = run_script("build_engine.py", "--int8", *foreign_args(foreign, calib, engines))
    assert again.returncode == 0, again.stderr
    assert "up to date, skipped" in again.stdout and str(engines / "segnet.int8.onnx.json") in again.stdout
    assert time.perf_counter() - started < 5


@pytest.mark.slow
def test_when_only_all_float_meets_the_budget_int8_says_so_or_with_allow_drop_writes_the_closest_int8(near_tie, calib, tmp_path):
    engines = tmp_path / "engines"
    args = ["--int8", *foreign_args(near_tie, calib, engines), "--min-agreement", "100"]  # only the float graph agrees on all
    refused = run_script("build_engine.py", *args)
    assert_user_error(refused, "no INT8 left", "met the budget")
    assert not engines.exists() or not list(engines.iterdir())

    written = run_script("build_engine.py", *args, "--allow-accuracy-drop")
    assert written.returncode == 0, written.stderr
    assert "--allow-accuracy-drop: writing the closest INT8 model the search tried" in written.stdout
    sidecar = json.loads((engines / "segnet.int8.onnx.json").read_text())
    search = sidecar["details"]["sensitivity"]
    closest = max(t["kept_float"] for t in search["trials"] if not t["met"])
    assert len(sidecar["details"]["kept_float"]) == closest < search["candidates"]
    assert not sidecar["verification"]["passed"] and sidecar["layers"]["Conv"]["int8"] >= 1


@pytest.mark.slow
def test_checkpoint_builds_fp16_with_metadata(tmp_path, calib):
    from fcn_edge.checkpoint import save_checkpoint
    from fcn_edge.data.synthetic import CLASSES, PALETTE
    from fcn_edge.models import ModelConfig, build_model
    from fcn_edge.spec import Preprocess

    config = ModelConfig(num_classes=len(CLASSES))
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", build_model(config).eval(), config, CLASSES, PALETTE, Preprocess())
    engines = tmp_path / "engines"
    result = run_script(
        "build_engine.py", "--fp16", "--checkpoint", checkpoint, "--calib-dir", calib, "--engines-dir", engines, *SMALL
    )
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((engines / "tiny.fp16.onnx.json").read_text())
    assert sidecar["model"]["checkpoint_sha256"] and sidecar["verification"]["rows"][0]["agreement"] >= 0.995
    # timed as the stream runs it: its runner, its thread count, FP32 in the same rounds; a median and its spread
    latency, row = sidecar["verification"]["latency"], sidecar["verification"]["rows"][0]
    assert latency["through"] == "runner" and latency["threads"] == default_threads() == sidecar["backend"]["session_options"]["intra_op_num_threads"]
    assert latency["rounds"] == timing.ROUNDS and latency["verdict"] in (timing.FASTER, timing.SLOWER, timing.WITHIN_NOISE)
    ratio = latency["ratio_to_fp32"]
    assert ratio["low"] <= ratio["median"] <= ratio["high"] and row["ratio_iqr"] == [ratio["low"], ratio["high"]]
    assert set(latency["ms"]) >= {"fp16 onnxruntime", "fp32 onnxruntime"} and "IQR" in result.stdout
    assert sidecar["io"]["inputs"][0] == {"name": "frame", "dtype": "uint8", "shape": ["N", "H", "W", 3]}
    props = {p.key for p in onnx.load(str(engines / "tiny.fp16.onnx")).metadata_props}
    assert "fcn_edge.classes" in props


def corrupt_calib(tmp_path: Path, calib: Path) -> Path:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for p in calib.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "img03.png").write_bytes(b"\x89PNG but not really")
    return folder


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("empty calib", ["calibration folder", "has 0 images"]),
        ("missing calib", ["calibration folder", "does not exist"]),
        ("corrupt image", ["img03.png"]),
        ("not onnx", ["is not an ONNX model"]),
        ("max < min shape", ["--max-shape", "--min-shape"]),
        ("engines parent is a file", ["--engines-dir", "not a folder"]),
    ],
)
def test_user_mistakes_are_one_line_errors_and_write_nothing(case, fragments, foreign, calib, tmp_path):
    engines = tmp_path / "engines"
    engines.mkdir()
    args = foreign_args(foreign, calib, engines)
    if case == "empty calib":
        (tmp_path / "empty").mkdir()
        args[args.index(calib)] = tmp_path / "empty"
    elif case == "missing calib":
        args[args.index(calib)] = tmp_path / "nowhere"
    elif case == "corrupt image":
        args[args.index(calib)] = corrupt_calib(tmp_path, calib)
    elif case == "not onnx":
        bogus = tmp_path / "model.onnx"
        bogus.write_text("this is not a model")
        args[args.index(foreign)] = bogus
    elif case == "max < min shape":
        args += ["--min-shape", "1x256x512x3", "--opt-shape", "1x256x512x3", "--max-shape", "1x128x512x3"]
    else:  # root ignores permissions, so make the folder impossible: its parent is a regular file
        blocker = tmp_path / "blocker"
        blocker.write_text("")
        args[args.index(engines)] = blocker / "engines"
    result = run_script("build_engine.py", "--int8", *args)
    assert_user_error(result, *fragments)
    assert list(engines.iterdir()) == []


def test_tensorrt_backend_without_gpu_fails_fast(foreign, calib, tmp_path):
    from fcn_edge.backends.tensorrt import probe

    if probe().available:
        pytest.skip("TensorRT and a GPU are present here")
    engines = tmp_path / "engines"
    started = time.perf_counter()
    result = run_script("build_engine.py", "--int8", "--backend", "tensorrt", *foreign_args(foreign, calib, engines))
    assert time.perf_counter() - started < 5
    assert_user_error(result, "--backend tensorrt is not available", "GPU")
    assert not engines.exists() or list(engines.iterdir()) == []
