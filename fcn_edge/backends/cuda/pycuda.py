"""PyCUDA binding: the same operations through ``pycuda.driver``, on the device's primary context.

The primary context (not ``pycuda.autoinit``'s private one) is what the CUDA runtime and
so TensorRT use, so buffers allocated here are valid in TensorRT calls. PyCUDA raises
``pycuda.driver.Error`` subclasses whose text names the driver call and error; they are
re-raised as :class:`CudaError`. PyCUDA cannot be installed without a CUDA toolkit, so
the surface used here is kept small and listed in :data:`SURFACE` (checked by the tests).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from ...errors import FcnEdgeError
from .binding import NO_GPU_HINT, CudaBinding, CudaError, DeviceInfo, HostBuffer

# Every pycuda.driver name this module uses (tests/unit/test_trt_api.py keeps SURFACE in step with
# the code), and the methods it calls on PyCUDA objects (checked where PyCUDA is installed).
SURFACE = (
    "Context.get_current", "Context.pop", "Device", "Device.count", "Error", "Event", "Stream", "device_attribute.INTEGRATED",
    "device_attribute.MULTIPROCESSOR_COUNT",
    "host_alloc_flags.DEVICEMAP", "init", "mem_alloc", "memcpy_dtod_async", "memcpy_dtoh_async",
    "memcpy_htod_async", "pagelocked_empty",
)  # fmt: skip
OBJECT_SURFACE = (
    "Context.detach", "Context.push", "Device.compute_capability", "Device.get_attribute", "Device.name",
    "Device.retain_primary_context", "Device.total_memory",
    "DeviceAllocation.free", "Event.record", "Event.synchronize", "Event.time_since",
    "PagelockedHostAllocation.free", "PagelockedHostAllocation.get_device_pointer", "Stream.handle", "Stream.synchronize",
)  # fmt: skip


class PyCuda(CudaBinding):
    name = "pycuda"

    def __init__(self, index: int = 0) -> None:
        try:
            import pycuda.driver as drv
        except ImportError as error:  # not installed, or installed but libcuda.so (the driver) is missing
            raise FcnEdgeError(
                f"PyCUDA cannot be imported ({error}): pip install pycuda (needs the CUDA toolkit), or use cuda-python"
            ) from None
        self._drv = drv
        try:
            drv.init()
            count = drv.Device.count()
        except drv.Error as error:
            raise FcnEdgeError(f"no CUDA device: {error}: {NO_GPU_HINT}") from None
        if not 0 <= index < count:
            raise FcnEdgeError(f"no CUDA device {index}: this machine has {count}; choose 0..{count - 1}")
        self._context = None
        try:
            device = drv.Device(index)
            major, minor = device.compute_capability()
            integrated = device.get_attribute(drv.device_attribute.INTEGRATED)
            sms = device.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)
            self.device = DeviceInfo(
                index, device.name(), f"{major}.{minor}", bool(integrated), int(sms), device.total_memory() >> 20
            )
            self._context = device.retain_primary_context()
        except drv.Error as error:
            raise CudaError(str(error)) from None
        self._allocations: dict[int, Any] = {}

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        """Every driver call needs the context current in the calling thread, and CUDA's context stack is per
        thread: the stream's capture thread allocates frame buffers too. Push it where it is not current."""
        drv = self._drv
        pushed = False
        try:
            if drv.Context.get_current() != self._context:
                self._context.push()
                pushed = True
            yield
        except drv.Error as error:
            raise CudaError(str(error)) from None
        finally:
            if pushed:
                drv.Context.pop()

    def _host(self, nbytes: int, flags: int) -> HostBuffer:
        with self._calling():
            array = self._drv.pagelocked_empty(nbytes, np.uint8, mem_flags=flags)
            device_ptr = int(array.base.get_device_pointer()) if flags else None

        def release() -> None:
            with self._calling():
                array.base.free()

        return HostBuffer(array, device_ptr, release)

    def pinned(self, nbytes: int) -> HostBuffer:
        return self._host(nbytes, 0)

    def mapped(self, nbytes: int) -> HostBuffer:
        return self._host(nbytes, self._drv.host_alloc_flags.DEVICEMAP)

    def malloc(self, nbytes: int) -> int:
        with self._calling():
            allocation = self._drv.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        with self._calling():
            self._allocations.pop(ptr).free()

    def copy_htod(self, dst: int, src: HostBuffer, nbytes: int, stream: Any) -> None:
        with self._calling():
            self._drv.memcpy_htod_async(dst, src.array[:nbytes], stream)

    def copy_dtoh(self, dst: HostBuffer, src: int, nbytes: int, stream: Any) -> None:
        with self._calling():
            self._drv.memcpy_dtoh_async(dst.array[:nbytes], src, stream)

    def copy_dtod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        with self._calling():
            self._drv.memcpy_dtod_async(dst, src, nbytes, stream)

    def stream(self) -> Any:
        with self._calling():
            return self._drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        with self._calling():
            stream.synchronize()

    def destroy_stream(self, stream: Any) -> None:
        """PyCUDA destroys a stream when its object is collected; the caller drops its reference."""

    def event(self) -> Any:
        with self._calling():
            return self._drv.Event()

    def record(self, event: Any, stream: Any) -> None:
        with self._calling():
            event.record(stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        with self._calling():
            end.synchronize()
            return float(end.time_since(start))

    def destroy_event(self, event: Any) -> None:
        """PyCUDA destroys an event when its object is collected; the caller drops its reference."""

    def close(self) -> None:
        """Drop this binding's hold on the primary context (any thread may close: nothing stays pushed)."""
        with self._calling():
            self._context.detach()
