"""Image and video files by any name the OS allows, and image folders that cannot hang a run.

OpenCV takes a path as UTF-8 text: a name that is not UTF-8 (Python holds it as lone
surrogates) crashes ``cv2.imread`` and ``cv2.VideoCapture`` with a segfault. Images are read
as bytes and decoded (``np.fromfile`` + ``cv2.imdecode``, as the data loaders do); a video is
opened by a name that is (``paths.utf8_path``). A FIFO, socket or device named like an image would block the first read forever:
folder listings keep regular files only and say which they skipped.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

# what every image folder lists (calibration, --images, a dataset's images/): the formats OpenCV decodes everywhere
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """The decoded image, or None when the file is empty or not an image; OSError when it cannot be read."""
    data = np.fromfile(os.fspath(path), np.uint8)
    return cv2.imdecode(data, flags) if data.size else None


def image_files(folder: Path, flag: str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The regular files of ``folder`` named like images, in name order; anything else named like one (a FIFO, a
    socket, a device) is skipped with a note naming it, since reading it could block forever."""
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes:
            continue
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # a dangling link: as if absent
        if stat.S_ISREG(mode):
            found.append(path)
        elif not stat.S_ISDIR(mode):
            print(f"note: {flag}: skipping {path}: not a regular file (a FIFO, socket or device)", file=sys.stderr)
    return found
