"""All CUDA calls, behind one small interface with two interchangeable bindings.

:func:`open_cuda` picks cuda-python (NVIDIA's bindings, pip wheels) or PyCUDA; the
TensorRT runner and the tests only see :class:`CudaBinding`. Host memory is always
page-locked and exposed as a numpy array over that memory (:class:`HostBuffer`), so a
frame written into it is what the GPU reads: on a desktop GPU through one async copy,
on Jetson (integrated GPU, CPU and GPU share DRAM) through a mapped buffer and its
device pointer, with no copy at all. Every CUDA status is checked; a failure raises
:class:`CudaError` naming the call and CUDA's error name.

Bindings are imported only when opened: a CPU-only install never imports CUDA.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import FcnEdgeError

BINDINGS = ("auto", "cuda-python", "pycuda")
NO_GPU_HINT = "run on a machine with an NVIDIA GPU and driver, or use the ONNX Runtime backend"


class CudaError(FcnEdgeError):
    """A CUDA call failed; the message names the call and CUDA's error name."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: str  # "8.7"
    integrated: bool  # shares DRAM with the CPU (Jetson): mapped host buffers need no copies


class HostBuffer:
    """``nbytes`` of page-locked host memory as a flat uint8 numpy array.

    ``device_ptr`` is set for mapped buffers: the address at which the GPU reads and writes
    this same memory. After :meth:`free` the array and every view of it are invalid.
    """

    def __init__(self, array: np.ndarray, device_ptr: int | None, release: Callable[[], None]) -> None:
        self.array = array
        self.host_ptr = int(array.ctypes.data)
        self.device_ptr = device_ptr
        self.nbytes = array.nbytes
        self._release: Callable[[], None] | None = release

    def view(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """The first bytes as a typed array: write frames here and nothing copies them on the host."""
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.array[:count].view(dtype).reshape(shape)

    def free(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None
            self.array = None


class CudaBinding(abc.ABC):
    """What the runner needs from CUDA, on one device. Pointers are ints; streams and events are opaque."""

    name: str
    device: DeviceInfo

    @abc.abstractmethod
    def pinned(self, nbytes: int) -> HostBuffer:
        """Page-locked host memory, for fast async copies."""

    @abc.abstractmethod
    def mapped(self, nbytes: int) -> HostBuffer:
        """Page-locked host memory mapped into the device's address space (``device_ptr`` set)."""

    @abc.abstractmethod
    def malloc(self, nbytes: int) -> int:
        """Device memory; free it with :meth:`free`."""

    @abc.abstractmethod
    def free(self, ptr: int) -> None: ...

    @abc.abstractmethod
    def copy_htod(self, dst: int, src: HostBuffer, nbytes: int, stream: Any) -> None: ...

    @abc.abstractmethod
    def copy_dtoh(self, dst: HostBuffer, src: int, nbytes: int, stream: Any) -> None: ...

    @abc.abstractmethod
    def copy_dtod(self, dst: int, src: int, nbytes: int, stream: Any) -> None: ...

    @abc.abstractmethod
    def stream(self) -> Any:
        """A new non-default stream (TensorRT syncs the device on the default one)."""

    @abc.abstractmethod
    def stream_handle(self, stream: Any) -> int:
        """The raw ``cudaStream_t`` as an int, as TensorRT's execute_async_v3 takes it."""

    @abc.abstractmethod
    def synchronize(self, stream: Any) -> None: ...

    @abc.abstractmethod
    def destroy_stream(self, stream: Any) -> None: ...

    @abc.abstractmethod
    def event(self) -> Any: ...

    @abc.abstractmethod
    def record(self, event: Any, stream: Any) -> None: ...

    @abc.abstractmethod
    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds between two recorded events; waits for ``end``."""

    @abc.abstractmethod
    def destroy_event(self, event: Any) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release the binding's hold on the device (after freeing what it allocated)."""


def open_cuda(binding: str = "auto", device: int = 0) -> CudaBinding:
    """The named binding on ``device``; "auto" takes cuda-python if installed, else PyCUDA."""
    if binding not in BINDINGS:
        raise FcnEdgeError(f"unknown CUDA binding {binding!r}: choose one of {', '.join(BINDINGS)}")
    if binding == "auto":
        binding = _installed_binding()
    if binding == "cuda-python":
        from .cuda_bindings.cuda_python import CudaPython

        return CudaPython(device)
    from .cuda_bindings.pycuda import PyCuda

    return PyCuda(device)


def _installed_binding() -> str:
    """cuda-python when it imports, else PyCUDA when installed."""
    import importlib.util

    from .cuda_bindings.cuda_python import import_cuda_python

    try:
        import_cuda_python()
        return "cuda-python"
    except FcnEdgeError:
        if importlib.util.find_spec("pycuda") is not None:
            return "pycuda"
    raise FcnEdgeError("no CUDA Python binding is installed: pip install cuda-python (or pip install 'fcn_edge[gpu]')")


def find_gpu() -> tuple[DeviceInfo | None, str | None]:
    """The first visible GPU, or None and why not. Quick: no context is created where cuda-python is installed."""
    from .cuda_bindings.cuda_python import find_gpu_driver, import_cuda_python

    try:
        driver, _ = import_cuda_python()
    except FcnEdgeError:
        return _find_gpu_torch()
    return find_gpu_driver(driver)


def _find_gpu_torch() -> tuple[DeviceInfo | None, str | None]:
    """Fallback when cuda-python is absent: a CUDA build of torch also knows the GPU."""
    try:
        import torch
    except ImportError:
        return None, "no CUDA GPU visible (neither cuda-python nor torch is installed: pip install cuda-python)"
    if not torch.cuda.is_available():
        return None, f"no CUDA GPU visible (torch {torch.__version__}: torch.cuda.is_available() is False)"
    props = torch.cuda.get_device_properties(0)
    return DeviceInfo(0, props.name, f"{props.major}.{props.minor}", bool(props.is_integrated)), None
