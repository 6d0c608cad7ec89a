"""A TensorRT build's automatic precision choice is timed on the engines, not on the CPU; on FAKES
(tests/unit/trt_fakes.py): the engine build is replaced by a fake engine file and the GPU by numpy.

FP16 is slower than FP32 in ONNX Runtime on a CPU, so a choice timed there never picks it;
here the (fake) engines say INT8 is slower than FP32 and FP16 faster, and the build must pick
FP16, copy the engine it timed, and say where the latency was measured.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcn_edge.backends.tensorrt import api as trt_api
from fcn_edge.backends.tensorrt import runner as runner_module
from fcn_edge.backends.tensorrt import timing
from fcn_edge.compile import pipeline, source, steps
from fcn_edge.compile.options import Backend, BuildOptions
from test_trt_budget import _calibration, colour_model
from trt_fakes import NumpyCuda, engine_bytes, fake_tensorrt

FACTS = {"tensorrt_version": "10.3.0.30", "gpu_name": "Fake GPU", "compute_capability": "8.7"}
ENGINE_MS = {"fp32": 10.0, "int8": 12.0, "fp16": 5.0}  # what the fake GPU "measures" per engine


def test_engine_latency_is_measured_through_the_runner_on_frame_pool_memory(tmp_path, monkeypatch):
    cuda = NumpyCuda()
    monkeypatch.setattr(trt_api, "import_tensorrt", lambda: fake_tensorrt(cuda))
    monkeypatch.setattr(runner_module, "open_cuda", lambda binding: cuda)
    engine = tmp_path / "m.int8.engine"
    engine.write_bytes(engine_bytes((1, 16, 16, 3), (1, 64, 96, 3), (1, 64, 96, 3)))
    frame = np.zeros((64, 96, 3), np.uint8)
    assert timing.median_latency_ms(engine, FACTS, frame, runs=3, warmup=1) > 0
    assert cuda.closed and not [c for c in cuda.calls if c[0] == "htod" and c[1] != frame.nbytes]


@pytest.mark.slow
def test_the_automatic_choice_on_tensorrt_times_engines_and_picks_the_fastest_that_meets_the_budget(tmp_path, monkeypatch):
    built = []

    def fake_build(self, outcome, engine_path):
        engine_path.write_bytes(engine_bytes((1, 16, 16, 3), (1, 64, 96, 3), (1, 64, 96, 3)) + outcome.precision.encode())
        built.append(outcome.precision)
        return {**FACTS, "precision": outcome.precision, "layer_precisions": {outcome.precision: 1}}

    monkeypatch.setattr(steps.Work, "_build_engine", fake_build)
    monkeypatch.setattr(timing, "median_latency_ms", lambda engine, facts, frame: ENGINE_MS[facts["precision"]])
    model = colour_model(tmp_path / "colour.onnx")
    make_source, inputs = source.spec_from_onnx(model, input_format="frame", num_classes=4)
    options = BuildOptions(
        calib_dir=_calibration(tmp_path / "calibration", gray=False), calib_method="max", calib_size=(64, 96),
        engines_dir=tmp_path / "engines", verify_scenes=4, verify_size=(64, 96), latency_size=(64, 96), progress=False,
    )  # fmt: skip
    backend = Backend("tensorrt", "TensorRT (fake)", {"name": "tensorrt", "version": "10.3.0.30", **FACTS})
    log: list[str] = []
    result = pipeline.build(make_source, inputs, options, backend, log.append)
    assert result.sidecar["precision"] == "fp16"  # INT8 was slower than FP32 on the engines; FP16 faster
    assert built == ["fp32", "int8", "fp16"]  # the FP32 reference engine first, each engine built once
    assert any("INT8 is not the one (1.20x the FP32 latency)" in line for line in log)
    assert "latency at 64x96, TensorRT engine on the GPU" in result.table
    engine = result.paths.artifact
    assert engine.read_bytes().endswith(b"fp16") and result.sidecar["engine"]["precision"] == "fp16"
    assert json.loads(engine.with_name(engine.name + ".json").read_text())["details"]["tensorrt_compat"] == {"8": [], "10": [], "11": []}
