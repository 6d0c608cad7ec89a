"""OvRunner and open_runner's choice of OpenVINO: labels as ONNX Runtime's, one compile per frame size, explicit precision."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcn_edge.backends import backend_for, open_runner
from fcn_edge.errors import FcnEdgeError

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install -e '.[openvino]')")

from fcn_edge.backends.openvino import OvRunner, probe  # noqa: E402
from fcn_edge.backends.openvino.core import compile_config  # noqa: E402


def frames(h=96, w=128, n=2):
    return [np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8) for i in range(n)]


@pytest.fixture
def ov_runner(frame_model, tmp_path):
    return OvRunner(frame_model, threads=1, cache_dir=tmp_path / "cache")


def test_labels_agree_with_onnx_runtime_and_the_buffer_is_reused(frame_model, ov_runner):
    a, b = frames()
    with open_runner(frame_model, "onnxruntime", threads=1) as ort_runner, ov_runner:
        first = ov_runner.infer(a)
        kept = first.copy()
        second = ov_runner.infer(b)
        assert np.shares_memory(first, second)  # the runner contract: the next call overwrites
        assert second.dtype == np.uint8 and second.shape == (96, 128)
        for frame, labels in ((a, kept), (b, second)):
            assert (labels == ort_runner.infer(frame)).mean() >= 0.999


@pytest.mark.parametrize("inflight", [2, 3])  # 3 on two streams: one frame waits inside OpenVINO for a free stream
def test_frames_in_flight_return_in_order_across_sizes_with_the_labels_of_one_at_a_time(frame_model, tmp_path, inflight):
    sized = [frames(96, 128, 1)[0], frames(64, 96, 1)[0], *frames(96, 128, 3), frames(64, 96, 1)[0]]
    with OvRunner(frame_model, threads=2, cache_dir=tmp_path) as serial:
        expected = [serial.infer(f).copy() for f in sized]
    with OvRunner(frame_model, threads=2, inflight=inflight, cache_dir=tmp_path) as overlapped:
        got = []
        for frame in sized[: inflight - 1]:
            overlapped.start(frame)
        for frame in sized[inflight - 1 :]:
            overlapped.start(frame)
            with pytest.raises(RuntimeError, match=f"{inflight} frame"):  # one more would overwrite a running request
                overlapped.start(frame)
            got.append(overlapped.wait().copy())
        while len(got) < len(sized):
            got.append(overlapped.wait().copy())
        overlapped.start(sized[0])  # left running: deactivate waits for it before freeing the requests
    assert overlapped.compiles == 2 and overlapped.streams == 2
    for labels, reference in zip(got, expected):
        assert labels.shape == reference.shape and (labels == reference).mean() >= 0.999
    with pytest.raises(FcnEdgeError, match="--inflight 5 must be between 1 and twice the inference threads"):
        OvRunner(frame_model, threads=2, inflight=5)


def test_one_compile_per_frame_size_and_a_disk_cache(frame_model, ov_runner, tmp_path):
    with ov_runner:
        for frame in frames() + frames(64, 96) + frames():
            ov_runner.infer(frame)
        assert ov_runner.compiles == 2
    assert any((tmp_path / "cache").iterdir())  # OpenVINO's cache_dir holds the compiled models


def test_precision_is_explicit(frame_model):
    import openvino.properties.hint as hints

    assert compile_config(1, "fp32")[hints.inference_precision] == "f32"  # never OpenVINO's silent BF16 default
    with pytest.raises(FcnEdgeError, match="precision 'fp16' is unknown"):
        compile_config(1, "fp16")
    if probe().bf16:
        with OvRunner(frame_model, threads=1, precision="bf16") as runner:
            assert runner.infer(frames()[0]).shape == (96, 128)


def test_the_build_verifies_through_the_runner_the_stream_opens(frame_model, tmp_path):
    """A build's OpenVINO row comes from the OvRunner at the threads asked (frames in, labels out), which labels as
    ONNX Runtime's FP32 reference does, and is closed after; its max|dlogit| is the file's (ONNX Runtime's twin)."""
    from fcn_edge.compile import cpu, verify
    from fcn_edge.compile.source import from_onnx

    source = from_onnx(frame_model)
    samples = [verify.Sample(f"frame{i}", frame, None) for i, frame in enumerate(frames(64, 96, 3))]
    reference = verify.reference(source, samples, progress=False)
    runner = cpu.runner("openvino", "int8", frame_model, 1, tmp_path / "cache")
    assert isinstance(runner, OvRunner) and runner.threads == 1 and runner.precision == "fp32"
    figures = verify.compare(frame_model, "FP32 (OpenVINO)", source, samples, reference, runner, progress=False)
    assert figures.agreement > 0.99 and figures.max_logit_diff is None and not runner.is_active
    assert runner.compiles == 1  # one size: compiled once, into the build's cache
    assert verify.logit_diff(frame_model, source, samples, reference) == 0.0  # the same file as the reference


def test_auto_follows_the_sidecar(frame_model, tmp_path):
    model = tmp_path / "m.int8.onnx"
    model.write_bytes(frame_model.read_bytes())
    assert backend_for(model) == "onnxruntime"  # no sidecar: ONNX Runtime
    sidecar = model.with_name(model.name + ".json")
    sidecar.write_text(json.dumps({"precision": "int8", "backend": {"name": "openvino"}}))
    assert backend_for(model) == "openvino"
    assert isinstance(open_runner(model, threads=1), OvRunner)
    sidecar.write_text(json.dumps({"precision": "bf16", "backend": {"name": "onnxruntime"}}))
    assert backend_for(model) == "openvino"  # only OpenVINO runs BF16
    assert backend_for(model, "onnxruntime") == "onnxruntime"  # asked for: obeyed


def test_user_errors(tmp_path, frame_model):
    with pytest.raises(FcnEdgeError, match="does not exist"):
        OvRunner(tmp_path / "missing.onnx", threads=1)
    with pytest.raises(FcnEdgeError, match="at least 1"):
        OvRunner(frame_model, threads=0)
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"\x08\x07not a model\xff\xff")
    with pytest.raises(FcnEdgeError, match="OpenVINO cannot read .*damaged.onnx"):
        OvRunner(damaged, threads=1).activate()
