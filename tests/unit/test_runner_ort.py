"""OrtRunner and open_runner: the lifecycle, I/O binding with reused buffers, rebinding, user errors."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from fcn_edge.data.synthetic import CLASSES, PALETTE
from fcn_edge.errors import FcnEdgeError
from fcn_edge.backends import open_runner
from fcn_edge.backends.onnxruntime import OrtRunner
from fcn_edge.runner import Runner


def frames(h=120, w=160, n=2):
    return [np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8) for i in range(n)]


def reference(path, frame):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"frame": frame[None]})[0][0]


def test_lifecycle_and_metadata(frame_model):
    runner = open_runner(frame_model, threads=1)
    assert isinstance(runner, OrtRunner) and isinstance(runner, Runner) and not runner.is_active
    assert runner.metadata.classes == runner.classes == CLASSES and runner.palette == PALETTE
    with pytest.raises(RuntimeError, match="not active"):
        runner.infer(frames()[0])
    with runner:
        assert runner.is_active
        assert runner.infer(frames()[0]).shape == (120, 160)
    assert not runner.is_active


def test_labels_match_a_plain_session_and_the_output_buffer_is_reused(frame_model):
    a, b = frames()
    with open_runner(frame_model, threads=1) as runner:
        first = runner.infer(a)
        kept = first.copy()
        second = runner.infer(b)
        assert np.shares_memory(first, second)  # the documented contract: the next call overwrites
        assert np.array_equal(kept, reference(frame_model, a))
        assert np.array_equal(second, reference(frame_model, b))
        assert second.dtype == np.uint8 and runner.rebinds == 1


def test_same_size_frames_allocate_nothing_per_call(frame_model):
    batch = frames(n=4)
    with open_runner(frame_model, threads=1, check_inputs=False) as runner:
        runner.infer(batch[0])
        tracemalloc.start()
        for frame in batch * 5:
            runner.infer(frame)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 120 * 160 // 4, peak  # a fresh labels array per call would be 19200 bytes


def test_a_new_frame_size_rebinds_and_stays_correct(frame_model):
    big, small = frames()[0], frames(96, 128)[0]
    with open_runner(frame_model, threads=1) as runner:
        assert runner.infer(big).shape == (120, 160)
        labels = runner.infer(small)
        assert labels.shape == (96, 128) and np.array_equal(labels, reference(frame_model, small))
        assert np.array_equal(runner.infer(big), reference(frame_model, big))
        assert runner.rebinds == 3


@pytest.mark.parametrize(
    "frame, fragment",
    [
        (np.zeros((8, 8, 3), np.float32), "uint8 HxWx3"),
        (np.zeros((8, 8), np.uint8), "uint8 HxWx3"),
        (np.zeros((8, 16, 3), np.uint8)[:, ::2], "C-contiguous"),
    ],
    ids=["float", "gray", "strided"],
)
def test_input_checks_name_the_problem(frame_model, frame, fragment):
    with open_runner(frame_model, threads=1) as runner, pytest.raises(FcnEdgeError, match=fragment):
        runner.infer(frame)


def test_classes_come_from_the_sidecar_when_the_model_has_no_metadata(frame_model, tmp_path):
    model = onnx.load(frame_model)
    del model.metadata_props[:]
    bare = tmp_path / "bare.int8.onnx"
    onnx.save(model, bare)
    runner = open_runner(bare)
    assert runner.metadata is None and runner.classes is None and runner.palette is None
    sidecar = {"model": {"classes": ["sky", "road"], "palette": [[0, 0, 255], [128, 64, 128]]}}
    (tmp_path / "bare.int8.onnx.json").write_text(json.dumps(sidecar))
    runner = open_runner(bare)
    assert runner.classes == ["sky", "road"] and runner.palette == [(0, 0, 255), (128, 64, 128)]


def test_a_model_that_does_not_take_frames_is_a_user_error(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])], "tensor_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )  # fmt: skip
    path = tmp_path / "tensor.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with pytest.raises(FcnEdgeError, match="input_format='frame'"):
        open_runner(path).activate()


@pytest.mark.parametrize(
    "name, kwargs, fragment",
    [
        ("missing.onnx", {}, "does not exist"),
        ("model.bin", {}, "cannot tell the backend"),
        ("model.onnx", {"backend": "tflite"}, "unknown backend"),
        ("model.onnx", {"providers": ["cuda"]}, "CUDAExecutionProvider is not available"),
    ],
    ids=["missing", "suffix", "backend", "provider"],
)
def test_open_runner_user_errors(tmp_path, frame_model, name, kwargs, fragment):
    path = tmp_path / name
    if name != "missing.onnx":
        path.write_bytes(frame_model.read_bytes())
    if "CUDAExecutionProvider" in ort.get_available_providers() and "providers" in kwargs:
        pytest.skip("this install has the CUDA provider")
    with pytest.raises(FcnEdgeError, match=fragment):
        open_runner(path, **kwargs)


def test_engine_files_get_the_tensorrt_runner_lazily(tmp_path):
    engine = tmp_path / "default.int8.engine"
    engine.write_bytes(b"not built here")
    runner = open_runner(engine, cuda_binding="pycuda")
    assert type(runner).__name__ == "TrtRunner" and isinstance(runner, Runner) and not runner.is_active
    assert runner.cuda_binding == "pycuda"


def test_frames_in_flight_run_on_lanes_of_their_own_and_keep_their_labels(frame_model):
    """inflight 3 on 2 threads: two sessions of one thread; a third frame waits for a lane. Each wait returns that frame's
    labels, which stay intact until the caller's next call even while the other lanes run."""
    batch = frames(n=5)
    expected = [reference(frame_model, frame) for frame in batch]
    with open_runner(frame_model, "onnxruntime", threads=2, inflight=3) as runner:
        assert runner.inflight == 3 and len(runner._lanes) == 2
        for frame in batch[:3]:
            runner.start(frame)
        for index in range(5):
            labels = runner.wait()
            held = labels.copy()
            if index + 3 < 5:
                runner.start(batch[index + 3])  # may reuse this lane, but only after its labels were read
            assert np.array_equal(held, expected[index])
        together = runner.infer(np.stack(batch[:2]))
        assert np.array_equal(together, np.stack(expected[:2]))


def test_inflight_beyond_twice_the_threads_is_one_line(frame_model):
    with pytest.raises(FcnEdgeError, match="--inflight 5 must be between 1 and twice the inference threads"):
        open_runner(frame_model, "onnxruntime", threads=2, inflight=5)


def test_lanes_go_to_frames_in_the_order_they_were_started(frame_model):
    """More frames in flight than lanes, as the stream runs a file (3 on 2 lanes), for many frames: a later frame must
    never take the lane the oldest one waits for while the finished ones keep theirs, or wait() blocks for ever (the
    stream hung now and then under load before lanes were handed out in start order)."""
    import threading

    batch = frames(h=16, w=16, n=4)
    done = threading.Event()

    def stream_like(runner):
        in_flight = 0
        for index in range(600):
            runner.start(batch[index % 4])
            in_flight += 1
            if in_flight == runner.inflight:
                runner.wait()
                in_flight -= 1
        while in_flight:
            runner.wait()
            in_flight -= 1
        done.set()

    with open_runner(frame_model, "onnxruntime", threads=2, inflight=3) as runner:
        worker = threading.Thread(target=stream_like, args=(runner,), daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert done.is_set(), "wait() never returned: a frame waits for a lane that later frames hold"
