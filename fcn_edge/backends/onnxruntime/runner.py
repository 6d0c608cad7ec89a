"""ONNX Runtime runner: any CPU, plus the CUDA and TensorRT execution providers where installed.

I/O binding keeps the hot path free of allocations: the caller's frame array is bound
as the input (ONNX Runtime reads it in place on the CPU provider), and the labels are
written into an output array allocated once per frame size and bound with its pointer.
A new frame size (or batch size: ``infer`` takes an NxHxWx3 batch too) costs one run with an
ONNX Runtime-allocated output to learn the output shape, then a rebind; same-shape calls after
that reuse the buffer. A model exported with a fixed batch of 1 (foreign models, mostly) sets
``max_batch`` = 1: a batch caller runs its frames one at a time.

How intra-op threads wait (spin or sleep, pinned or not) is the project's one thread policy,
:data:`.session.THREAD_POLICY`, measured under a camera's pacing (docs/cpu.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from ...errors import FcnEdgeError, out_of_memory
from ...runner import Runner, model_file
from ...metadata import DamagedMetadata, read_metadata
from ...paths import utf8_path
from .session import default_threads, session_options

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    """Short names (cpu, cuda, tensorrt) or full provider names -> an available list ending in CPU."""
    names = [PROVIDERS.get(p.lower(), p) for p in (providers or ["cpu"])]
    available = ort.get_available_providers()
    missing = [n for n in names if n not in available]
    if missing:
        raise FcnEdgeError(
            f"ONNX Runtime provider {', '.join(missing)} is not available in this install "
            f"(available: {', '.join(available)}): install onnxruntime-gpu for CUDA/TensorRT, or use --providers cpu"
        )
    return names + [PROVIDERS["cpu"]] * (PROVIDERS["cpu"] not in names)


class OrtRunner(Runner):
    """Runs a frame-input .onnx model (uint8 NHWC BGR in, uint8 labels out) with ONNX Runtime."""

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        policy: dict[str, str] | None = None,
        check_inputs: bool = True,
        optimize: bool = True,
    ) -> None:
        super().__init__(f"ort:{Path(path).name}", check_inputs)
        self.path = model_file(path)
        self.providers = resolve_providers(providers)
        if threads is not None and threads < 1:
            raise FcnEdgeError(f"--threads {threads} must be at least 1")
        self.threads = threads or default_threads()
        self.policy = policy  # None: the project's THREAD_POLICY; another only to measure it (benchmarks/cpu_threads.py)
        self.optimize = optimize  # False only to demonstrate that the latency tests catch it
        self.rebinds = 0  # output buffer (re)allocations: one per frame size seen
        self.metadata = _metadata_or_none(self.path)

    def activate_impl(self) -> None:
        options = session_options(self.threads, self.optimize, self.policy)
        try:
            with utf8_path(self.path) as name:  # ORT refuses a name that is not UTF-8
                self._session = ort.InferenceSession(name, options, providers=self.providers)
        except Exception as error:  # ORT raises its own exception types for unreadable models
            raise FcnEdgeError(
                f"ONNX Runtime cannot load {self.path} ({str(error).splitlines()[0]}): re-export or rebuild it"
            ) from None
        self._input_name, self._output_name, self._fixed_size, fixed_batch = _frame_model_io(self._session, self.path)
        self.max_batch = fixed_batch
        self._binding = self._session.io_binding()
        self._output: np.ndarray | None = None
        self._bound_shape: tuple[int, int, int] | None = None  # (N, H, W) the output buffer is bound for

    def infer_impl(self, frame: np.ndarray) -> np.ndarray:
        batch = frame if frame.ndim == 4 else frame[None]
        self._binding.bind_cpu_input(self._input_name, batch)
        if batch.shape[:3] != self._bound_shape:
            self._rebind_output(batch.shape[:3])
        else:
            self._session.run_with_iobinding(self._binding)
        return self._output if frame.ndim == 4 else self._output[0]

    def _rebind_output(self, shape: tuple[int, int, int]) -> None:
        """Run once with an ORT-allocated output to learn its shape, then bind a buffer of that shape."""
        size = shape[1:]
        if self._fixed_size and any(fixed not in (None, given) for fixed, given in zip(self._fixed_size, size)):
            wanted = "x".join(str(d or "any") for d in self._fixed_size)
            raise FcnEdgeError(
                f"{self.path} takes frames of {wanted} only (a fixed input size) and this one is {size[0]}x{size[1]}: "
                f"capture at that size (--size {wanted}) or export the model with dynamic height and width"
            )
        self._binding.bind_output(self._output_name)
        try:
            self._session.run_with_iobinding(self._binding)
        except Exception as error:  # ORT's own exception types: a size the graph cannot take (a 1x1 frame), mostly
            if out_of_memory(error):
                raise
            raise FcnEdgeError(
                f"ONNX Runtime cannot run {self.path} on {size[0]}x{size[1]} frames ({str(error).splitlines()[0][:200]}): "
                "capture larger frames (--size), or at the size the model was exported for"
            ) from None
        result = self._binding.get_outputs()[0].numpy()
        self._output = np.empty_like(result)
        np.copyto(self._output, result)
        self._binding.bind_output(self._output_name, "cpu", 0, self._output.dtype, self._output.shape, self._output.ctypes.data)
        self._bound_shape = shape
        self.rebinds += 1

    def deactivate_impl(self) -> None:
        del self._binding, self._session
        self._output = None
        self._bound_shape = None


def _metadata_or_none(path: Path):
    """Class names and palette from the model's fcn_edge metadata; None if it has none."""
    try:
        return read_metadata(path)
    except DamagedMetadata:
        raise
    except FcnEdgeError:
        return None


def _frame_model_io(
    session: ort.InferenceSession, path: Path
) -> tuple[str, str, tuple[int | None, int | None] | None, int | None]:
    """The input and labels output names, the input's fixed (H, W) if it has one (None for a dimension that is
    free) and its fixed batch (1, or None when dynamic); FcnEdgeError if the model does not take frames and give labels."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    frame = inputs[0]
    if len(inputs) != 1 or frame.type != "tensor(uint8)" or len(frame.shape) != 4 or frame.shape[-1] != 3:
        described = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
        raise FcnEdgeError(
            f"{path} takes {described}, not uint8 [N,H,W,3] camera frames: "
            "export it with input_format='frame' (fcn-edge export default)"
        )
    labels = [o for o in outputs if o.name == "labels"] or [o for o in outputs if o.type == "tensor(uint8)"]
    if not labels or len(labels[0].shape) != 3:
        described = ", ".join(f"{o.name} {o.type} {o.shape}" for o in outputs)
        raise FcnEdgeError(f"{path} gives {described}, not uint8 [N,H,W] labels: export it with outputs=labels")
    batch, height, width = (d if isinstance(d, int) else None for d in frame.shape[:3])
    if batch not in (None, 1):
        raise FcnEdgeError(f"{path} takes batches of {batch} frames only: export it with batch 1 or a dynamic batch")
    return frame.name, labels[0].name, (height, width) if height or width else None, batch
