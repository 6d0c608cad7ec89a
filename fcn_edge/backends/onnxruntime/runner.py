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

``inflight`` > 1 keeps that many frames running, as OpenVINO's streams do: min(``inflight``,
threads) sessions ("lanes") split the threads, each with its own binding and labels buffer, and
``start`` runs a frame on a free lane in a worker thread (ONNX Runtime releases the GIL). Each
lane's threads work on their own frame instead of meeting at every layer's barrier, which pays
for batches of several cameras and for files (benchmarks/multi_stream.py). A lane whose labels
``wait`` returned stays reserved until the caller's next call (the runner contract), and a
finished frame keeps its lane until it is waited for, so lanes go to frames strictly in the
order they were started: with more frames in flight than lanes, a later frame taking the lane
an earlier one needed would leave the caller waiting for that earlier frame forever (a stream
of 12 frames hung in one run of six under load before). ``infer`` uses the first lane.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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
        inflight: int = 1,
    ) -> None:
        super().__init__(f"ort:{Path(path).name}", check_inputs)
        self.path = model_file(path)
        self.providers = resolve_providers(providers)
        if threads is not None and threads < 1:
            raise FcnEdgeError(f"--threads {threads} must be at least 1")
        self.threads = threads or default_threads()
        if not 1 <= inflight <= 2 * self.threads:
            raise FcnEdgeError(
                f"--inflight {inflight} must be between 1 and twice the inference threads ({2 * self.threads}): more only wait"
            )
        self.inflight = inflight
        self.policy = policy  # None: the project's THREAD_POLICY; another only to measure it (benchmarks/cpu_threads.py)
        self.optimize = optimize  # False only to demonstrate that the latency tests catch it
        self.metadata = _metadata_or_none(self.path)
        self._lanes: list[_Lane] = []
        self._closed_rebinds = 0  # of lanes closed by deactivate

    @property
    def rebinds(self) -> int:
        """Output buffer (re)allocations: one per frame size seen, per lane."""
        return self._closed_rebinds + sum(lane.rebinds for lane in self._lanes)

    def activate_impl(self) -> None:
        count = min(self.inflight, self.threads)
        shares = [self.threads // count + (i < self.threads % count) for i in range(count)]  # the threads, split
        self._lanes = [self._open_lane(threads) for threads in shares]
        self.max_batch = self._lanes[0].fixed_batch
        self._free_lanes: deque[_Lane] = deque(self._lanes if count > 1 else ())
        self._lane_freed = threading.Condition()
        self._started = self._served = 0  # frames started / frames that got a lane: lanes go in start order
        self._workers = ThreadPoolExecutor(count, thread_name_prefix="ort-lane") if count > 1 else None
        self._running: deque[Future] = deque()
        self._returned: _Lane | None = None  # the lane whose labels the caller holds until its next call

    def _open_lane(self, threads: int) -> _Lane:
        options = session_options(threads, self.optimize, self.policy)
        try:
            with utf8_path(self.path) as name:  # ORT refuses a name that is not UTF-8
                session = ort.InferenceSession(name, options, providers=self.providers)
        except Exception as error:  # ORT raises its own exception types for unreadable models
            raise FcnEdgeError(
                f"ONNX Runtime cannot load {self.path} ({str(error).splitlines()[0]}): re-export or rebuild it"
            ) from None
        return _Lane(session, self.path)

    def infer_impl(self, frame: np.ndarray) -> np.ndarray:
        self._give_back()
        return self._lanes[0].run(frame)

    def start_impl(self, frame: np.ndarray) -> None:
        if self._workers is None:
            return  # one lane: the frame runs in wait_impl
        self._give_back()
        self._running.append(self._workers.submit(self._run_on_free_lane, self._started, frame))
        self._started += 1

    def wait_impl(self, frame: np.ndarray) -> np.ndarray:
        if self._workers is None:
            return self._lanes[0].run(frame)
        self._give_back()
        self._returned, labels = self._running.popleft().result()
        return labels

    def _run_on_free_lane(self, turn: int, frame: np.ndarray) -> tuple[_Lane, np.ndarray]:
        """Wait for this frame's turn and a free lane (module docstring: lanes go in start order), then run it."""
        with self._lane_freed:
            self._lane_freed.wait_for(lambda: self._served == turn and self._free_lanes)
            lane = self._free_lanes.popleft()
            self._served += 1
            self._lane_freed.notify_all()
        try:
            return lane, lane.run(frame)
        except BaseException:
            self._free(lane)
            raise

    def _free(self, lane: _Lane) -> None:
        with self._lane_freed:
            self._free_lanes.append(lane)
            self._lane_freed.notify_all()

    def _give_back(self) -> None:
        if self._returned is not None:
            self._free(self._returned)
            self._returned = None

    def deactivate_impl(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=True)
        self._closed_rebinds += sum(lane.rebinds for lane in self._lanes)
        self._lanes = []
        del self._free_lanes, self._lane_freed, self._workers, self._running, self._returned


class _Lane:
    """One session with its own I/O binding and labels buffer: the caller's frame is bound where it lies, the labels
    are written into a buffer allocated once per frame size."""

    def __init__(self, session: ort.InferenceSession, path: Path) -> None:
        self.session, self.path = session, path
        self.input_name, self.output_name, self.fixed_size, self.fixed_batch = _frame_model_io(session, path)
        self.binding = session.io_binding()
        self.output: np.ndarray | None = None
        self.bound_shape: tuple[int, int, int] | None = None  # (N, H, W) the output buffer is bound for
        self.rebinds = 0

    def run(self, frame: np.ndarray) -> np.ndarray:
        batch = frame if frame.ndim == 4 else frame[None]
        self.binding.bind_cpu_input(self.input_name, batch)
        if batch.shape[:3] != self.bound_shape:
            self._rebind_output(batch.shape[:3])
        else:
            self.session.run_with_iobinding(self.binding)
        return self.output if frame.ndim == 4 else self.output[0]

    def _rebind_output(self, shape: tuple[int, int, int]) -> None:
        """Run once with an ORT-allocated output to learn its shape, then bind a buffer of that shape."""
        size = shape[1:]
        if self.fixed_size and any(fixed not in (None, given) for fixed, given in zip(self.fixed_size, size)):
            wanted = "x".join(str(d or "any") for d in self.fixed_size)
            raise FcnEdgeError(
                f"{self.path} takes frames of {wanted} only (a fixed input size) and this one is {size[0]}x{size[1]}: "
                f"capture at that size (--size {wanted}) or export the model with dynamic height and width"
            )
        self.binding.bind_output(self.output_name)
        try:
            self.session.run_with_iobinding(self.binding)
        except Exception as error:  # ORT's own exception types: a size the graph cannot take (a 1x1 frame), mostly
            if out_of_memory(error):
                raise
            raise FcnEdgeError(
                f"ONNX Runtime cannot run {self.path} on {size[0]}x{size[1]} frames ({str(error).splitlines()[0][:200]}): "
                "capture larger frames (--size), or at the size the model was exported for"
            ) from None
        result = self.binding.get_outputs()[0].numpy()
        self.output = np.empty_like(result)
        np.copyto(self.output, result)
        self.binding.bind_output(self.output_name, "cpu", 0, self.output.dtype, self.output.shape, self.output.ctypes.data)
        self.bound_shape = shape
        self.rebinds += 1


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
