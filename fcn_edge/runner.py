"""The one runner interface every backend implements, so callers never branch on the backend.

Modelled on Polygraphy's runners: ``activate()`` allocates (session, buffers, contexts),
``infer(frame)`` runs, ``deactivate()`` frees, and a runner is a context manager.
Subclasses override ``activate_impl``, ``infer_impl`` and ``deactivate_impl`` (and
``start_impl``/``wait_impl`` to overlap frames).

A runner takes one camera frame (uint8 HxWx3 BGR, C-contiguous, as OpenCV gives it) and
returns its labels (HxW, one byte per pixel): pre- and post-processing live inside the
model, so nothing else crosses the host boundary. ``infer`` also takes a batch of
same-size frames (uint8 NxHxWx3) and returns NxHxW labels: several cameras through one
model (fcn_edge/stream/multi.py). ``max_batch`` is the most frames one call takes (None:
any; 1 for a model exported with a fixed batch of 1, whose callers split batches);
:meth:`Runner.batch_buffer` is a reused NxHxWx3 buffer to gather a batch in, in memory the
runner reads in place.

**Output buffers are reused between calls**: the array ``infer`` (or ``wait``) returns is
overwritten by the next call. Copy it if you keep it. Input checks (dtype, shape, layout)
cost a few microseconds and can be switched off on the hot path with ``check_inputs=False``.

Frames in flight: ``start(frame)`` begins a frame and ``wait()`` returns the labels of the
oldest one started; a runner with ``inflight`` > 1 (OpenVINO with one stream per frame) runs
that many at once, so a host thread taking a core delays one frame instead of stalling both
threads of one. Runners that take one frame at a time run it inside ``wait``.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import FcnEdgeError

if TYPE_CHECKING:
    from .metadata import ModelMetadata


class Runner:
    """Base class: lifecycle, input checks and timing; backends supply the ``*_impl`` methods."""

    inflight = 1  # frames start() may begin before a wait()
    max_batch: int | None = None  # frames one infer() takes; None: any

    def __init__(self, name: str, check_inputs: bool = True) -> None:
        self.name = name
        self.check_inputs = check_inputs
        self.is_active = False
        self.metadata: ModelMetadata | None = None  # the model's fcn_edge metadata, when a backend reads it
        self.classes: list[str] | None = None  # class names and RGB palette: set by open_runner
        self.palette: list[tuple[int, int, int]] | None = None
        self._pending: deque[np.ndarray] = deque()  # started, not yet waited for
        self._batch_buffers: dict[tuple[int, ...], np.ndarray] = {}

    def activate(self) -> "Runner":
        """Allocate everything inference needs; a no-op when already active."""
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def infer(self, frame: np.ndarray) -> np.ndarray:
        """Labels for one uint8 HxWx3 BGR frame (HxW), or for a NxHxWx3 batch (NxHxW), in a buffer the next call
        overwrites."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active: call activate() or use it as a context manager")
        if self._pending:
            raise RuntimeError(f"runner {self.name} has started frames: wait() for them before infer()")
        if self.check_inputs:
            check_frame(frame, batch=True)
            if frame.ndim == 4 and self.max_batch is not None and len(frame) > self.max_batch:
                raise FcnEdgeError(
                    f"runner {self.name} takes at most {self.max_batch} frame(s) at once (the model's fixed batch), "
                    f"got {len(frame)}: split the batch, or export the model with a dynamic batch"
                )
        return self.infer_impl(frame)

    def start(self, frame: np.ndarray) -> None:
        """Begin ``frame``; it must stay unchanged until the ``wait`` that returns its labels."""
        if len(self._pending) >= self.inflight:
            raise RuntimeError(f"runner {self.name} has {self.inflight} frame(s) in flight: wait() before starting another")
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active: call activate() or use it as a context manager")
        if self.check_inputs:
            check_frame(frame, batch=True)
        self.start_impl(frame)
        self._pending.append(frame)

    def wait(self) -> np.ndarray:
        """Labels of the oldest started frame, in a buffer the next ``start``, ``wait`` or ``infer`` may overwrite."""
        if not self._pending:
            raise RuntimeError(f"runner {self.name}: wait() without a started frame")
        return self.wait_impl(self._pending.popleft())

    def frame_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 frame buffer in memory this runner reads in place: the stream decodes frames into it.

        Plain host memory here (ONNX Runtime binds a numpy frame where it lies); TensorRT
        hands out page-locked or, on Jetson, mapped memory.
        """
        return np.empty(shape, np.uint8)

    def batch_buffer(self, shape: tuple[int, int, int, int]) -> np.ndarray:
        """A uint8 NxHxWx3 buffer, the same one for every call with this shape, to gather a batch in for ``infer``;
        TensorRT hands out its page-locked input buffer, so the batch is not copied again."""
        buffer = self._batch_buffers.get(shape)
        if buffer is None:
            buffer = self._batch_buffers[shape] = np.empty(shape, np.uint8)
        return buffer

    def release_frame_buffer(self, buffer: np.ndarray) -> None:
        """Give back a :meth:`frame_buffer` nobody reads any more (the stream's pool slot of an old frame size).

        Plain memory goes with its last reference; runners that hand out page-locked memory free it here.
        """

    def deactivate(self) -> None:
        """Free what ``activate`` allocated; a no-op when not active."""
        if self.is_active:
            while self._pending:  # a frame still running must finish before its buffers go
                self.wait()
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

    def start_impl(self, frame: np.ndarray) -> None:
        """Runners that overlap frames begin one here; the others run it in ``wait_impl``."""

    def wait_impl(self, frame: np.ndarray) -> np.ndarray:
        return self.infer_impl(frame)


def model_file(path: str | Path) -> Path:
    """``path`` as a Path, or one line saying it is a folder or missing and how to get a model."""
    path = Path(path)
    if path.is_dir():
        raise FcnEdgeError(f"model {path} is a folder: pass the .onnx file in it")
    if not path.is_file():
        raise FcnEdgeError(f"model {path} does not exist: build one with fcn-edge build or pass --model")
    return path


def check_frame(frame: object, batch: bool = False) -> None:
    """Raise FcnEdgeError unless ``frame`` is what runners take: C-contiguous uint8 HxWx3 (or NxHxWx3 with ``batch``)."""
    if not isinstance(frame, np.ndarray):
        raise FcnEdgeError(f"a runner takes a numpy frame, got {type(frame).__name__}")
    dims = (3, 4) if batch else (3,)
    if frame.dtype != np.uint8 or frame.ndim not in dims or frame.shape[-1] != 3 or min(frame.shape[:-1]) < 1:
        raise FcnEdgeError(
            f"a runner takes one uint8 HxWx3 BGR frame, got {frame.dtype} of shape {frame.shape}: "
            "pass frames as OpenCV reads them"
        )
    if not frame.flags.c_contiguous:
        raise FcnEdgeError("the frame is not C-contiguous (a crop or a flipped view?): pass np.ascontiguousarray(frame)")
