"""Where overlays go: an OpenCV window, an mp4 file, a folder of PNGs (or nowhere: headless).

A sink's ``write`` runs on the stream's overlay thread, so encoding overlaps the next
inference. ``close`` must run for a recording to be playable (the mp4 index is written
on release); the stream calls it on every exit path, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import av
import cv2
import numpy as np

from ..atomic import check_output, check_writable, temporary_beside, write_bytes_atomic
from ..errors import FcnEdgeError
from ..paths import utf8_path

if TYPE_CHECKING:
    from .overlay import Overlay
    from .stats import StreamStats

WINDOW = "fcn_edge"
QUIT_KEYS = (ord("q"), 27)  # q, Esc
# Free space a recording keeps in hand to finalise: the muxer's unflushed buffer and header slack,
# two raw frames (an encoded frame is smaller), and the per-frame index written on release.
SPACE_MARGIN, INDEX_BYTES_PER_FRAME = 64 * 1024, 32


class Sink:
    description = "sink"
    stop_requested = False  # set by a sink the user can close (the window)

    def start(self, stats: StreamStats, overlay: Overlay) -> None:
        """Called once before the first frame; a sink that reports on the run (the web page) keeps what it needs."""

    def draw(self, frame: np.ndarray, labels: np.ndarray, overlay: Overlay) -> np.ndarray:
        """The image ``write`` takes, drawn by this sink when it is the only one: the BGR overlay, into ``frame``."""
        return overlay.render(frame, labels, out=frame)

    def write(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def kept(self) -> str | None:
        """What this sink left on disk, for the line that ends a failed run; None when there is nothing to say."""
        return None


class VideoFileSink(Sink):
    """MPEG-4 video (.mp4, .mov, .mkv or .avi), encoded with PyAV; sized by the first frame, later sizes are resized
    to it.

    PyAV rather than ``cv2.VideoWriter``: the frame reaches the encoder as YUV 4:2:0 made by
    OpenCV's SIMD conversion, where OpenCV's writer converts with swscale: at the same size
    of file it is faster, with a better picture (docs/stream.md, "Figures behind the code").
    A recording that is the only sink draws the
    overlay in YUV 4:2:0 itself (``draw``), which moves half the bytes of a BGR overlay.
    The encoder runs single-threaded on the overlay thread: threads of its own would take
    the cores from inference. 4:2:0 needs an even size: an odd last row or column is left out.

    The recording is written under a hidden temporary name beside ``path`` and renamed to it
    on ``close``, once the index that makes it playable is written and it opens: a killed run
    never leaves an unplayable file under the name asked for. Free space is checked after
    every frame (one statvfs) and the run stops while there is still room to finalise what
    was recorded.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".avi"):
            raise FcnEdgeError(f"--output {self.path}: use a .mp4, .mov, .mkv or .avi file name")
        check_output(self.path, "--output")
        self.fps = fps if fps > 0 else 30.0
        self.description = f"video {self.path}"
        self._container = self._stream = None
        self._size: tuple[int, int] | None = None  # (width, height) of the recording
        self._resized: np.ndarray | None = None
        self._yuv: np.ndarray | None = None
        self._tmp: Path | None = None
        self._finished: bool | None = None  # after close: whether the recording was kept
        self.frames = 0

    def draw(self, frame: np.ndarray, labels: np.ndarray, overlay: Overlay) -> np.ndarray:
        """The overlay straight in YUV 4:2:0 (``Overlay.render_i420``), unless the frame needs resizing or a legend."""
        if self._container is None:
            self._open(frame)
        width, height = self._size
        if overlay.legend or even_size(frame) != self._size:
            return super().draw(frame, labels, overlay)
        self._yuv = overlay.render_i420(frame[:height, :width], labels[:height, :width], out=self._yuv)
        return self._yuv

    def write(self, image: np.ndarray) -> None:
        """``image``: a BGR overlay, or the YUV 4:2:0 one ``draw`` made."""
        if self._container is None:
            self._open(image)
        if image is not self._yuv:
            width, height = self._size
            if even_size(image) != self._size:
                self._resized = cv2.resize(image, self._size, dst=self._resized, interpolation=cv2.INTER_AREA)
                image = self._resized
            self._yuv = cv2.cvtColor(image[:height, :width], cv2.COLOR_BGR2YUV_I420, dst=self._yuv)
        frame = av.VideoFrame.from_ndarray(self._yuv, format="yuv420p")
        frame.pts = self.frames
        with self._encoder_errors():
            self._container.mux(self._stream.encode(frame))
        self.frames += 1
        self._check_space()

    def _open(self, image: np.ndarray) -> None:
        self._size = width, height = even_size(image)
        if not (height and width):
            raise FcnEdgeError(f"--output {self.path}: a {image.shape[0]}x{image.shape[1]} frame is too small to record")
        self._tmp = temporary_beside(self.path, suffix=self.path.suffix, flag="--output")  # PyAV picks the container by suffix
        rate = Fraction(self.fps).limit_denominator(1001)
        with self._encoder_errors():
            self._container = av.open(str(self._tmp), "w")
            stream = self._container.add_stream("mpeg4", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.bit_rate = int(rate * width * height)  # one bit per pixel and frame, as OpenCV's writer
            stream.codec_context.thread_count = 1
            stream.codec_context.options = {"qmin": "3"}  # easy scenes stop at q=3 instead of spending the bitrate
            self._stream = stream

    @contextlib.contextmanager
    def _encoder_errors(self) -> Iterator[None]:
        try:
            yield
        except (av.FFmpegError, OSError) as error:
            raise FcnEdgeError(
                f"cannot record to {self.path} ({error}): check the disk and that the folder is writable"
            ) from None

    def _check_space(self) -> None:
        frame_bytes = 3 * self._size[0] * self._size[1]  # raw BGR: an encoded frame is smaller
        disk = os.statvfs(self._tmp.parent)
        free = disk.f_bavail * disk.f_frsize
        if free < SPACE_MARGIN + 2 * frame_bytes + INDEX_BYTES_PER_FRAME * self.frames:
            raise FcnEdgeError(
                f"the disk holding --output {self.path} is full ({free / 1e6:.2f} MB free) after {self.frames} frames: "
                "free some space or record to another disk"
            )

    def close(self) -> None:
        if self._tmp is None or self._finished is not None:
            return
        try:
            if self._container is not None:
                with self._encoder_errors():
                    self._container.mux(self._stream.encode(None))  # the frames the encoder still holds
                    self._container.close()  # writes the index
        finally:
            self._container = self._stream = None
            self._finished = self.frames > 0 and _playable(self._tmp)
            if self._finished:
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)

    def kept(self) -> str | None:
        if self._finished:
            return f"the {self.frames} frames recorded until then are kept in {self.path}"
        return None if self._tmp is None else f"no recording was kept at {self.path}"


def even_size(image: np.ndarray) -> tuple[int, int]:
    """(width, height) rounded down to even, as 4:2:0 video needs."""
    return image.shape[1] // 2 * 2, image.shape[0] // 2 * 2


def _playable(path: Path) -> bool:
    """Whether OpenCV reads a first frame back: the container's index was written."""
    with utf8_path(path) as name:
        capture = cv2.VideoCapture(name)
    try:
        return capture.isOpened() and capture.read()[0]
    finally:
        capture.release()


class ImageFolderSink(Sink):
    """One PNG per frame: named after its source image (``names``, from --images), else numbered from 000000."""

    def __init__(self, folder: str | Path, names: Sequence[str] = ()) -> None:
        self.folder = Path(folder)
        self.names = list(names)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FcnEdgeError(f"cannot create --save-dir {self.folder} ({error.strerror}): choose another folder") from None
        check_writable(self.folder, "--save-dir")
        self.description = f"PNGs in {self.folder}"
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        """Encode, then write atomically: a full disk leaves no truncated PNG, only the complete ones before it."""
        name = self.names[self.frames] if self.frames < len(self.names) else f"{self.frames:06d}"
        path = self.folder / f"{name}.png"
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise FcnEdgeError(f"OpenCV cannot encode {path} as PNG: use --output FILE.mp4 instead")
        write_bytes_atomic(path, encoded.tobytes())
        self.frames += 1

    def close(self) -> None:
        pass

    def kept(self) -> str | None:
        return f"the {self.frames} PNGs written until then are in {self.folder}" if self.frames else None


def display_problem() -> str | None:
    """Why an OpenCV window cannot open here, or None if it can.

    Checked before any window call: with no screen some GUI backends abort the process
    instead of raising.
    """
    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and gui[0].upper() == "NONE":
        return (
            "this OpenCV build has no GUI (opencv-python-headless): swap it for the windowed one with "
            "pip uninstall -y opencv-python-headless && pip install --force-reinstall 'opencv-python>=4.8,<5' "
            "(docs/install.md, Desktop), or on a Jetson use the system OpenCV"
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no screen (DISPLAY is not set): run it on the desktop, or forward X with ssh -X"
    return None


def require_display() -> None:
    problem = display_problem()
    if problem:
        raise FcnEdgeError(f"--display: {problem}; or use --output FILE.mp4, --save-dir DIR or --headless")


class DisplaySink(Sink):
    """An OpenCV window; q or Esc (or closing the window) stops the stream."""

    description = "window"

    def __init__(self) -> None:
        require_display()
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error as error:
            raise FcnEdgeError(f"--display: OpenCV cannot open a window ({error.err}): use --output or --headless") from None
        self._shown = False

    def write(self, image: np.ndarray) -> None:
        cv2.imshow(WINDOW, image)
        key = cv2.waitKey(1) & 0xFF
        closed = self._shown and cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1
        self._shown = True
        if key in QUIT_KEYS or closed:
            self.stop_requested = True

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)
