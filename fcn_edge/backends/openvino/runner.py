"""OpenVINO runner: the same FP32 and Q/DQ INT8 .onnx files as ONNX Runtime, compiled per frame size.

The model is read once; the first frame of each size compiles it for that size (cached in
memory per size, and on disk by OpenVINO's cache_dir), so a camera pays the compile once. The
frame is wrapped, not copied, as the input tensor, and the labels are OpenVINO's own output
buffer, which the next call overwrites (the runner contract).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FcnEdgeError
from ...metadata import read_metadata
from ...runner import Runner, model_file
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
    ) -> None:
        super().__init__(f"openvino:{Path(path).name}", check_inputs)
        self.path = model_file(path)
        if threads < 1:
            raise FcnEdgeError(f"--threads {threads} must be at least 1")
        self.threads, self.precision = threads, precision
        self.cache_dir = cache_dir or default_cache_dir()
        self.config = compile_config(threads, precision)  # checks the precision now, not at the first frame
        self.compiles = 0  # models compiled: one per frame size seen
        try:
            self.metadata = read_metadata(self.path)
        except FcnEdgeError:
            self.metadata = None

    def activate_impl(self) -> None:
        self._openvino = import_openvino()
        self._core = new_core(self.cache_dir)
        try:
            self._model = self._core.read_model(str(self.path))
        except RuntimeError as error:  # OpenVINO raises RuntimeError for unreadable models
            raise FcnEdgeError(f"OpenVINO cannot read {self.path} ({str(error).splitlines()[0]}): re-export or rebuild it") from None
        self._output_index = _labels_output(self._model, self.path)
        self._requests: dict[tuple[int, int], Any] = {}

    def infer_impl(self, frame: np.ndarray) -> np.ndarray:
        request = self._requests.get(frame.shape[:2]) or self._compile(frame.shape[:2])
        request.set_input_tensor(self._openvino.Tensor(frame[None], shared_memory=True))
        request.infer()
        return request.get_output_tensor(self._output_index).data[0]

    def _compile(self, size: tuple[int, int]) -> Any:
        try:
            compiled = compile_for_shape(self._core, self._model, [1, *size, 3], self.config)
        except RuntimeError as error:  # a model exported with a fixed input size, mostly
            raise FcnEdgeError(
                f"OpenVINO cannot run {self.path} on {size[0]}x{size[1]} frames ({str(error).splitlines()[0][:200]}): "
                "capture at the size the model takes, or export it with dynamic height and width"
            ) from None
        self._requests[size] = request = compiled.create_infer_request()
        self.compiles += 1
        return request

    def deactivate_impl(self) -> None:
        del self._requests, self._model, self._core


def _labels_output(model: Any, path: Path) -> int:
    """Index of the uint8 labels output; FcnEdgeError unless the model takes uint8 [N,H,W,3] frames."""
    inputs = model.inputs
    frame = inputs[0]
    shape = frame.get_partial_shape()
    if len(inputs) != 1 or frame.get_element_type().get_type_name() != "u8" or shape.rank.get_length() != 4 or str(shape[3]) != "3":
        described = ", ".join(f"{i.any_name} {i.get_element_type().get_type_name()} {i.get_partial_shape()}" for i in inputs)
        raise FcnEdgeError(
            f"{path} takes {described}, not uint8 [N,H,W,3] camera frames: "
            "export it with input_format='frame' (scripts/export_onnx.py default)"
        )
    outputs = model.outputs
    names = [o.get_names() for o in outputs]
    for index, output in enumerate(outputs):
        if "labels" in names[index]:
            return index
    for index, output in enumerate(outputs):
        if output.get_element_type().get_type_name() == "u8":
            return index
    raise FcnEdgeError(f"{path} has no uint8 labels output (outputs: {[sorted(n) for n in names]}): export it with outputs=labels")
