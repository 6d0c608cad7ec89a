"""OpenVINO runner: the same FP32 and Q/DQ INT8 .onnx files as ONNX Runtime, compiled per frame size.

The model is read once, through :mod:`.graph` (HardSwish and ArgMax put in the shape OpenVINO
fuses); the first frame of each size compiles it for that size (cached in memory per size, and
on disk by OpenVINO's cache_dir), so a camera pays the compile once. The
frame is wrapped, not copied, as the input tensor, and the labels are OpenVINO's own output
buffer, which the next call overwrites (the runner contract).

``inflight`` > 1 keeps that many frames running, one infer request each, on
min(``inflight``, threads) streams that split the threads: ``start`` runs a frame
asynchronously on the next request, ``wait`` returns the oldest. Each stream's threads work on
their own frame, so a host thread that takes a core slows one frame rather than stalling every
thread at the next layer's barrier; a frame's latency is about the streams times one stream's.
A frame beyond the streams waits inside OpenVINO and starts the moment a stream is free: with
only as many frames as streams, a stream that finished before the oldest frame sat idle until
the caller had collected the oldest (2 cores: 0.94 against 0.96-0.97 of the CPU busy in the
stream loop, docs/stream.md). ``infer`` (one frame, synchronously) uses the first request.

``infer`` also takes an NxHxWx3 batch (several cameras, fcn_edge/stream/multi.py): the model is
compiled per (N, H, W), so a stream loop whose batch size varies pays one compile per size
once. A model whose batch dimension is fixed at 1 sets ``max_batch`` = 1.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from ...errors import FcnEdgeError
from ...metadata import DamagedMetadata, read_metadata
from ...runner import Runner, model_file
from . import graph
from .core import compile_config, compile_for_shape, default_cache_dir, import_openvino, new_core


class OvRunner(Runner):
    """Runs a frame-input .onnx model (uint8 NHWC BGR in, uint8 labels out) with OpenVINO on the CPU."""

    def __init__(
        self,
        path: str | Path,
        threads: int,
        precision: str = "fp32",
        cache_dir: Path | None = None,
        check_inputs: bool = True,
        inflight: int = 1,
    ) -> None:
        super().__init__(f"openvino:{Path(path).name}", check_inputs)
        self.path = model_file(path)
        if threads < 1:
            raise FcnEdgeError(f"--threads {threads} must be at least 1")
        if not 1 <= inflight <= 2 * threads:
            raise FcnEdgeError(
                f"--inflight {inflight} must be between 1 and twice the inference threads ({2 * threads}): more only wait"
            )
        self.threads, self.precision, self.inflight = threads, precision, inflight
        self.streams = min(inflight, threads)
        self.cache_dir = cache_dir or default_cache_dir()  # None: $FCN_EDGE_CACHE_MB=0, no disk cache
        self.config = compile_config(threads, precision, streams=self.streams)  # checks the precision now, not at the first frame
        self.compiles = 0  # models compiled: one per frame size seen
        try:
            self.metadata = read_metadata(self.path)
        except DamagedMetadata:
            raise
        except FcnEdgeError:
            self.metadata = None

    def activate_impl(self) -> None:
        self._openvino = import_openvino()
        self._core = new_core(self.cache_dir)
        try:
            self._model = self._core.read_model(graph.read(self.path))
        except (DecodeError, RuntimeError) as error:  # a damaged file; OpenVINO raises RuntimeError for unreadable models
            raise FcnEdgeError(
                f"OpenVINO cannot read {self.path} ({str(error).splitlines()[0]}): re-export or rebuild it"
            ) from None
        self._output_index = _labels_output(self._model, self.path)
        batch = self._model.inputs[0].get_partial_shape()[0]
        self.max_batch = batch.get_length() if batch.is_static else None
        self._requests: dict[tuple[int, ...], list[Any]] = {}  # per (N, H, W): one infer request per stream
        self._running: deque[Any] = deque()  # started requests, oldest first
        self._started = 0

    def infer_impl(self, frame: np.ndarray) -> np.ndarray:
        request = self._bind(frame, self._requests_for(frame)[0])
        request.infer()
        labels = request.get_output_tensor(self._output_index).data
        return labels if frame.ndim == 4 else labels[0]

    def start_impl(self, frame: np.ndarray) -> None:
        # at most `inflight` frames run, so the request `inflight` starts back has been waited for
        request = self._bind(frame, self._requests_for(frame)[self._started % self.inflight])
        request.start_async()
        self._running.append(request)
        self._started += 1

    def wait_impl(self, frame: np.ndarray) -> np.ndarray:
        request = self._running.popleft()
        request.wait()
        labels = request.get_output_tensor(self._output_index).data
        return labels if frame.ndim == 4 else labels[0]

    def _requests_for(self, frame: np.ndarray) -> list[Any]:
        shape = frame.shape[:3] if frame.ndim == 4 else (1, *frame.shape[:2])
        return self._requests.get(shape) or self._compile(shape)

    def _bind(self, frame: np.ndarray, request: Any) -> Any:
        request.set_input_tensor(self._openvino.Tensor(frame if frame.ndim == 4 else frame[None], shared_memory=True))
        return request

    def _compile(self, shape: tuple[int, int, int]) -> list[Any]:
        size = shape[1:]
        try:
            compiled = compile_for_shape(self._core, self._model, [*shape, 3], self.config, self.cache_dir, self.path)
        except RuntimeError as error:  # a model exported with a fixed input size, mostly
            raise FcnEdgeError(
                f"OpenVINO cannot run {self.path} on {size[0]}x{size[1]} frames ({str(error).splitlines()[0][:200]}): "
                "capture at the size the model takes, or export it with dynamic height and width"
            ) from None
        self._requests[shape] = requests = [compiled.create_infer_request() for _ in range(self.inflight)]
        self.compiles += 1
        return requests

    def deactivate_impl(self) -> None:
        del self._requests, self._running, self._model, self._core


def _labels_output(model: Any, path: Path) -> int:
    """Index of the uint8 labels output; FcnEdgeError unless the model takes uint8 [N,H,W,3] frames."""
    inputs = model.inputs
    frame = inputs[0]
    shape = frame.get_partial_shape()
    if (
        len(inputs) != 1
        or frame.get_element_type().get_type_name() != "u8"
        or shape.rank.get_length() != 4
        or str(shape[3]) != "3"
    ):
        described = ", ".join(f"{i.any_name} {i.get_element_type().get_type_name()} {i.get_partial_shape()}" for i in inputs)
        raise FcnEdgeError(
            f"{path} takes {described}, not uint8 [N,H,W,3] camera frames: "
            "export it with input_format='frame' (fcn-edge export default)"
        )
    outputs = model.outputs
    names = [o.get_names() for o in outputs]
    for index, output in enumerate(outputs):
        if "labels" in names[index]:
            return index
    for index, output in enumerate(outputs):
        if output.get_element_type().get_type_name() == "u8":
            return index
    raise FcnEdgeError(
        f"{path} has no uint8 labels output (outputs: {[sorted(n) for n in names]}): export it with outputs=labels"
    )
