"""The TensorRT runner's buffer handling, on FAKES (tests/unit/trt_fakes.py): no GPU and no TensorRT run here.

A numpy-backed CUDA binding and a TensorRT stand-in with TensorRT's documented behaviour
(profile-checked input shapes, 256-byte-aligned non-null addresses, every address and shape
set before a run) let these tests check what the runner does with memory: one binding per
frame size, reallocation only when a size outgrows the buffers, the copies per frame on a
desktop GPU, none on Jetson, frames from the runner's frame pool read in place, and
everything freed, TensorRT objects and CUDA memory before the CUDA context. What the fakes
cannot show (real kernels, real DMA) is tests/gpu/'s and ``python -m fcn_edge.doctor``'s job.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcn_edge.backends.cuda import CudaError
from fcn_edge.backends.tensorrt import TrtRunner
from fcn_edge.backends.tensorrt import api as trt_api
from fcn_edge.backends.tensorrt import runner as runner_module
from fcn_edge.errors import FcnEdgeError
from fcn_edge.sidecar import sidecar_path
from trt_fakes import FACTS, NumpyCuda, engine_bytes, fake_tensorrt, reference_labels

PROFILE = ((1, 16, 16, 3), (1, 64, 96, 3), (2, 128, 160, 3))


def _frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def make_runner(tmp_path, monkeypatch):
    """(runner, cuda, trt) over a fake engine file and sidecar; ``integrated`` picks the Jetson path."""

    def make(integrated: bool = False, logits: bool = False, dla_core: int | None = None, cuda: NumpyCuda | None = None):
        cuda = cuda or NumpyCuda(integrated)
        trt = fake_tensorrt(cuda)
        engine = tmp_path / "fake.int8.engine"
        engine.write_bytes(engine_bytes(*PROFILE, logits=logits))
        facts = {"tensorrt_version": trt.__version__, **FACTS, "dla_core": dla_core}
        sidecar_path(engine).write_text(json.dumps({"engine": facts}))
        monkeypatch.setattr(trt_api, "import_tensorrt", lambda: trt)
        monkeypatch.setattr(runner_module, "open_cuda", lambda binding: cuda.reopen())
        return TrtRunner(engine), cuda, trt

    return make


def _context(trt):
    return trt.runtimes[0].engines[0].contexts[0]


def test_desktop_binds_once_per_size_and_reallocates_only_when_a_size_outgrows_the_buffers(make_runner):
    runner, cuda, trt = make_runner()
    with runner:
        for height, width in [(64, 96), (128, 160), (32, 48), (64, 96)]:
            frame = _frame(height, width)
            labels = runner.infer(frame)
            assert labels.shape == (height, width) and np.array_equal(labels, reference_labels(frame[None])[0])
        assert runner.rebinds == 4 and runner.reallocations == 1  # only 128x160 outgrew the first buffers
        assert _context(trt).address_calls == 4  # input + labels at the first size, again once they grew
        copies = [c for c in cuda.calls if c[0] in ("htod", "dtoh")]
        assert copies[-2:] == [("htod", 64 * 96 * 3), ("dtoh", 64 * 96)]  # one copy each way, of the bound size
        again = runner.infer(_frame(64, 96, seed=1))
        assert np.shares_memory(again, labels)  # the output buffer is reused: the next call overwrites it


def test_frames_outside_the_profile_are_a_user_error(make_runner):
    runner, _, _ = make_runner()
    with runner, pytest.raises(FcnEdgeError, match="outside the engine's input profile"):
        runner.infer(_frame(256, 256))


def test_a_frame_written_into_the_input_buffer_is_not_copied_on_the_host(make_runner):
    runner, cuda, _ = make_runner()
    with runner:
        buffer = runner.input_buffer((64, 96, 3))
        assert any(np.shares_memory(buffer, block) for block in [b.array for b in _host_buffers(runner)])
        buffer[:] = _frame(64, 96)
        assert np.array_equal(runner.infer(buffer), reference_labels(buffer[None])[0])


def _host_buffers(runner):
    return [m.host for m in runner._memory.values() if m.host is not None]


def test_desktop_frame_pool_buffers_are_copied_to_the_gpu_straight_from_where_they_were_decoded(make_runner):
    runner, cuda, trt = make_runner()
    with runner:
        pool = [runner.frame_buffer((64, 96, 3)) for _ in range(3)]
        assert all(cuda.host[p.ctypes.data] == "pinned" for p in pool)
        staging = runner.input_buffer((64, 96, 3))
        staging[:] = 7  # a sentinel: a host copy through the input buffer would overwrite it
        for index, buffer in enumerate(pool):
            buffer[:] = _frame(64, 96, seed=index)
            assert np.array_equal(runner.infer(buffer), reference_labels(buffer[None])[0])
        assert (staging == 7).all()
        assert _context(trt).address_calls == 2  # the device input buffer stays bound: one async copy per frame


def test_jetson_copies_nothing_and_reads_frame_pool_buffers_in_place(make_runner):
    runner, cuda, trt = make_runner(integrated=True)
    with runner:
        first, second = runner.frame_buffer((64, 96, 3)), runner.frame_buffer((64, 96, 3))
        assert cuda.host[first.ctypes.data] == "mapped"
        for buffer, seed in [(first, 1), (second, 2), (first, 3)]:
            buffer[:] = _frame(64, 96, seed)
            assert np.array_equal(runner.infer(buffer), reference_labels(buffer[None])[0])
        context = _context(trt)
        assert context.executions == [first.ctypes.data, second.ctypes.data, first.ctypes.data]  # zero-copy: bound in place
        other = _frame(64, 96, seed=4)  # not runner memory: copied into the mapped input buffer, which is bound again
        assert np.array_equal(runner.infer(other), reference_labels(other[None])[0])
        assert context.executions[-1] == runner._memory["frame"].device
        assert not [c for c in cuda.calls if c[0] in ("htod", "dtoh")]


def test_a_logits_output_gets_device_memory_only(make_runner):
    runner, cuda, _ = make_runner(logits=True)
    with runner:
        runner.infer(_frame(64, 96))
        assert runner._memory["logits"].host is None
        assert [c for c in cuda.calls if c[0] == "dtoh"] == [("dtoh", 64 * 96)]  # the labels alone come back


def test_everything_is_freed_before_the_cuda_context_goes(make_runner):
    runner, cuda, _ = make_runner(integrated=False)
    runner.activate()
    runner.frame_buffer((64, 96, 3))
    runner.infer(_frame(128, 160))
    runner.infer(_frame(64, 96))
    runner.deactivate()  # NumpyCuda.close raises on any live allocation or stream
    assert cuda.closed and cuda.calls[-1] == ("close",) and not runner.is_active
    assert runner._context is None and runner._engine is None
    runner.activate()  # activates again after a deactivate, on fresh buffers
    runner.deactivate()


def test_an_engine_tensorrt_cannot_load_releases_what_activate_made(make_runner, tmp_path):
    runner, cuda, _ = make_runner()
    runner.path.write_bytes(b"not an engine")
    with pytest.raises(FcnEdgeError, match="TensorRT cannot load"):
        runner.activate()
    assert cuda.closed and not runner.is_active


def test_an_address_tensorrt_refuses_is_an_error_not_a_crash(make_runner):
    class Misaligned(NumpyCuda):
        def malloc(self, nbytes):
            return super().malloc(nbytes + 8) + 8  # not 256-byte aligned: TensorRT returns False

        def free(self, ptr):
            super().free(ptr - 8)

    runner, cuda, _ = make_runner(cuda=Misaligned())
    with runner, pytest.raises(FcnEdgeError, match="refused the address of tensor frame"):
        runner.infer(_frame(64, 96))
    assert cuda.closed


def test_the_dla_core_is_set_before_the_engine_is_deserialized(make_runner):
    runner, _, trt = make_runner(dla_core=1)
    with runner:
        assert trt.runtimes[0].engines[0].dla_core == 1
    runner, _, trt = make_runner()
    with runner:
        assert trt.runtimes[0].engines[0].dla_core == -1  # untouched: TensorRT's default


def test_the_fakes_keep_tensorrt_s_rules():
    """The fakes themselves: what they refuse is what TensorRT documents it refuses."""
    cuda = NumpyCuda()
    engine = fake_tensorrt(cuda).Runtime(None).deserialize_cuda_engine(engine_bytes(*PROFILE))
    context = engine.create_execution_context()
    assert not context.set_input_shape("frame", (1, 8, 8, 3)) and not context.set_input_shape("frame", (1, 64, 96))
    assert not context.execute_async_v3(cuda.stream())  # no shape, no addresses
    assert context.set_input_shape("frame", (1, 64, 96, 3))
    assert not context.set_tensor_address("frame", 0) and not context.set_tensor_address("nope", 4096)
    assert not context.set_tensor_address("frame", 4096 + 8)
    with pytest.raises(CudaError, match="not a live allocation"):
        cuda.view(4096, 16)
