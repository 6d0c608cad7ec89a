"""Build a tiny frame model into a TensorRT engine and run it with TrtRunner, against ONNX Runtime.

The model has the shape of every fcn_edge frame model: uint8 NHWC frames in and a Cast to
float first, a 1x1 convolution, ArgMax through float to uint8 labels out (uint8 only at the
boundary, as TensorRT's parser requires), batch/height/width dynamic. Skips unless a CUDA
GPU is visible and TensorRT imports. The default model itself, at FP32/FP16/INT8, is
``python -m fcn_edge.doctor``'s job (tests/gpu/test_doctor.py).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_edge.backends.tensorrt import TrtBuildOptions, build_engine
from fcn_edge.errors import FcnEdgeError
from fcn_edge.backends.tensorrt import TrtRunner
from fcn_edge.sidecar import sidecar_path

from .conftest import skip_or_fail

pytestmark = pytest.mark.gpu

CLASSES = 5
SHAPES = dict(min_shape=(1, 16, 16, 3), opt_shape=(1, 64, 96, 3), max_shape=(2, 128, 160, 3))


def _frame_model(path):
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(CLASSES, 3, 1, 1)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=CLASSES).astype(np.float32), "b")
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w", "b"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["index"], axis=1, keepdims=0),
        helper.make_node("Cast", ["index"], ["index_float"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["index_float"], ["labels"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes, "frame_model", [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])], [weight, bias],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _frames(height, width, batch=1):
    return np.random.default_rng(height * width).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def built(trt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine")
    onnx_path = _frame_model(folder / "tiny.onnx")
    engine = folder / "tiny.fp32.engine"
    options = TrtBuildOptions(**SHAPES, workspace_mb=256, timing_cache=folder / "timing.cache", progress=False)
    sidecar = build_engine(onnx_path, engine, options)
    sidecar_path(engine).write_text(json.dumps({"engine": sidecar}))  # as build/pipeline.py nests the facts
    return onnx_path, engine, sidecar, options


def test_build_reports_what_it_built(built, trt):
    _, engine, sidecar, options = built
    assert engine.stat().st_size > 0 and options.timing_cache.stat().st_size > 0
    assert sidecar["tensorrt_version"] == trt.__version__
    assert sidecar["inputs"] == [{"name": "frame", "dtype": "uint8", "shape": [-1, -1, -1, 3]}]
    assert sidecar["outputs"][0]["name"] == "labels" and sidecar["outputs"][0]["dtype"] == "uint8"
    assert sidecar["profile"]["frame"] == {"min": [1, 16, 16, 3], "opt": [1, 64, 96, 3], "max": [2, 128, 160, 3]}
    assert sum(sidecar["layer_precisions"].values()) > 0 and sidecar["build_seconds"] > 0


def test_second_build_reuses_the_timing_cache(built, tmp_path):
    onnx_path, _, _, options = built
    before = options.timing_cache.read_bytes()
    build_engine(onnx_path, tmp_path / "again.engine", options)
    assert len(options.timing_cache.read_bytes()) >= len(before)


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_runner_matches_onnx_runtime_across_frame_sizes(built, binding):
    onnx_path, engine, _, _ = built
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    try:
        runner = TrtRunner(engine, cuda_binding=binding).activate()
    except FcnEdgeError as error:
        if "not installed" in str(error) or "cannot be imported" in str(error):
            skip_or_fail(f"{binding}: {error}")
        raise
    with runner:
        for height, width in [(64, 96), (128, 160), (32, 48), (64, 96)]:
            frame = _frames(height, width)[0]
            (expected,) = session.run(None, {"frame": frame[None]})
            labels = runner.infer(frame)
            assert labels.shape == (height, width) and labels.dtype == np.uint8
            assert np.mean(labels == expected[0]) > 0.999  # TF32 may flip a near-tie
        assert runner.rebinds == 4 and runner.reallocations == 1  # only 128x160 outgrew the first buffers

        frame = _frames(64, 96)[0]
        (expected,) = session.run(None, {"frame": frame[None]})
        buffer = runner.input_buffer(frame.shape)  # decode straight into page-locked memory: no host copy
        buffer[:] = frame
        assert np.mean(runner.infer(buffer) == expected[0]) > 0.999

        batch = _frames(128, 160, batch=2)
        runner.check_inputs = False  # the Runner contract is one frame; the engine takes batches too
        (expected,) = session.run(None, {"frame": batch})
        assert np.mean(runner.infer(batch) == expected) > 0.999


def test_frames_outside_the_profile_are_a_user_error(built):
    _, engine, _, _ = built
    with TrtRunner(engine) as runner, pytest.raises(FcnEdgeError, match="outside the engine's input profile"):
        runner.infer(_frames(256, 256)[0])


def test_engine_from_another_tensorrt_is_refused(built, tmp_path):
    _, engine, sidecar, _ = built
    copy = tmp_path / engine.name
    copy.write_bytes(engine.read_bytes())
    sidecar_path(copy).write_text(json.dumps({"engine": {**sidecar, "tensorrt_version": "8.5.2.2"}}))
    with pytest.raises(FcnEdgeError, match="built with TensorRT 8.5.2.2.*rebuild with: fcn-edge build"):
        TrtRunner(copy).activate()


def test_unsupported_onnx_is_stopped_before_the_parser_with_the_node_named(trt, tmp_path):
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="example.invalid")
    graph = helper.make_graph(
        [node], "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.invalid", 1)])
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(FcnEdgeError, match=r"ONNX parser would reject .*example\.invalid\.NoSuchOp"):  # any TensorRT line
        build_engine(tmp_path / "bad.onnx", tmp_path / "bad.engine", TrtBuildOptions(progress=False))
