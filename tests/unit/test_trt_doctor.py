"""``python -m fcn_edge.doctor``: on this CPU machine it reports what is missing in one table, fast, exit 0;
its GPU paths turn exceptions into FAIL rows; the stream path runs on the TensorRT runner (over the FAKES
of tests/unit/trt_fakes.py here: nothing runs on a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from fcn_edge import doctor
from fcn_edge.backends.tensorrt import api as trt_api
from fcn_edge.backends.tensorrt import runner as runner_module
from fcn_edge.backends.cuda import find_gpu
from fcn_edge.sidecar import sidecar_path
from trt_fakes import FACTS, NumpyCuda, engine_bytes, fake_tensorrt


def test_on_a_cpu_machine_it_says_what_is_missing_in_one_table_quickly():
    if find_gpu()[0] is not None:
        pytest.skip("a GPU is visible: the doctor runs its GPU paths here")
    done = subprocess.run([sys.executable, "-m", "fcn_edge.doctor"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    table, result = done.stdout.rsplit("\n{", 1)
    assert table.splitlines()[0].split() == ["check", "status", "seconds", "detail"]
    rows = {row["name"]: row for row in json.loads("{" + result)["rows"]}
    assert rows["gpu"]["detail"].startswith("no CUDA GPU visible") and rows["gpu-paths"]["status"] == "skip"
    assert rows["tensorrt"]["detail"].startswith("not installed: pip install -e '.[gpu-cu12]'")


def test_a_path_that_raises_is_a_fail_row_and_a_missing_one_a_skip():
    def missing():
        raise doctor.Skip("pycuda is not installed")

    def broken():
        raise RuntimeError("cudaErrorIllegalAddress\nmore")

    assert doctor.run_path("pycuda", missing).status == "skip"
    row = doctor.run_path("tensorrt-int8", broken)
    assert (row.status, row.detail) == ("FAIL", "RuntimeError: cudaErrorIllegalAddress") and "Traceback" in row.facts["traceback"]
    ok = doctor.run_path("x", lambda: {"ok": False, "agreement": 0.5})
    assert (ok.status, ok.detail) == ("FAIL", "agreement 0.5")


def test_a_failed_row_makes_the_exit_status_1(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "run", lambda workdir: [doctor.Row("stream", "FAIL", "frames 12")])
    assert doctor.main([]) == 1
    assert "stream" in capsys.readouterr().out


def test_packages_built_for_a_newer_cuda_than_the_driver_are_failures(monkeypatch):
    monkeypatch.setattr(doctor, "installed", lambda name: {"cuda-python": "13.4.4"}.get(name))
    monkeypatch.setattr(doctor, "_tensorrt_cuda_major", lambda: 13)
    rows = doctor._cuda_major_rows((12, 4))
    assert [r.name for r in rows] == ["cuda-python-vs-driver", "tensorrt-vs-driver"]
    assert "needs driver >= 580" in rows[0].detail and ".[gpu-cu12]" in rows[0].detail
    assert doctor._cuda_major_rows((13, 0)) == []


def test_the_stream_path_runs_its_frames_through_the_tensorrt_runner(tmp_path, monkeypatch):
    """On the fakes: the stream loop, the runner's buffers and the doctor's row, end to end without a GPU."""
    cuda = NumpyCuda()
    trt = fake_tensorrt(cuda)
    engine = tmp_path / "default.int8.engine"
    engine.write_bytes(engine_bytes((1, 32, 32, 3), (1, 480, 640, 3), (1, 480, 640, 3)))
    facts = {"tensorrt_version": trt.__version__, **FACTS}
    sidecar_path(engine).write_text(json.dumps({"engine": facts, "model": {"palette": [[0, 0, 0]] * 8}}))
    monkeypatch.setattr(trt_api, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(runner_module, "open_cuda", lambda binding: cuda)
    monkeypatch.setattr(doctor, "STREAM_FRAMES", 60)  # 300 on a GPU; the loop is the same
    paths = doctor.Paths(tmp_path)
    paths.engines["int8"] = engine
    row = doctor.run_path("stream", paths.stream)
    assert row.status == "ok", row.detail
    assert row.facts["frames"] == doctor.STREAM_FRAMES and cuda.closed
    assert len(trt.runtimes[0].engines[0].contexts[0].executions) == doctor.STREAM_FRAMES


def _brightness_model(path):
    """The fake engine's function as ONNX, so ONNX Runtime on the CPU and the fake 'GPU' agree: (B+G+R) // 96."""
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np
    import onnx

    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "axes"], ["s"], keepdims=0),
        helper.make_node("Div", ["s", "d"], ["q"]),
        helper.make_node("Floor", ["q"], ["labels_float"]),
        helper.make_node("Cast", ["labels_float"], ["labels"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes, "brightness", [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])],
        [numpy_helper.from_array(np.array([3], np.int64), "axes"), numpy_helper.from_array(np.float32(96), "d")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_the_tensorrt_path_builds_runs_and_compares_with_the_cpu(tmp_path, monkeypatch):
    """selftest.run_precision on the fakes: the engine 'build' writes a fake engine; run, compare, time as on a GPU."""
    from fcn_edge.backends.tensorrt import selftest

    cuda = NumpyCuda()
    trt = fake_tensorrt(cuda)
    monkeypatch.setattr(trt_api, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(runner_module, "open_cuda", lambda binding: cuda.reopen())

    def fake_build(graph, engine, options):
        engine.write_bytes(engine_bytes(options.min_shape, options.opt_shape, options.max_shape))
        return {"tensorrt_version": trt.__version__, **FACTS,
                "layer_precisions": {options.precision: 1}, "build_seconds": 0.0}  # fmt: skip

    monkeypatch.setattr(selftest, "build_engine", fake_build)
    frames = [np.random.default_rng(seed).integers(0, 256, (*selftest.SCENE, 3), np.uint8) for seed in range(2)]
    latency_frame = np.zeros((*selftest.LATENCY, 3), np.uint8)
    facts = selftest.run_precision("int8", _brightness_model(tmp_path / "b.onnx"), tmp_path, frames, latency_frame)
    assert facts["ok"] and facts["agreement"] == 1.0 and facts["latency_ms"] > 0
