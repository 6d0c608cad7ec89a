"""cuda-python binding: the CUDA runtime API, as TensorRT itself uses it, through NVIDIA's bindings.

Every call returns ``(status, *values)``; :meth:`CudaPython._call` turns a non-success
status into :class:`CudaError` with CUDA's error name. The runtime API works on the
device's primary context, which TensorRT shares. Both module layouts are handled:
``cuda.bindings.{driver,runtime}`` (cuda-python 12.6.1 and later) and the older
``cuda.{cuda,cudart}``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ...errors import FcnEdgeError
from .binding import NO_GPU_HINT, CudaBinding, CudaError, DeviceInfo, HostBuffer

INSTALL = "pip install 'cuda-python>=12,<13' (>=13 only on a CUDA 13 driver, >= 580), or pip install -e '.[gpu-cu12]'"


def import_cuda_python() -> tuple[Any, Any]:
    """``(driver, runtime)`` modules, from whichever layout this cuda-python has."""
    try:
        from cuda.bindings import driver, runtime
    except ImportError:
        try:
            from cuda import cuda as driver, cudart as runtime
        except ImportError:
            raise FcnEdgeError(f"cuda-python is not installed: {INSTALL}") from None
    return driver, runtime


def native_handle(obj: Any) -> int:
    """A stream's raw handle as an int (``int(obj)`` is deprecated from cuda-bindings 12.9.1)."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


def find_gpu_driver(driver: Any) -> tuple[DeviceInfo | None, str | None]:
    """Device 0 through the driver API (cuInit/cuDeviceGetCount), or None and what is missing."""
    try:
        (status,) = driver.cuInit(0)
    except RuntimeError as error:  # recent cuda-python raises when libcuda.so (the driver) is absent
        return None, f"no CUDA GPU visible (cuInit: {error})"
    if status != driver.CUresult.CUDA_SUCCESS:
        return None, f"no CUDA GPU visible (cuInit: {status.name})"
    status, count = driver.cuDeviceGetCount()
    if status != driver.CUresult.CUDA_SUCCESS or count == 0:
        return None, f"no CUDA GPU visible (cuDeviceGetCount: {status.name if status else '0 devices'})"
    device = _checked(driver, "cuDeviceGet", driver.cuDeviceGet(0))
    name = _checked(driver, "cuDeviceGetName", driver.cuDeviceGetName(256, device))
    major, minor, integrated, sms = (
        _checked(driver, "cuDeviceGetAttribute", driver.cuDeviceGetAttribute(which, device))
        for which in (
            driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
            driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
            driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_INTEGRATED,
            driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        )
    )
    memory = _checked(driver, "cuDeviceTotalMem", driver.cuDeviceTotalMem(device))
    return DeviceInfo(0, _text(name), f"{major}.{minor}", bool(integrated), int(sms), int(memory) >> 20), None


def _checked(driver: Any, name: str, result: tuple) -> Any:
    status, value = result
    if status != driver.CUresult.CUDA_SUCCESS:
        raise CudaError(f"{name} failed: {status.name}")
    return value


def _text(name: bytes) -> str:
    return bytes(name).split(b"\0", 1)[0].decode(errors="replace")


class CudaPython(CudaBinding):
    name = "cuda-python"

    def __init__(self, index: int = 0) -> None:
        _, self._runtime = import_cuda_python()
        runtime = self._runtime
        try:
            status, count = runtime.cudaGetDeviceCount()
        except RuntimeError as error:
            raise FcnEdgeError(f"no CUDA device: {error}: {NO_GPU_HINT}") from None
        if status != runtime.cudaError_t.cudaSuccess or count == 0:
            why = status.name if status != runtime.cudaError_t.cudaSuccess else "0 devices"
            raise FcnEdgeError(f"no CUDA device: cudaGetDeviceCount says {why}: {NO_GPU_HINT}")
        if not 0 <= index < count:
            raise FcnEdgeError(f"no CUDA device {index}: this machine has {count}; choose 0..{count - 1}")
        self._call("cudaSetDevice", runtime.cudaSetDevice(index))
        props = self._call("cudaGetDeviceProperties", runtime.cudaGetDeviceProperties(index))
        major, minor, integrated, sms = (
            self._call("cudaDeviceGetAttribute", runtime.cudaDeviceGetAttribute(which, index))
            for which in (
                runtime.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor,
                runtime.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor,
                runtime.cudaDeviceAttr.cudaDevAttrIntegrated,
                runtime.cudaDeviceAttr.cudaDevAttrMultiProcessorCount,
            )
        )
        self.device = DeviceInfo(index, _text(props.name), f"{major}.{minor}", bool(integrated), int(sms),
                                 int(props.totalGlobalMem) >> 20)  # fmt: skip

    def _call(self, name: str, result: tuple) -> Any:
        status, *values = result
        if status != self._runtime.cudaError_t.cudaSuccess:
            raise CudaError(f"{name} failed: {status.name}")
        return values[0] if values else None

    def _host(self, nbytes: int, mapped: bool) -> HostBuffer:
        runtime = self._runtime
        flags = runtime.cudaHostAllocMapped if mapped else runtime.cudaHostAllocDefault
        ptr = int(self._call("cudaHostAlloc", runtime.cudaHostAlloc(nbytes, flags)))

        def release() -> None:
            self._call("cudaFreeHost", runtime.cudaFreeHost(ptr))

        try:
            device_ptr = int(self._call("cudaHostGetDevicePointer", runtime.cudaHostGetDevicePointer(ptr, 0))) if mapped else None
        except CudaError:
            release()
            raise
        array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return HostBuffer(array, device_ptr, release)

    def pinned(self, nbytes: int) -> HostBuffer:
        return self._host(nbytes, mapped=False)

    def mapped(self, nbytes: int) -> HostBuffer:
        return self._host(nbytes, mapped=True)

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", self._runtime.cudaMalloc(nbytes)))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", self._runtime.cudaFree(ptr))

    def _copy(self, dst: int, src: int, nbytes: int, kind: Any, stream: Any) -> None:
        self._call("cudaMemcpyAsync", self._runtime.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def copy_htod(self, dst: int, src: HostBuffer, nbytes: int, stream: Any) -> None:
        self._copy(dst, src.host_ptr, nbytes, self._runtime.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def copy_dtoh(self, dst: HostBuffer, src: int, nbytes: int, stream: Any) -> None:
        self._copy(dst.host_ptr, src, nbytes, self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def copy_dtod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._copy(dst, src, nbytes, self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream)

    def stream(self) -> Any:
        runtime = self._runtime
        return self._call("cudaStreamCreateWithFlags", runtime.cudaStreamCreateWithFlags(runtime.cudaStreamNonBlocking))

    def stream_handle(self, stream: Any) -> int:
        return native_handle(stream)

    def synchronize(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", self._runtime.cudaStreamSynchronize(stream))

    def destroy_stream(self, stream: Any) -> None:
        self._call("cudaStreamDestroy", self._runtime.cudaStreamDestroy(stream))

    def event(self) -> Any:
        return self._call("cudaEventCreate", self._runtime.cudaEventCreate())

    def record(self, event: Any, stream: Any) -> None:
        self._call("cudaEventRecord", self._runtime.cudaEventRecord(event, stream))

    def elapsed_ms(self, start: Any, end: Any) -> float:
        self._call("cudaEventSynchronize", self._runtime.cudaEventSynchronize(end))
        return float(self._call("cudaEventElapsedTime", self._runtime.cudaEventElapsedTime(start, end)))

    def destroy_event(self, event: Any) -> None:
        self._call("cudaEventDestroy", self._runtime.cudaEventDestroy(event))

    def close(self) -> None:
        """Nothing to release: the runtime API's primary context lives as long as the process."""
