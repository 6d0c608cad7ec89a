"""Stand-in for ``pycuda.driver`` over :mod:`.device`, with the driver API's context rule.

Every call that allocates, copies or makes a stream or event needs a context current in
the calling thread (CUDA's context stack is per thread): without one it raises
``LogicError: ... invalid device context``, as PyCUDA does. Only the names fcn_edge uses.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .device import DEVICE_SIDE, GPU, HOST_SIDE, DeviceFault


class Error(Exception):
    pass


class LogicError(Error):
    pass


class MemoryError(Error):  # noqa: A001 - PyCUDA's name
    pass


_DRIVER_TEXT = {  # the driver API's words for what the stand-in GPU reports
    "cudaErrorMemoryAllocation": (MemoryError, "out of memory"),
    "cudaErrorIllegalAddress": (LogicError, "an illegal memory access was encountered"),
    "cudaErrorInvalidValue": (LogicError, "invalid argument"),
}


_threads = threading.local()
_initialized = False


def _stack() -> list["Context"]:
    if not hasattr(_threads, "stack"):
        _threads.stack = []
    return _threads.stack


def _current(call: str) -> None:
    if not _initialized:
        raise LogicError(f"{call} failed: initialization error (call pycuda.driver.init() first)")
    if not _stack():
        raise LogicError(f"{call} failed: invalid device context")


def _faults(call: str, work) -> Any:
    try:
        return work()
    except DeviceFault as fault:
        error, text = _DRIVER_TEXT.get(fault.code, (LogicError, fault.code))
        raise error(f"{call} failed: {text} ({fault})") from None


def init(flags: int = 0) -> None:
    global _initialized
    _initialized = True


class device_attribute:  # noqa: N801
    INTEGRATED = "INTEGRATED"
    MULTIPROCESSOR_COUNT = "MULTIPROCESSOR_COUNT"


class host_alloc_flags:  # noqa: N801
    DEVICEMAP = 2


class Context:
    def __init__(self, device: "Device") -> None:
        self.device = device

    def push(self) -> None:
        _stack().append(self)

    @staticmethod
    def pop() -> None:
        if not _stack():
            raise LogicError("cuCtxPopCurrent failed: invalid device context")
        _stack().pop()

    @staticmethod
    def get_current() -> "Context | None":
        return _stack()[-1] if _stack() else None

    def detach(self) -> None:
        """Drop this retain of the primary context."""


class Device:
    def __init__(self, index: int) -> None:
        if not _initialized:
            raise LogicError("cuDeviceGet failed: initialization error")
        if index != 0:
            raise LogicError(f"cuDeviceGet failed: invalid device ordinal {index}")
        self.index = index

    @staticmethod
    def count() -> int:
        if not _initialized:
            raise LogicError("cuDeviceGetCount failed: initialization error")
        return 1

    def name(self) -> str:
        return GPU.device.name

    def compute_capability(self) -> tuple[int, int]:
        return GPU.device.compute_capability

    def total_memory(self) -> int:
        return GPU.device.memory_bytes

    def get_attribute(self, attribute: str) -> int:
        device = GPU.device
        return {"INTEGRATED": int(device.integrated), "MULTIPROCESSOR_COUNT": device.sm_count}[attribute]

    def retain_primary_context(self) -> Context:
        return Context(self)


class PagelockedHostAllocation:
    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, mapped: bool) -> None:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        self.address = _faults("cuMemHostAlloc", lambda: GPU.memory.allocate(nbytes, "mapped" if mapped else "pinned"))
        self.mapped, self.nbytes = mapped, nbytes
        self.__array_interface__ = {"shape": shape, "typestr": dtype.str, "data": (self.address, False), "version": 3}

    def get_device_pointer(self) -> int:
        _current("cuMemHostGetDevicePointer")
        if not self.mapped:
            raise LogicError("cuMemHostGetDevicePointer failed: invalid value (not allocated with DEVICEMAP)")
        return self.address

    def free(self) -> None:
        _current("cuMemFreeHost")
        _faults("cuMemFreeHost", lambda: GPU.memory.release(self.address, HOST_SIDE))


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    _current("cuMemHostAlloc")
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)
    allocation = PagelockedHostAllocation(shape, np.dtype(dtype), bool(mem_flags & host_alloc_flags.DEVICEMAP))
    return np.asarray(allocation)  # its .base is the allocation, as PyCUDA's


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        self.address = _faults("cuMemAlloc", lambda: GPU.memory.allocate(nbytes, "device"))

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        _current("cuMemFree")
        _faults("cuMemFree", lambda: GPU.memory.release(self.address, ("device",)))


def mem_alloc(nbytes: int) -> DeviceAllocation:
    _current("cuMemAlloc")
    return DeviceAllocation(nbytes)


class Stream:
    def __init__(self, flags: int = 0) -> None:
        _current("cuStreamCreate")
        self._stream = GPU.new_stream()

    @property
    def handle(self) -> int:
        return self._stream.handle

    def synchronize(self) -> None:
        _current("cuStreamSynchronize")
        _faults("cuStreamSynchronize", self._stream.synchronize)

    def __del__(self) -> None:
        GPU.streams.pop(self._stream.handle, None)


class Event:
    def __init__(self, flags: int = 0) -> None:
        _current("cuEventCreate")
        self.stream: Stream | None = None
        self.time_ms: float | None = None

    def record(self, stream: Stream | None = None) -> "Event":
        _current("cuEventRecord")
        self.stream, self.time_ms = stream, None
        stream._stream.enqueue(lambda: setattr(self, "time_ms", GPU.now_ms()))
        return self

    def synchronize(self) -> "Event":
        _current("cuEventSynchronize")
        if self.stream is not None:
            self.stream.synchronize()
        return self

    def time_since(self, start: "Event") -> float:
        _current("cuEventElapsedTime")
        if start.time_ms is None or self.time_ms is None:
            raise LogicError("cuEventElapsedTime failed: resource not ready")
        return self.time_ms - start.time_ms


def _address(ref: Any) -> int:
    return int(ref)


def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream) -> None:
    _current("cuMemcpyHtoDAsync")
    _faults(
        "cuMemcpyHtoDAsync", lambda: GPU.copy(_address(dest), DEVICE_SIDE, src.ctypes.data, HOST_SIDE, src.nbytes, stream.handle)
    )


def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream) -> None:
    _current("cuMemcpyDtoHAsync")
    _faults(
        "cuMemcpyDtoHAsync", lambda: GPU.copy(dest.ctypes.data, HOST_SIDE, _address(src), DEVICE_SIDE, dest.nbytes, stream.handle)
    )


def memcpy_dtod_async(dest: Any, src: Any, size: int, stream: Stream) -> None:
    _current("cuMemcpyDtoDAsync")
    _faults("cuMemcpyDtoDAsync", lambda: GPU.copy(_address(dest), DEVICE_SIDE, _address(src), DEVICE_SIDE, size, stream.handle))
