"""Every file a build writes meets the budget: an INT8 build whose TensorRT Q/DQ model misses it writes nothing.

A real build of a small frame model, calibrated on grayscale images and verified on colour
frames held out of the same folder: its first convolution computes colour differences (B-G,
G-R, R-B and their negatives), which grayscale frames leave at zero, so calibration sees a
zero range there. ONNX Runtime's placement keeps convs this narrow in float and is
unaffected; TensorRT's quantizes them, clips every colour difference to almost nothing, and
loses the labels on the colour frames. The build must stop
with the TensorRT row named and nothing written, as the ONNX Runtime model alone would pass.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import assert_user_error, run_script
from fcn_edge.data.synthetic import render_scene
from fcn_edge.quantize import calibration

SMALL = ["--calib-size", "64x96", "--verify-scenes", "4", "--verify-size", "64x96", "--latency-size", "64x96", "--no-progress"]


def colour_model(path):
    """uint8 frames -> 6 colour differences -> ReLU -> 1x1 mix -> ReLU -> which difference dominates (or none above 30).

    The last conv feeds ArgMax, so every placement keeps it float (fcn_edge.quantize.label_ops);
    TensorRT's quantizes the input of the mix conv, where the colour differences are.
    """
    differences = np.array([[1, -1, 0], [0, 1, -1], [-1, 0, 1]], np.float32)
    first = np.concatenate([differences, -differences])[:, :, None, None]  # 6 x 3 x 1 x 1
    mix = np.eye(6, dtype=np.float32)[:, :, None, None]
    scores = np.eye(4, 6, dtype=np.float32)[:, :, None, None]  # classes 0-2: the B-G, G-R, R-B excess; 3: none above 30
    scores[3] = 0
    nodes = [  # named, as exporters name them: ONNX Runtime's quantizer leaves unnamed nodes alone
        helper.make_node("Cast", ["frame"], ["f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["x"], name="nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="differences"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="mix"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["scores"], name="scores"),
        helper.make_node("ArgMax", ["scores"], ["index"], name="argmax", axis=1, keepdims=0),
        helper.make_node("Cast", ["index"], ["index_float"], name="index_float", to=TensorProto.FLOAT),
        helper.make_node("Cast", ["index_float"], ["labels"], name="labels", to=TensorProto.UINT8),
    ]
    initializers = [
        numpy_helper.from_array(first, "w1"), numpy_helper.from_array(mix, "w2"), numpy_helper.from_array(scores, "w3"),
        numpy_helper.from_array(np.array([0, 0, 0, 30], np.float32), "b3"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "colour", [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])], initializers,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return colour_model(tmp_path_factory.mktemp("model") / "colour.onnx")


def _calibration(folder, gray: bool):
    """20 frames; with ``gray`` the 16 calibration ones are grayscale, the 4 held out (every 5th) stay in colour."""
    folder.mkdir()
    for i in range(20):
        frame = render_scene(np.random.default_rng(9_000 + i), (64, 96))[0]
        if gray and i % calibration.HOLDOUT_EVERY != calibration.HOLDOUT_EVERY - 1:
            frame = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        cv2.imwrite(str(folder / f"img{i:02d}.png"), frame)
    return folder


def _args(model, calib, engines):
    return ["--int8", "--onnx", model, "--input-format", "frame", "--num-classes", "4", "--calib-dir", calib,
            "--calib-method", "max", "--engines-dir", engines, *SMALL]  # fmt: skip


@pytest.mark.slow
def test_a_tensorrt_qdq_model_that_misses_the_budget_writes_nothing(model, tmp_path):
    result = run_script("build_engine.py", *_args(model, _calibration(tmp_path / "gray", gray=True), tmp_path / "engines"))
    assert_user_error(result, "misses the accuracy budget", "INT8 TensorRT Q/DQ on CPU: label agreement", "nothing written")
    assert "INT8 (ONNX Runtime): " not in result.stderr  # the ONNX Runtime model alone met it
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())


@pytest.mark.slow
def test_the_same_model_calibrated_on_colour_frames_passes_with_both_rows_in_budget(model, tmp_path):
    engines = tmp_path / "engines"
    result = run_script("build_engine.py", *_args(model, _calibration(tmp_path / "colour", gray=False), engines))
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((engines / "colour.int8.onnx.json").read_text())
    rows = {row["label"]: row for row in sidecar["verification"]["rows"]}
    assert rows["INT8 TensorRT Q/DQ on CPU"]["agreement"] >= 0.98 and rows["INT8 (ONNX Runtime)"]["agreement"] >= 0.98
    assert sidecar["details"]["tensorrt_compat"] == {"8": [], "10": [], "11": []}
