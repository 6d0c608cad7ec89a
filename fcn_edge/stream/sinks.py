"""Where overlays go: an OpenCV window, an mp4 file, a folder of PNGs (or nowhere: headless).

A sink's ``write`` runs on the stream's overlay thread, so encoding overlaps the next
inference. ``close`` must run for a recording to be playable (the mp4 index is written
on release); the stream calls it on every exit path, Ctrl-C included.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from ..errors import FcnEdgeError

WINDOW = "fcn_edge"
QUIT_KEYS = (ord("q"), 27)  # q, Esc


class Sink:
    description = "sink"
    stop_requested = False  # set by a sink the user can close (the window)

    def write(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class VideoFileSink(Sink):
    """mp4v in .mp4/.mov/.mkv, MJPG in .avi; sized by the first frame, later sizes are resized to it."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".avi"):
            raise FcnEdgeError(f"--output {self.path}: use a .mp4, .mov, .mkv or .avi file name")
        if not self.path.parent.is_dir():
            raise FcnEdgeError(f"output folder {self.path.parent} does not exist: create it or choose another path")
        self.fps = fps if fps > 0 else 30.0
        self.description = f"video {self.path}"
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._resized: np.ndarray | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self._open(image)
        if (image.shape[1], image.shape[0]) != self._size:
            self._resized = cv2.resize(image, self._size, dst=self._resized, interpolation=cv2.INTER_AREA)
            image = self._resized
        self._writer.write(image)
        self.frames += 1

    def _open(self, image: np.ndarray) -> None:
        codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self._size = (image.shape[1], image.shape[0])
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, self._size)
        if not self._writer.isOpened():
            raise FcnEdgeError(f"OpenCV cannot write {codec} video to {self.path}: check the folder is writable or use .avi")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class ImageFolderSink(Sink):
    """One PNG per frame, numbered from 000000."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FcnEdgeError(f"cannot create --save-dir {self.folder} ({error.strerror}): choose another folder") from None
        self.description = f"PNGs in {self.folder}"
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        path = self.folder / f"{self.frames:06d}.png"
        if not cv2.imwrite(str(path), image):
            raise FcnEdgeError(f"cannot write {path}: check the disk has space and the folder is writable")
        self.frames += 1

    def close(self) -> None:
        pass


def display_problem() -> str | None:
    """Why an OpenCV window cannot open here, or None if it can.

    Checked before any window call: with no screen some GUI backends abort the process
    instead of raising.
    """
    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and gui[0].upper() == "NONE":
        return "this OpenCV build has no GUI (opencv-python-headless): install opencv-python, or on a Jetson use the system OpenCV"
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
