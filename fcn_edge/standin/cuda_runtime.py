"""Stand-in for cuda-python's ``cuda.bindings.runtime`` over :mod:`.device`: every call returns ``(cudaError_t, *values)``.

Only the calls fcn_edge makes, with CUDA's documented checks: host memory from
cudaHostAlloc, a device pointer only for cudaHostAllocMapped memory, copies whose ends are
live allocations on the side their kind names, streams that must exist.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace
from typing import Any, Callable

from .device import DEVICE_SIDE, GPU, HOST_SIDE, DeviceFault


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalAddress = 700


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaDeviceAttr(enum.IntEnum):  # noqa: N801
    cudaDevAttrMultiProcessorCount = 16
    cudaDevAttrIntegrated = 18
    cudaDevAttrComputeCapabilityMajor = 75
    cudaDevAttrComputeCapabilityMinor = 76


cudaHostAllocDefault, cudaHostAllocMapped = 0, 2
cudaStreamNonBlocking = 1


class cudaStream_t:  # noqa: N801
    def __init__(self, handle: int) -> None:
        self._handle = handle

    def getPtr(self) -> int:  # noqa: N802
        return self._handle

    def __int__(self) -> int:
        return self._handle


class cudaEvent_t:  # noqa: N801
    def __init__(self) -> None:
        self.stream: int | None = None
        self.time_ms: float | None = None


def _handle(stream: Any) -> int:
    return int(stream.getPtr() if hasattr(stream, "getPtr") else stream)


def _status(call: Callable[[], Any]) -> tuple:
    try:
        value = call()
    except DeviceFault as fault:
        return (cudaError_t[fault.code],)
    return (cudaError_t.cudaSuccess,) if value is None else (cudaError_t.cudaSuccess, value)


def _check_device(index: int) -> None:
    if index != 0:
        raise DeviceFault("cudaErrorInvalidDevice", f"device {index}: the stand-in has one")


def cudaGetDeviceCount() -> tuple:  # noqa: N802
    return cudaError_t.cudaSuccess, 1


def cudaSetDevice(index: int) -> tuple:  # noqa: N802
    return _status(lambda: _check_device(index))


def cudaGetDeviceProperties(index: int) -> tuple:  # noqa: N802
    def props() -> SimpleNamespace:
        _check_device(index)
        device = GPU.device
        return SimpleNamespace(
            name=device.name.encode().ljust(256, b"\0"), major=device.compute_capability[0],
            minor=device.compute_capability[1], multiProcessorCount=device.sm_count,
            totalGlobalMem=device.memory_bytes, integrated=int(device.integrated),
        )  # fmt: skip

    return _status(props)


def cudaDeviceGetAttribute(attribute: cudaDeviceAttr, index: int) -> tuple:  # noqa: N802
    def value() -> int:
        _check_device(index)
        device = GPU.device
        return {
            cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor: device.compute_capability[0],
            cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor: device.compute_capability[1],
            cudaDeviceAttr.cudaDevAttrIntegrated: int(device.integrated),
            cudaDeviceAttr.cudaDevAttrMultiProcessorCount: device.sm_count,
        }[attribute]

    return _status(value)


def cudaHostAlloc(nbytes: int, flags: int) -> tuple:  # noqa: N802
    return _status(lambda: GPU.memory.allocate(nbytes, "mapped" if flags & cudaHostAllocMapped else "pinned"))


def cudaHostGetDevicePointer(ptr: int, flags: int) -> tuple:  # noqa: N802
    def pointer() -> int:
        GPU.memory.view(ptr, 1, ("mapped",))  # only mapped host memory has a device address
        return int(ptr)

    return _status(pointer)


def cudaFreeHost(ptr: int) -> tuple:  # noqa: N802
    return _status(lambda: GPU.memory.release(ptr, HOST_SIDE))


def cudaMalloc(nbytes: int) -> tuple:  # noqa: N802
    return _status(lambda: GPU.memory.allocate(nbytes, "device"))


def cudaFree(ptr: int) -> tuple:  # noqa: N802
    return _status(lambda: GPU.memory.release(ptr, ("device",)))


_SIDES = {
    cudaMemcpyKind.cudaMemcpyHostToDevice: (DEVICE_SIDE, HOST_SIDE),
    cudaMemcpyKind.cudaMemcpyDeviceToHost: (HOST_SIDE, DEVICE_SIDE),
    cudaMemcpyKind.cudaMemcpyDeviceToDevice: (DEVICE_SIDE, DEVICE_SIDE),
    cudaMemcpyKind.cudaMemcpyHostToHost: (HOST_SIDE, HOST_SIDE),
}


def cudaMemcpyAsync(dst: int, src: int, nbytes: int, kind: cudaMemcpyKind, stream: Any) -> tuple:  # noqa: N802
    dst_kinds, src_kinds = _SIDES[kind]
    return _status(lambda: GPU.copy(dst, dst_kinds, src, src_kinds, nbytes, _handle(stream)))


def cudaStreamCreateWithFlags(flags: int) -> tuple:  # noqa: N802
    return cudaError_t.cudaSuccess, cudaStream_t(GPU.new_stream().handle)


def cudaStreamSynchronize(stream: Any) -> tuple:  # noqa: N802
    return _status(lambda: GPU.stream(_handle(stream)).synchronize())


def cudaStreamDestroy(stream: Any) -> tuple:  # noqa: N802
    return _status(lambda: GPU.destroy_stream(_handle(stream)))


def cudaEventCreate() -> tuple:  # noqa: N802
    return cudaError_t.cudaSuccess, cudaEvent_t()


def cudaEventRecord(event: cudaEvent_t, stream: Any) -> tuple:  # noqa: N802
    def record() -> None:
        event.stream, event.time_ms = _handle(stream), None
        GPU.stream(event.stream).enqueue(lambda: setattr(event, "time_ms", GPU.now_ms()))

    return _status(record)


def cudaEventSynchronize(event: cudaEvent_t) -> tuple:  # noqa: N802
    def wait() -> None:
        if event.stream is None:
            raise DeviceFault("cudaErrorInvalidResourceHandle", "the event was never recorded")
        GPU.stream(event.stream).synchronize()

    return _status(wait)


def cudaEventElapsedTime(start: cudaEvent_t, end: cudaEvent_t) -> tuple:  # noqa: N802
    def elapsed() -> float:
        if start.time_ms is None or end.time_ms is None:
            raise DeviceFault("cudaErrorInvalidResourceHandle", "an event has not completed")
        return end.time_ms - start.time_ms

    return _status(elapsed)


def cudaEventDestroy(event: cudaEvent_t) -> tuple:  # noqa: N802
    return (cudaError_t.cudaSuccess,)
