"""FAKES, for tests on a machine with no GPU: a numpy-backed CUDA binding and a TensorRT runtime stand-in.

Neither runs anything on a GPU. They exist so that the TensorRT runner's buffer handling
(binding, rebinding on a size change, reuse, the zero-copy path, release order) is tested
on every CI run, not only where a GPU happens to be. They keep the documented behaviour
of what they stand for, and fail loudly where the real thing would misbehave:

- :class:`NumpyCuda` (a :class:`fcn_edge.backends.cuda.CudaBinding`): "device" memory is
  numpy memory at page-aligned addresses, as cudaMalloc/cudaHostAlloc return; copies check
  that both ends are live allocations of enough bytes (CUDA: cudaErrorInvalidValue /
  illegal address); a double free or a copy on a destroyed stream is an error; ``close``
  with allocations still live is an error (a leak), and any call after ``close`` too.
- :func:`fake_tensorrt` (a module-like ``tensorrt``): ``Runtime.deserialize_cuda_engine``
  returns None for bytes that are not an engine; ``set_input_shape`` returns False for a
  shape outside the optimization profile or of the wrong rank; ``set_tensor_address``
  returns False for an unknown name and for a null or not 256-byte-aligned address
  (NvInferRuntime.h, IExecutionContext::setTensorAddress); ``execute_async_v3`` returns
  False unless every I/O tensor has an address and the input a shape; it reads the frame
  from the bound input address and writes ``labels`` (and ``logits``) to the bound outputs,
  through :class:`NumpyCuda`'s memory, so a stale or too small buffer is caught.

The "model": labels = (B + G + R) // 3 // 32, i.e. eight classes by brightness; logits are
that one-hot, as float32 [N, 8, H, W].
"""

from __future__ import annotations

import itertools
import json
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fcn_edge.backends.cuda import CudaBinding, CudaError, DeviceInfo, HostBuffer

PAGE = 4096
CLASSES = 8
ENGINE_MAGIC = b"FAKE-ENGINE"
IDENTITY = (4, 8192)  # the fake GPU's SM count and memory (MB)
FACTS = {"gpu_name": "Fake GPU", "compute_capability": "8.7", "sm_count": IDENTITY[0], "memory_mb": IDENTITY[1], "dla_cores": 0}


def reference_labels(frames: np.ndarray) -> np.ndarray:
    """What the fake engine computes for uint8 NHWC ``frames``."""
    return (frames.astype(np.uint16).sum(-1) // 3 // 32).astype(np.uint8)


class NumpyCuda(CudaBinding):
    """A CUDA binding over host memory; see the module docstring for what it checks."""

    name = "numpy-fake"

    def __init__(self, integrated: bool = False) -> None:
        self.device = DeviceInfo(0, "Fake GPU", "8.7", integrated, *IDENTITY)
        self.blocks: dict[int, np.ndarray] = {}  # address -> bytes, for device and mapped memory
        self.host: dict[int, str] = {}  # live host buffers: address -> "pinned" | "mapped"
        self.calls: list[tuple] = []  # ("htod", nbytes), ("free", address), ... in order
        self.streams: set[int] = set()
        self.closed = False
        self._handles = itertools.count(0x1000)

    def _live(self) -> None:
        if self.closed:
            raise CudaError("a call after close(): the context is gone")

    def _block(self, nbytes: int) -> tuple[int, np.ndarray]:
        raw = np.zeros(nbytes + PAGE, np.uint8)
        start = (-raw.ctypes.data) % PAGE
        block = raw[start : start + nbytes]
        return int(block.ctypes.data), block

    def view(self, address: int, nbytes: int) -> np.ndarray:
        """``nbytes`` of live memory at ``address``; an error for anything else (CUDA: illegal address)."""
        for start, block in self.blocks.items():
            if start <= address and address + nbytes <= start + block.nbytes:
                return block[address - start : address - start + nbytes]
        raise CudaError(f"cudaErrorIllegalAddress: {nbytes} bytes at {address:#x} are not a live allocation")

    def _host(self, nbytes: int, kind: str) -> HostBuffer:
        self._live()
        address, block = self._block(nbytes)
        self.host[address] = kind
        if kind == "mapped":
            self.blocks[address] = block  # the device reads mapped memory at the same address (unified addressing)

        def release() -> None:
            self._live()
            self.calls.append(("free_host", address))
            del self.host[address]
            self.blocks.pop(address, None)

        return HostBuffer(block, address if kind == "mapped" else None, release)

    def pinned(self, nbytes: int) -> HostBuffer:
        return self._host(nbytes, "pinned")

    def mapped(self, nbytes: int) -> HostBuffer:
        return self._host(nbytes, "mapped")

    def malloc(self, nbytes: int) -> int:
        self._live()
        address, block = self._block(nbytes)
        self.blocks[address] = block
        self.calls.append(("malloc", nbytes))
        return address

    def free(self, ptr: int) -> None:
        self._live()
        if ptr not in self.blocks or ptr in self.host:
            raise CudaError(f"cudaErrorInvalidValue: cudaFree of {ptr:#x}, which is not a live device allocation")
        del self.blocks[ptr]
        self.calls.append(("free", ptr))

    def _stream_ok(self, stream: Any) -> None:
        self._live()
        if stream not in self.streams:
            raise CudaError(f"cudaErrorInvalidResourceHandle: stream {stream} was destroyed or never created")

    def copy_htod(self, dst: int, src: HostBuffer, nbytes: int, stream: Any) -> None:
        self._stream_ok(stream)
        if src.array is None or src.nbytes < nbytes:
            raise CudaError("cudaErrorInvalidValue: the host buffer was freed or is too small")
        self.view(dst, nbytes)[:] = src.array[:nbytes]
        self.calls.append(("htod", nbytes))

    def copy_dtoh(self, dst: HostBuffer, src: int, nbytes: int, stream: Any) -> None:
        self._stream_ok(stream)
        if dst.array is None or dst.nbytes < nbytes:
            raise CudaError("cudaErrorInvalidValue: the host buffer was freed or is too small")
        dst.array[:nbytes] = self.view(src, nbytes)
        self.calls.append(("dtoh", nbytes))

    def copy_dtod(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self._stream_ok(stream)
        self.view(dst, nbytes)[:] = self.view(src, nbytes)

    def stream(self) -> Any:
        self._live()
        handle = next(self._handles)
        self.streams.add(handle)
        return handle

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def synchronize(self, stream: Any) -> None:
        self._stream_ok(stream)
        self.calls.append(("sync",))

    def destroy_stream(self, stream: Any) -> None:
        self._stream_ok(stream)
        self.streams.remove(stream)
        self.calls.append(("destroy_stream",))

    def event(self) -> Any:
        return object()

    def record(self, event: Any, stream: Any) -> None:
        self._stream_ok(stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return 0.0

    def destroy_event(self, event: Any) -> None:
        """Nothing to release."""

    def reopen(self) -> "NumpyCuda":
        """What open_cuda returns: the same device again (its primary context outlives a binding's close)."""
        self.closed = False
        return self

    def close(self) -> None:
        self._live()
        leaked = {**{a: "device" for a in self.blocks if a not in self.host}, **self.host}
        if leaked or self.streams:
            raise CudaError(f"close() with {len(leaked)} allocations and {len(self.streams)} streams still live: {leaked}")
        self.closed = True
        self.calls.append(("close",))


def engine_bytes(min_shape, opt_shape, max_shape, logits: bool = False) -> bytes:
    """The serialized form of a fake engine: its profile and whether it also outputs logits."""
    spec = {"min": list(min_shape), "opt": list(opt_shape), "max": list(max_shape), "logits": logits}
    return ENGINE_MAGIC + json.dumps(spec).encode()


@dataclass
class FakeEngine:
    profile: dict[str, list[int]]
    logits: bool
    cuda: NumpyCuda
    dla_core: int
    contexts: list["FakeContext"] = field(default_factory=list)

    @property
    def tensors(self) -> dict[str, tuple[str, np.dtype, list[int]]]:
        found = {"frame": ("INPUT", np.dtype(np.uint8), [-1, -1, -1, 3]), "labels": ("OUTPUT", np.dtype(np.uint8), [-1, -1, -1])}
        if self.logits:
            found["logits"] = ("OUTPUT", np.dtype(np.float32), [-1, CLASSES, -1, -1])
        return found

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> str:
        return self.tensors[name][0]

    def get_tensor_dtype(self, name: str) -> np.dtype:
        return self.tensors[name][1]

    def get_tensor_shape(self, name: str) -> list[int]:
        return self.tensors[name][2]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[list[int]]:
        return [self.profile["min"], self.profile["opt"], self.profile["max"]]

    def create_execution_context(self) -> "FakeContext":
        context = FakeContext(self)
        self.contexts.append(context)
        return context


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.input_shape: tuple[int, ...] | None = None
        self.addresses: dict[str, int] = {}
        self.address_calls = 0
        self.executions: list[int] = []  # the input address each run read

    def set_input_shape(self, name: str, shape) -> bool:
        low, high = self.engine.profile["min"], self.engine.profile["max"]
        if name != "frame" or len(shape) != len(low) or not all(a <= s <= b for a, s, b in zip(low, shape, high)):
            return False
        self.input_shape = tuple(int(s) for s in shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self.input_shape is None:
            return tuple(self.engine.get_tensor_shape(name))
        n, h, w, _ = self.input_shape
        return {"frame": self.input_shape, "labels": (n, h, w), "logits": (n, CLASSES, h, w)}[name]

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.address_calls += 1
        if name not in self.engine.tensors or not address or address % 256:
            return False
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda = self.engine.cuda
        if self.input_shape is None or set(self.addresses) != set(self.engine.tensors) or stream_handle not in cuda.streams:
            return False
        n, h, w, _ = self.input_shape
        frames = cuda.view(self.addresses["frame"], n * h * w * 3).reshape(n, h, w, 3)
        labels = reference_labels(frames)
        cuda.view(self.addresses["labels"], labels.nbytes)[:] = labels.reshape(-1)
        if "logits" in self.addresses:
            logits = (np.arange(CLASSES)[None, :, None, None] == labels[:, None]).astype(np.float32)
            cuda.view(self.addresses["logits"], logits.nbytes)[:] = logits.view(np.uint8).reshape(-1)
        self.executions.append(self.addresses["frame"])
        return True


def fake_tensorrt(cuda: NumpyCuda, version: str = "10.3.0.30") -> types.SimpleNamespace:
    """A stand-in for the ``tensorrt`` module, as much of it as the runner touches."""
    runtimes: list[Any] = []

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity: str) -> None:
            self.severity = severity

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.DLA_core = -1
            self.num_DLA_cores = 0
            self.engines: list[FakeEngine] = []
            runtimes.append(self)

        def deserialize_cuda_engine(self, blob: bytes) -> FakeEngine | None:
            if not blob.startswith(ENGINE_MAGIC):
                return None  # TensorRT logs why and returns None
            spec = json.loads(blob[len(ENGINE_MAGIC) :])
            engine = FakeEngine({k: spec[k] for k in ("min", "opt", "max")}, spec["logits"], cuda, self.DLA_core)
            self.engines.append(engine)
            return engine

    return types.SimpleNamespace(
        __version__=version, Builder=object, Logger=Logger, Runtime=Runtime, runtimes=runtimes,
        TensorIOMode=types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"), nptype=lambda dtype: dtype,
    )  # fmt: skip
