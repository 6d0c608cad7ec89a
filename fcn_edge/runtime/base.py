"""The one runner interface every backend implements, so callers never branch on the backend.

Modelled on Polygraphy's runners: ``activate()`` allocates (session, buffers, contexts),
``infer(frame)`` runs, ``deactivate()`` frees, and a runner is a context manager.
Subclasses override only ``activate_impl``, ``infer_impl`` and ``deactivate_impl``.

A runner takes one camera frame (uint8 HxWx3 BGR, C-contiguous, as OpenCV gives it) and
returns its labels (HxW, one byte per pixel): pre- and post-processing live inside the
model, so nothing else crosses the host boundary.

**Output buffers are reused between calls**: the array ``infer`` returns is overwritten by
the next call. Copy it if you keep it. Input checks (dtype, shape, layout) cost a few
microseconds and can be switched off on the hot path with ``check_inputs=False``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import FcnEdgeError

if TYPE_CHECKING:
    from ..export.metadata import ModelMetadata


class Runner:
    """Base class: lifecycle, input checks and timing; backends supply the ``*_impl`` methods."""

    def __init__(self, name: str, check_inputs: bool = True) -> None:
        self.name = name
        self.check_inputs = check_inputs
        self.is_active = False
        self.metadata: ModelMetadata | None = None  # the model's fcn_edge metadata, when a backend reads it
        self.classes: list[str] | None = None  # class names and RGB palette: set by open_runner
        self.palette: list[tuple[int, int, int]] | None = None
        self.last_inference_time = 0.0  # seconds spent in the last infer_impl call

    def activate(self) -> "Runner":
        """Allocate everything inference needs; a no-op when already active."""
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def infer(self, frame: np.ndarray) -> np.ndarray:
        """Labels for one uint8 HxWx3 BGR frame, in a buffer the next call overwrites."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active: call activate() or use it as a context manager")
        if self.check_inputs:
            check_frame(frame)
        start = time.perf_counter()
        labels = self.infer_impl(frame)
        self.last_inference_time = time.perf_counter() - start
        return labels

    def deactivate(self) -> None:
        """Free what ``activate`` allocated; a no-op when not active."""
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc_info: object) -> None:
        self.deactivate()

    def activate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError


def check_frame(frame: object) -> None:
    """Raise FcnEdgeError unless ``frame`` is what runners take: C-contiguous uint8 HxWx3."""
    if not isinstance(frame, np.ndarray):
        raise FcnEdgeError(f"a runner takes a numpy frame, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 1:
        raise FcnEdgeError(
            f"a runner takes one uint8 HxWx3 BGR frame, got {frame.dtype} of shape {frame.shape}: "
            "pass frames as OpenCV reads them"
        )
    if not frame.flags.c_contiguous:
        raise FcnEdgeError("the frame is not C-contiguous (a crop or a flipped view?): pass np.ascontiguousarray(frame)")


BACKENDS = ("auto", "ort", "trt")
TRT_SUFFIXES = (".engine", ".plan")


def open_runner(
    path: str | Path,
    backend: str = "auto",
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    cuda_binding: str = "auto",
    check_inputs: bool = True,
    optimize: bool = True,
) -> Runner:
    """An inactive runner for ``path``: TensorRT for .engine/.plan files, ONNX Runtime for .onnx.

    Each backend takes the options that mean something to it (ORT: ``threads``,
    ``providers``, ``optimize`` (graph optimisations, off only to show the latency tests
    catch it); TensorRT: ``cuda_binding``). Backends are imported here, lazily, so a
    CPU-only install never imports TensorRT or CUDA. The runner's ``classes`` and
    ``palette`` come from the model's metadata or else from the build sidecar beside it
    (``<artifact>.json``); None when neither has them.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise FcnEdgeError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if path.suffix in TRT_SUFFIXES:
            backend = "trt"
        elif path.suffix == ".onnx":
            backend = "ort"
        else:
            raise FcnEdgeError(
                f"cannot tell the backend of {path} from its suffix: use a .onnx (ONNX Runtime) or "
                f".engine/.plan (TensorRT) file, or pass --backend"
            )
    if backend == "trt":
        from .trt import TrtRunner

        runner: Runner = TrtRunner(path, cuda_binding=cuda_binding, check_inputs=check_inputs)
    else:
        from .ort import OrtRunner

        runner = OrtRunner(path, providers=providers, threads=threads, check_inputs=check_inputs, optimize=optimize)
    if runner.metadata is not None:
        runner.classes, runner.palette = list(runner.metadata.classes), list(runner.metadata.palette)
    else:
        runner.classes, runner.palette = sidecar_classes(path)
    return runner


def sidecar_classes(path: Path) -> tuple[list[str] | None, list[tuple[int, int, int]] | None]:
    """Class names and palette from the build sidecar's ``model`` entry; (None, None) if it has none."""
    try:
        model = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))["model"]
        return [str(c) for c in model["classes"]], [tuple(int(v) for v in c) for c in model["palette"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
