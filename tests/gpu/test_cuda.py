"""The CUDA bindings on a real GPU: page-locked and mapped buffers, async copies, streams, events.

A frame goes host -> device -> host through pinned buffers, and through mapped memory
that the GPU reads and writes in place (the Jetson zero-copy path; on a desktop GPU
mapped memory works the same, over PCIe). Every round trip is compared byte for byte.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from fcn_edge.backends.cuda import CudaError

pytestmark = pytest.mark.gpu

SHAPE = (480, 640, 3)


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)


def test_device_is_described(cuda):
    device = cuda.device
    assert device.name and re.fullmatch(r"\d+\.\d+", device.compute_capability)
    assert isinstance(device.integrated, bool)


def test_pinned_round_trip_is_byte_exact(cuda, frame):
    nbytes = frame.nbytes
    source, target, device = cuda.pinned(nbytes), cuda.pinned(nbytes), cuda.malloc(nbytes)
    stream = cuda.stream()
    try:
        assert source.device_ptr is None and source.host_ptr == source.array.ctypes.data
        source.view(np.uint8, SHAPE)[:] = frame  # the frame written straight into page-locked memory
        cuda.copy_htod(device, source, nbytes, stream)
        cuda.copy_dtoh(target, device, nbytes, stream)
        cuda.synchronize(stream)
        assert np.array_equal(target.view(np.uint8, SHAPE), frame)
    finally:
        cuda.destroy_stream(stream)
        cuda.free(device)
        source.free()
        target.free()


def test_mapped_memory_is_read_and_written_by_the_gpu_in_place(cuda, frame):
    nbytes = frame.nbytes
    mapped_in, mapped_out, device = cuda.mapped(nbytes), cuda.mapped(nbytes), cuda.malloc(nbytes)
    stream = cuda.stream()
    try:
        assert mapped_in.device_ptr and mapped_out.device_ptr
        mapped_in.view(np.uint8, SHAPE)[:] = frame
        cuda.copy_dtod(device, mapped_in.device_ptr, nbytes, stream)  # the GPU reads host memory in place
        cuda.copy_dtod(mapped_out.device_ptr, device, nbytes, stream)  # and writes host memory in place
        cuda.synchronize(stream)
        assert np.array_equal(mapped_out.view(np.uint8, SHAPE), frame)
    finally:
        cuda.destroy_stream(stream)
        cuda.free(device)
        mapped_in.free()
        mapped_out.free()


def test_events_time_work_on_a_stream(cuda, frame):
    source, device = cuda.pinned(frame.nbytes), cuda.malloc(frame.nbytes)
    stream, start, end = cuda.stream(), cuda.event(), cuda.event()
    try:
        assert isinstance(cuda.stream_handle(stream), int) and cuda.stream_handle(stream) != 0
        cuda.record(start, stream)
        cuda.copy_htod(device, source, frame.nbytes, stream)
        cuda.record(end, stream)
        assert cuda.elapsed_ms(start, end) >= 0.0
    finally:
        cuda.destroy_event(start)
        cuda.destroy_event(end)
        cuda.destroy_stream(stream)
        cuda.free(device)
        source.free()


def test_a_failed_call_names_the_cuda_error(cuda):
    with pytest.raises(CudaError, match="cudaErrorMemoryAllocation|out of memory"):
        cuda.malloc(1 << 50)  # a petabyte
