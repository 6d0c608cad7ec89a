"""Runners take a batch (uint8 NxHxWx3 in, NxHxW labels out): each frame's labels as when it runs alone, on ONNX Runtime,
OpenVINO and TensorRT (its stand-in); a model whose batch is fixed at 1 says so (max_batch) and refuses more."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from fcn_edge.backends import open_runner
from fcn_edge.errors import FcnEdgeError


def frames(n=3, h=64, w=96):
    return np.stack([np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8) for i in range(n)])


@pytest.fixture(scope="module")
def batch_one_model(frame_model, tmp_path_factory):
    """The frame model with its batch dimension fixed at 1, as many foreign exports come."""
    model = onnx.load(str(frame_model))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[0].ClearField("dim_param")
        dims[0].dim_value = 1
    path = tmp_path_factory.mktemp("batch_one") / "batch_one.onnx"
    onnx.save(model, str(path))
    return path


def backends():
    found = ["onnxruntime"]
    try:
        import openvino  # noqa: F401

        found.append("openvino")
    except ImportError:
        pass
    return found


@pytest.mark.parametrize("backend", backends())
def test_a_batch_gives_each_frame_its_own_labels(frame_model, backend, tmp_path):
    batch = frames()
    with open_runner(frame_model, backend, threads=1) as runner:
        assert runner.max_batch is None
        alone = [runner.infer(np.ascontiguousarray(frame)).copy() for frame in batch]
        labels = runner.infer(batch)
        assert labels.shape == (3, 64, 96) and labels.dtype == np.uint8
        for i in range(3):
            assert (labels[i] == alone[i]).mean() >= 0.999
        gathered = runner.batch_buffer((2, 64, 96, 3))
        gathered[:] = batch[1:]
        assert runner.batch_buffer((2, 64, 96, 3)) is gathered  # reused: no allocation per step
        assert (runner.infer(gathered) == alone[1:]).mean() >= 0.999
        single = runner.infer(np.ascontiguousarray(batch[0]))  # and back to one frame
        assert single.shape == (64, 96) and (single == alone[0]).mean() >= 0.999


@pytest.mark.parametrize("backend", backends())
def test_a_fixed_batch_of_one_is_reported_and_a_larger_batch_refused(batch_one_model, backend):
    with open_runner(batch_one_model, backend, threads=1) as runner:
        assert runner.max_batch == 1
        assert runner.infer(frames(1)).shape == (1, 64, 96)
        with pytest.raises(FcnEdgeError, match="at most 1 frame"):
            runner.infer(frames(2))


def test_the_tensorrt_runner_batches_up_to_its_profile(standin_imports, frame_model, tmp_path):
    """An engine built with a profile of max batch 4 (4 streams) runs batches of 1..4, in its page-locked buffer."""
    standin_imports("10.13")
    from fcn_edge.backends.tensorrt import TrtBuildOptions, TrtRunner, build_engine
    from fcn_edge.backends.tensorrt.runner import write_sidecar

    engine = tmp_path / "m.fp32.engine"
    options = TrtBuildOptions(min_shape=(1, 64, 96, 3), opt_shape=(4, 64, 96, 3), max_shape=(4, 64, 96, 3), progress=False)
    write_sidecar(engine, build_engine(frame_model, engine, options))
    batch = frames(4)
    with open_runner(frame_model, "onnxruntime", threads=1) as reference:
        expected = [reference.infer(np.ascontiguousarray(frame)).copy() for frame in batch]
    with TrtRunner(engine) as runner:
        assert runner.max_batch == 4
        for n in (4, 2, 1):
            gathered = runner.batch_buffer((n, 64, 96, 3))
            gathered[:] = batch[:n]
            labels = runner.infer(gathered)
            assert labels.shape == (n, 64, 96)
            assert (labels == np.stack(expected[:n])).mean() >= 0.999
        with pytest.raises(FcnEdgeError, match="at most 4 frame"):
            runner.infer(frames(5))


def test_openvino_runs_parts_of_a_batch_on_its_streams_at_once(frame_model, tmp_path):
    """What the multi-stream loop does with OpenVINO: a batch split across two streams, each part's labels as alone."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'fcn_edge[openvino]')")
    from fcn_edge.stream.multi import MultiStream
    from fcn_edge.stream.overlay import Overlay
    from fcn_edge.stream.pipeline import StreamOptions
    from fcn_edge.stream.sources import SyntheticSource

    batch = frames(3)
    with open_runner(frame_model, "openvino", threads=2, inflight=2) as runner:
        alone = [runner.infer(np.ascontiguousarray(frame)).copy() for frame in batch]
        runner.start(batch[:2])
        runner.start(batch[2:])
        first, second = runner.wait(), runner.wait()
        assert first.shape == (2, 64, 96) and second.shape == (1, 64, 96)
        assert (np.concatenate([first, second]) == np.stack(alone)).mean() >= 0.999
        opened = [SyntheticSource((96, 64), 0, seed=i) for i in range(3)]
        for source in opened:
            source.open()
        multi = MultiStream([(f"s{i}", s, []) for i, s in enumerate(opened)], runner, Overlay([(0, 0, 0)], 0.5),
                            StreamOptions(max_frames=6, status_interval=0))  # fmt: skip
        assert [s.frames for s in multi.run()] == [6, 6, 6]
