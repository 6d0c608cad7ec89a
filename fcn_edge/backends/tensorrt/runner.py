"""TensorRT runner: a uint8 camera frame in, uint8 labels out, every buffer allocated once.

``activate()`` reads the engine's JSON sidecar (``<engine>.json``) and refuses an engine
built for another TensorRT version or GPU (engines are not portable), deserializes it and
opens one CUDA stream. Buffers are bound to a frame size: the first frame, and any frame
of a new size, calls ``set_input_shape`` and reallocates only if the new size needs more
memory than is allocated; ``set_tensor_address`` is called once per buffer set (and on
Jetson when the input moves to another frame-pool buffer), not per frame. Per frame:

- desktop GPU: frame -> page-locked input buffer, async copy to the device,
  ``execute_async_v3``, async copy of the labels back, one stream synchronize;
- Jetson (integrated GPU): input and labels live in mapped page-locked memory that the
  GPU reads and writes in place, so nothing is copied between host and device.

Frames decoded into memory the runner allocated are not copied on the host:
:meth:`TrtRunner.frame_buffer` hands out a frame-pool buffer (page-locked on a desktop GPU,
mapped on Jetson) that ``infer`` reads in place: one async copy on a desktop GPU, none on
Jetson, where the input tensor's address is pointed at the buffer itself.
:meth:`TrtRunner.input_buffer` is the runner's own input buffer, for a caller that decodes
one frame at a time. Any other frame is first copied (on the host) into the input buffer.
The labels returned are a view of the runner's output buffer, overwritten by the next call
and freed when a larger frame reallocates it (as is :meth:`TrtRunner.input_buffer`'s array):
copy what you keep. The stream copies the labels it passes on, and gives frame-pool slots of
an old frame size back (:meth:`TrtRunner.release_frame_buffer`).

Batches: ``infer`` takes an NxHxWx3 batch (several cameras, fcn_edge/stream/multi.py) up to
the profile's max batch (``max_batch``; build with e.g. ``--min-shape 1x480x640x3 --opt-shape
4x480x640x3 --max-shape 4x480x640x3`` for 4 streams); :meth:`TrtRunner.batch_buffer` is the
runner's page-locked input buffer at the batch's shape, so a batch gathered there is copied
to the device with no further host copy.

Uses the name-based tensor API of TensorRT 8.5+ (the binding API is deprecated there and
removed in 10.0; see fcn_edge/backends/tensorrt/api.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import write_json_atomic
from ...errors import FcnEdgeError
from ...runner import Runner
from ...sidecar import Sidecar, sidecar_path
from ..cuda import CudaBinding, DeviceInfo, HostBuffer, open_cuda
from . import api as trt_api

REBUILD = "rebuild with: fcn-edge build ... --backend tensorrt --force on this machine"
SIDECAR_KEYS = {"tensorrt_version": str, "gpu_name": str, "compute_capability": str, "sm_count": int, "memory_mb": int,
                "dla_cores": int}  # fmt: skip


def engine_facts(engine_path: Path, sidecar: Sidecar | None = None) -> dict[str, Any]:
    """The engine's TensorRT facts, which it cannot run without: the sidecar's "engine" entry (as the compile
    stage writes it), else its top level; ``sidecar``: the one open_runner read, else read here."""
    if not engine_path.is_file():
        raise FcnEdgeError(f"engine {engine_path} does not exist: build it with fcn-edge build ... --backend tensorrt")
    sidecar = sidecar or Sidecar.beside(engine_path)
    path = sidecar.path
    if sidecar.problem == "missing":
        raise FcnEdgeError(f"{path} is missing: an engine runs only with the sidecar written beside it; {REBUILD}")
    if sidecar.problem:
        raise FcnEdgeError(f"{path} is {sidecar.problem}: {REBUILD}")
    facts = sidecar.content.get("engine") or sidecar.content
    if not isinstance(facts, dict):
        raise FcnEdgeError(f"{path} is not a JSON object with the engine's facts: {REBUILD}")
    missing = [key for key in SIDECAR_KEYS if key not in facts]
    if missing:
        raise FcnEdgeError(f"{path} lacks {', '.join(missing)}: {REBUILD}")
    wrong = [key for key, kind in SIDECAR_KEYS.items() if not isinstance(facts[key], kind) or isinstance(facts[key], bool)]
    dla = facts.get("dla_core")
    if wrong or not (dla is None or (type(dla) is int and 0 <= dla < 16)):
        raise FcnEdgeError(f"{path} has {', '.join(wrong) or 'dla_core'} of the wrong type or range: {REBUILD}")
    return facts


def write_sidecar(engine_path: Path, facts: dict[str, Any]) -> None:
    """The sidecar a bare engine (a build's candidate, the doctor's) needs to run: its facts, as the compile stage nests them."""
    write_json_atomic(sidecar_path(engine_path), {"engine": facts})


def check_engine_matches(
    sidecar: dict[str, Any], trt_version: str, device: DeviceInfo, dla_cores: int, engine_path: Path
) -> None:
    """Refuse an engine built by another TensorRT or for another device: TensorRT would fail, or run it untuned.

    The name and compute capability alone do not tell Jetson modules apart (every Orin is "Orin",
    compute 8.7), so the SM count, memory and DLA cores are part of the identity.
    """
    if sidecar["tensorrt_version"] != trt_version:
        raise FcnEdgeError(
            f"{engine_path} was built with TensorRT {sidecar['tensorrt_version']}, this machine has {trt_version}: {REBUILD}"
        )
    built = DeviceInfo(
        0, sidecar["gpu_name"], sidecar["compute_capability"], device.integrated, sidecar["sm_count"], sidecar["memory_mb"]
    )
    if (built.describe(), sidecar["dla_cores"]) != (device.describe(), dla_cores):
        raise FcnEdgeError(
            f"{engine_path} was built for {built.describe()} with {sidecar['dla_cores']} DLA cores, this machine has "
            f"{device.describe()} with {dla_cores}: {REBUILD}"
        )


@dataclass
class _Memory:
    """One tensor's memory: TensorRT's device address, and the host view where the host needs one."""

    device: int
    host: HostBuffer | None  # page-locked; mapped (host.device_ptr == device) on integrated GPUs
    capacity: int  # bytes allocated
    used: int  # bytes of the tensor at the bound shape: what is copied


class TrtRunner(Runner):
    """Runs a fcn_edge engine (uint8 NHWC frame in, uint8 labels out) with TensorRT 8.5+."""

    def __init__(self, path: str | Path, cuda_binding: str = "auto", check_inputs: bool = True, mapped: bool | None = None,
                 sidecar: Sidecar | None = None) -> None:  # fmt: skip
        super().__init__(f"trt:{Path(path).name}", check_inputs)
        self.path = Path(path)
        self.sidecar = sidecar  # as open_runner read it; None: read at activation
        self.cuda_binding = cuda_binding
        self.mapped = mapped  # None: mapped memory where the GPU is integrated (Jetson); True forces it (tests on a desktop GPU)
        self.rebinds = 0  # buffer (re)bindings: one per frame size seen
        self.reallocations = 0  # of those, the ones that needed more memory than was allocated
        self._cuda: CudaBinding | None = None
        self._engine = self._context = self._stream = None
        self._memory: dict[str, _Memory] = {}
        self._shape: tuple[int, ...] | None = None
        self._pool: dict[int, HostBuffer] = {}  # frame buffers handed out, by host address
        self._input_address: int | None = None  # where the input tensor points now

    def activate_impl(self) -> None:
        sidecar = engine_facts(self.path, self.sidecar)
        trt = trt_api.import_tensorrt()
        self._cuda = open_cuda(self.cuda_binding)
        try:
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            check_engine_matches(sidecar, trt.__version__, self._cuda.device, runtime.num_DLA_cores, self.path)
            self._load(trt, runtime, sidecar.get("dla_core"))
        except BaseException:
            self._release()
            raise

    def _load(self, trt: Any, runtime: Any, dla_core: int | None) -> None:
        if dla_core is not None:
            runtime.DLA_core = dla_core  # before deserializing: the engine's DLA layers run on the core it was built for
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise FcnEdgeError(f"TensorRT cannot load {self.path} (its error is printed above): {REBUILD}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        outputs = [n for n in names if n not in inputs]
        labels = [n for n in outputs if n == "labels"] or [n for n in outputs if dtypes[n] == np.uint8]
        if len(inputs) != 1 or dtypes[inputs[0]] != np.uint8 or not labels or dtypes[labels[0]] != np.uint8:
            described = ", ".join(f"{n} {dtypes[n]}" for n in names)
            raise FcnEdgeError(
                f"{self.path} has tensors {described}, not one uint8 frame input and a uint8 labels output: "
                "export with input_format='frame' and outputs=labels (fcn-edge export defaults) and rebuild"
            )
        self._engine = engine
        self.max_batch = int(engine.get_tensor_profile_shape(inputs[0], 0)[2][0])  # the profile's max shape
        self._context = engine.create_execution_context()
        self._input, self._labels, self._outputs, self._dtypes = inputs[0], labels[0], outputs, dtypes
        self._zero_copy = self._cuda.device.integrated if self.mapped is None else self.mapped
        self._stream = self._cuda.stream()

    def frame_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A new uint8 frame buffer in memory the engine reads in place (a frame pool's slot); freed on deactivate."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active: call activate() first")
        nbytes = int(np.prod(shape))
        buffer = self._cuda.mapped(nbytes) if self._zero_copy else self._cuda.pinned(nbytes)
        self._pool[buffer.host_ptr] = buffer
        return buffer.view(np.uint8, tuple(shape))

    def release_frame_buffer(self, buffer: np.ndarray) -> None:
        """Free a frame-pool slot now: page-locked memory is scarce (on Jetson it is the GPU's memory too)."""
        pooled = self._pool.pop(buffer.ctypes.data, None)
        if pooled is None:
            raise ValueError(f"runner {self.name}: the buffer to release is not one of its frame buffers")
        pooled.free()

    def input_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """The page-locked uint8 array the engine reads for frames of ``shape`` (HxWx3 or NxHxWx3)."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active: call activate() first")
        batch = tuple(shape) if len(shape) == 4 else (1, *shape)
        if batch != self._shape:
            self._bind(batch)
        return self._frames if len(shape) == 4 else self._frames[0]

    def batch_buffer(self, shape: tuple[int, int, int, int]) -> np.ndarray:
        """The page-locked input buffer at ``shape``: a batch gathered in it goes to the GPU with no host copy."""
        return self.input_buffer(shape)

    def infer_impl(self, frame: np.ndarray) -> np.ndarray:
        batch = frame if frame.ndim == 4 else frame[None]
        if batch.shape != self._shape:
            self._bind(batch.shape)
        cuda, stream = self._cuda, self._stream
        frames, labels = self._memory[self._input], self._memory[self._labels]
        pooled = self._pool.get(batch.ctypes.data)
        if pooled is None and batch.ctypes.data != self._frames.ctypes.data:  # not in runner memory: one host copy
            np.copyto(self._frames, batch)
        source = pooled if pooled is not None else frames.host
        self._point_input(source.device_ptr if self._zero_copy else frames.device)
        if not self._zero_copy:
            cuda.copy_htod(frames.device, source, frames.used, stream)
        if not self._context.execute_async_v3(cuda.stream_handle(stream)):
            raise FcnEdgeError(f"TensorRT failed to run {self.path.name} (its error is printed above)")
        if not self._zero_copy:
            cuda.copy_dtoh(labels.host, labels.device, labels.used, stream)
        cuda.synchronize(stream)
        return self._label_map if frame.ndim == 4 else self._label_map[0]

    def _bind(self, shape: tuple[int, ...]) -> None:
        """Set the input shape; reallocate the tensors that outgrew their memory and rebind only those."""
        context = self._context
        if not context.set_input_shape(self._input, shape):
            raise FcnEdgeError(
                f"frames of shape {shape} are outside the engine's input profile: {REBUILD} with shapes that cover them"
            )
        shapes = {self._input: tuple(shape)}
        shapes.update({name: tuple(context.get_tensor_shape(name)) for name in self._outputs})
        grew = False
        for name, tensor_shape in shapes.items():
            nbytes = int(np.prod(tensor_shape)) * self._dtypes[name].itemsize
            memory = self._memory.get(name)
            if memory is None or nbytes > memory.capacity:
                if memory is not None:
                    self._free(memory)
                    grew = True
                memory = self._memory[name] = self._allocate(nbytes, host=name in (self._input, self._labels))
                self._set_address(name, memory.device)
            memory.used = nbytes
        self._frames = self._memory[self._input].host.view(np.uint8, tuple(shape))
        self._label_map = _label_map(self._memory[self._labels].host, shapes[self._labels])
        self._shape = tuple(shape)
        self.rebinds += 1
        self.reallocations += grew

    def _point_input(self, address: int) -> None:
        """Bind the input tensor to ``address`` (a mapped pool buffer on Jetson) unless it is bound there already."""
        if address != self._input_address:
            self._set_address(self._input, address)

    def _set_address(self, name: str, address: int) -> None:
        if not self._context.set_tensor_address(name, address):
            raise FcnEdgeError(f"TensorRT refused the address of tensor {name} of {self.path.name} (its error is printed above)")
        if name == self._input:
            self._input_address = address

    def _allocate(self, nbytes: int, host: bool) -> _Memory:
        cuda = self._cuda
        if not host:  # an output nobody reads on the host (logits): device memory only
            return _Memory(cuda.malloc(nbytes), None, nbytes, nbytes)
        if self._zero_copy:
            mapped = cuda.mapped(nbytes)
            return _Memory(mapped.device_ptr, mapped, nbytes, nbytes)
        return _Memory(cuda.malloc(nbytes), cuda.pinned(nbytes), nbytes, nbytes)

    def _free(self, memory: _Memory) -> None:
        if memory.host is None or memory.host.device_ptr is None:
            self._cuda.free(memory.device)
        if memory.host is not None:
            memory.host.free()

    def deactivate_impl(self) -> None:
        self._release()

    def _release(self) -> None:
        """Free what activate made, also after a partial activate; TensorRT objects go before the CUDA context."""
        cuda = self._cuda
        if cuda is None:
            return
        try:
            if self._stream is not None:
                cuda.synchronize(self._stream)
            for memory in self._memory.values():
                self._free(memory)
            for buffer in self._pool.values():
                buffer.free()
            if self._stream is not None:
                cuda.destroy_stream(self._stream)
        finally:
            self._memory, self._shape, self._stream, self._pool, self._input_address = {}, None, None, {}, None
            self._frames = self._label_map = None
            self._context = self._engine = None
            cuda.close()
            self._cuda = None


def _label_map(host: HostBuffer, shape: tuple[int, ...]) -> np.ndarray:
    """The labels output, [N,H,W] or [N,1,H,W], as an [N,H,W] uint8 view of its host buffer."""
    if len(shape) < 3 or shape[0] * shape[-2] * shape[-1] != int(np.prod(shape)):
        raise FcnEdgeError(f"the labels output has shape {shape}, not [N,H,W]: export with outputs=labels and rebuild")
    return host.view(np.uint8, (shape[0], shape[-2], shape[-1]))
