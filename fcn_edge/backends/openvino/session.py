"""An OpenVINO stand-in for an ONNX Runtime session, so the build verifies and times with one code path.

:mod:`fcn_edge.compile.verify` calls ``get_outputs()`` and ``run(None, feed)``; this compiles
the model for each input shape it is fed (verification images share one size, latency adds
another) with the same properties as the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...scratch import scratch_folder
from .core import compile_config, compile_for_shape, new_core


@dataclass(frozen=True)
class OutputInfo:
    name: str


class OvSession:
    def __init__(self, model: str | Path | onnx.ModelProto, threads: int, precision: str = "fp32") -> None:
        self.config = compile_config(threads, precision)
        self._core = new_core(None)  # verification models are temporary: nothing worth caching
        if isinstance(model, onnx.ModelProto):
            with scratch_folder("ov") as tmp:
                path = Path(tmp) / "model.onnx"
                onnx.save_model(model, path)
                self._model = self._core.read_model(str(path))
        else:
            self._model = self._core.read_model(str(model))
        self._requests: dict[tuple[int, ...], Any] = {}

    def get_outputs(self) -> list[OutputInfo]:
        return [OutputInfo(o.any_name) for o in self._model.outputs]

    def run(self, _output_names: None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (value,) = feed.values()
        request = self._requests.get(value.shape)
        if request is None:
            request = compile_for_shape(self._core, self._model, list(value.shape), self.config).create_infer_request()
            self._requests[value.shape] = request
        request.infer({0: value})
        return [request.get_output_tensor(i).data.copy() for i in range(len(self._model.outputs))]


def session(model: str | Path | onnx.ModelProto, threads: int, precision: str = "fp32") -> OvSession:
    return OvSession(model, threads, precision)
