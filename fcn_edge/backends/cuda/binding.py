"""The one small interface every CUDA binding implements (cuda-python, PyCUDA).

:func:`fcn_edge.backends.cuda.open_cuda` picks one; the TensorRT runner and the tests
only see :class:`CudaBinding`. Host memory is always
page-locked and exposed as a numpy array over that memory (:class:`HostBuffer`), so a
frame written into it is what the GPU reads: on a desktop GPU through one async copy,
on Jetson (integrated GPU, CPU and GPU share DRAM) through a mapped buffer and its
device pointer, with no copy at all. Every CUDA status is checked; a failure raises
:class:`CudaError` naming the call and CUDA's error name.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...errors import FcnEdgeError

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
    sm_count: int = 0  # with the memory, what tells Jetson modules apart: every Orin is "Orin", compute 8.7
    memory_mb: int = 0

    def describe(self) -> str:
        return f"{self.name} (compute {self.compute_capability}, {self.sm_count} SMs, {self.memory_mb} MB)"


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
