"""Where frames come from: cameras (V4L2, CSI), GStreamer, network streams, files, synthetic scenes.

Every source has one small interface — ``open()``, ``read(buffer)``, ``close()`` — and says
whether it is ``live``. ``read`` decodes into ``buffer`` when its size matches (OpenCV
reuses it), so captured frames land in the stream's preallocated pool; it returns the
frame, or None when there is none (end of a file, or a live source that stopped).

Live sources (cameras, network streams, synthetic) keep running whether or not the
model keeps up, so the stream keeps only their newest frame; files are read at the
model's pace and every frame is processed (see pipeline.py).
"""

from __future__ import annotations

import functools
import math
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ..errors import FcnEdgeError
from ..media import IMAGE_SUFFIXES, image_files, read_image
from ..paths import is_utf8, utf8_path

NETWORK_TIMEOUT_MS = 5000  # open and read timeouts for network streams, so a dead link is noticed
CSI_DEFAULT = (1280, 720, 30)
SYNTHETIC_DEFAULT = (640, 480, 30)


class Source:
    """A frame source; subclasses set ``description`` and ``live`` and implement the three methods."""

    description = "source"
    live = False

    @property
    def fps(self) -> float:
        """Nominal frame rate (0 when unknown): what a recording of this source should play at."""
        return 0.0

    def open(self) -> None:
        raise NotImplementedError

    def read(self, buffer: np.ndarray | None) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class CaptureSource(Source):
    """Anything ``cv2.VideoCapture`` opens; ``hint`` is what to try when it does not."""

    def __init__(
        self, target: int | str, api: int, description: str, live: bool, hint: str,
        size: tuple[int, int] | None = None, fps: float | None = None, params: tuple[int, ...] = (),
    ) -> None:  # fmt: skip
        self.target, self.api, self.description, self.live, self.hint = target, api, description, live, hint
        self.size, self.requested_fps, self.params = size, fps, list(params)
        self._capture: cv2.VideoCapture | None = None

    @property
    def fps(self) -> float:
        value = self._capture.get(cv2.CAP_PROP_FPS) if self._capture is not None else 0.0
        return value if math.isfinite(value) and 0 < value < 1000 else float(self.requested_fps or 0.0)

    def open(self) -> None:
        if isinstance(self.target, str) and not is_utf8(self.target):  # OpenCV would segfault on the name
            try:
                with utf8_path(self.target) as target:  # a file: opened by a name OpenCV takes
                    capture = cv2.VideoCapture(target, self.api, self.params)
            except OSError as error:  # a URL or pipeline that is not UTF-8 text, or a file that is gone
                raise FcnEdgeError(f"cannot open {self.description} ({error.strerror}): {self.hint}") from None
        else:
            capture = cv2.VideoCapture(self.target, self.api, self.params)
        if not capture.isOpened():
            raise FcnEdgeError(f"cannot open {self.description} (OpenCV backend {backend_name(self.api)}): {self.hint}")
        if self.size:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if self.requested_fps:
            capture.set(cv2.CAP_PROP_FPS, self.requested_fps)
        if self.live:
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer frames queued in the driver: fresher frames
        self._capture = capture

    def read(self, buffer: np.ndarray | None) -> np.ndarray | None:
        ok, frame = self._capture.read(buffer)
        return frame if ok else None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class ImageFolderSource(Source):
    """The images in a folder, in name order."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FcnEdgeError(f"image folder {self.folder} does not exist: pass a folder of images to --images")
        self.files = image_files(self.folder, "--images")
        if not self.files:
            raise FcnEdgeError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}: add some or pick another folder")
        self.description = f"images in {self.folder}"
        self._next = 0

    def open(self) -> None:
        self._next = 0

    def read(self, buffer: np.ndarray | None) -> np.ndarray | None:
        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        self._next += 1
        try:
            frame = read_image(path)
        except OSError as error:
            raise FcnEdgeError(
                f"cannot read {path} ({error.strerror}): check its permissions or remove it from {self.folder}"
            ) from None
        if frame is None:
            raise FcnEdgeError(f"{path} is not a readable image: remove it from {self.folder}")
        return frame

    def close(self) -> None:
        pass


class SyntheticSource(Source):
    """A camera panning over one synthetic scene at ``fps``: deterministic, needs no device.

    The scene (1.5x the frame size) is drawn once; each frame is a crop along a smooth
    Lissajous path, so objects drift across the view and every run sees the same frames.
    A frame costs one copy, so the source never competes with the model for the CPU.
    """

    live = True

    def __init__(self, size: tuple[int, int] = SYNTHETIC_DEFAULT[:2], fps: float = SYNTHETIC_DEFAULT[2], seed: int = 0):
        width, height = size
        if width < 32 or height < 32:
            raise FcnEdgeError(f"synthetic frames of {height}x{width} are too small: use --size of 32x32 or more")
        if fps < 0:
            raise FcnEdgeError(f"--fps {fps} must be positive (0: as fast as possible)")
        self.size, self.requested_fps, self.seed = (width, height), fps, seed
        self.description = f"synthetic {width}x{height} at {fps:g} fps" if fps else f"synthetic {width}x{height}"
        self._index = 0
        self._next_time = 0.0

    @property
    def fps(self) -> float:
        return float(self.requested_fps)

    def open(self) -> None:
        self._index = 0
        self._next_time = time.perf_counter()

    def read(self, buffer: np.ndarray | None) -> np.ndarray | None:
        width, height = self.size
        if self.requested_fps:
            self._next_time = max(self._next_time + 1.0 / self.requested_fps, time.perf_counter())  # late: no burst
            time.sleep(max(0.0, self._next_time - time.perf_counter()))
        world = _synthetic_world(width, height, self.seed)
        t = self._index / 60.0
        x = int((world.shape[1] - width) * (0.5 + 0.5 * math.sin(1.3 * t)))
        y = int((world.shape[0] - height) * (0.5 + 0.5 * math.sin(0.9 * t + 1.0)))
        self._index += 1
        if buffer is None or buffer.shape != (height, width, 3):
            buffer = np.empty((height, width, 3), np.uint8)
        np.copyto(buffer, world[y : y + height, x : x + width])
        return buffer

    def close(self) -> None:
        pass


@functools.lru_cache(maxsize=2)
def _synthetic_world(width: int, height: int, seed: int) -> np.ndarray:
    from ..data.synthetic import render_scene  # imports torch's Dataset: only when asked for

    world, _ = render_scene(np.random.default_rng(seed), (height * 3 // 2, width * 3 // 2))
    world.flags.writeable = False
    return world


def backend_name(api: int) -> str:
    names = {cv2.CAP_ANY: "any", cv2.CAP_V4L2: "V4L2", cv2.CAP_GSTREAMER: "GStreamer", cv2.CAP_FFMPEG: "FFmpeg"}
    return names.get(api, str(api))


def has_gstreamer() -> bool:
    return any(line.strip().startswith("GStreamer:") and "YES" in line for line in cv2.getBuildInformation().splitlines())


def _camera_api() -> int:
    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


CAMERA_HINT = (
    "check that it is plugged in and not in use (v4l2-ctl --list-devices lists cameras), or try --video FILE or --synthetic"
)
GSTREAMER_HINT = (
    "this OpenCV has no GStreamer support (pip's opencv-python-headless has none): on a Jetson use the system "
    "OpenCV (pip uninstall opencv-python-headless; see docs/stream.md), or try --camera N, --video FILE or --synthetic"
)


def camera(index: int, size: tuple[int, int] | None = None, fps: float | None = None) -> CaptureSource:
    return CaptureSource(index, _camera_api(), f"camera index {index}", True, CAMERA_HINT, size, fps)


def device(path: str, size: tuple[int, int] | None = None, fps: float | None = None) -> CaptureSource:
    return CaptureSource(path, _camera_api(), f"camera device {path}", True, CAMERA_HINT, size, fps)


def gstreamer(pipeline: str, description: str | None = None, fps: float | None = None) -> CaptureSource:
    if not has_gstreamer():
        raise FcnEdgeError(f"cannot open GStreamer pipeline: {GSTREAMER_HINT}")
    hint = "check the pipeline with gst-launch-1.0 (ending in fakesink) and that it ends in appsink with BGR frames"
    return CaptureSource(pipeline, cv2.CAP_GSTREAMER, description or f"GStreamer pipeline {pipeline!r}", True, hint, fps=fps)


def csi_pipeline(sensor_id: int, width: int, height: int, fps: float) -> str:
    """A Jetson CSI camera (Argus) as BGR frames; the newest frame only, so latency stays low."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){round(fps)}/1 ! "
        "nvvidconv ! video/x-raw, format=(string)BGRx ! videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1"
    )


def csi(sensor_id: int, size: tuple[int, int] | None = None, fps: float | None = None) -> CaptureSource:
    width, height = size or CSI_DEFAULT[:2]
    rate = fps or CSI_DEFAULT[2]
    return gstreamer(csi_pipeline(sensor_id, width, height, rate), f"CSI camera {sensor_id} ({width}x{height})", rate)


PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):[^/?#]*@")  # scheme://user:PASSWORD@ (to the last @)


def redact(address: str) -> str:
    """``rtsp://admin:pw@host/cam`` -> ``rtsp://admin:***@host/cam``: a description goes to stderr, the served page
    and JSON, so it never holds the password (the capture itself gets the address as given)."""
    return PASSWORD.sub(r"\1:***@", address)


def url(address: str) -> CaptureSource:
    params = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS)
    hint = "check the address, credentials and that the stream plays in ffplay or VLC, or try --video FILE"
    return CaptureSource(address, cv2.CAP_FFMPEG, f"stream {redact(address)}", True, hint, params=params)


def video(path: str | Path) -> CaptureSource:
    if not Path(path).is_file():
        raise FcnEdgeError(f"video {path} does not exist: check the path")
    hint = "OpenCV's FFmpeg cannot decode it: convert it to H.264 or MJPG (ffmpeg -i in -c:v libx264 out.mp4)"
    # One decoding thread: the capture thread already decodes beside inference, and FFmpeg's frame threads
    # cost CPU the model needs (docs/stream.md, "Where the host time goes").
    return CaptureSource(str(path), cv2.CAP_FFMPEG, f"video {path}", False, hint, params=(cv2.CAP_PROP_N_THREADS, 1))
