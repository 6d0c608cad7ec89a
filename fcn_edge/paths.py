"""Project-wide file facts with no heavy imports.

The build's up-to-date check must answer in well under a second, so what it needs (the
default places, the image types, the file digest) lives here, away from the modules that
import torch.

The default folders are relative to the working folder, in every entry point, like
``runs/``: an installed package has no repository folder to anchor them to, and a user
expects ``engines/`` to mean the one they are looking at. Run the commands from the
project folder, or pass the flag (--checkpoint, --calib-dir, --engines-dir, --model).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterator

DEFAULT_CHECKPOINT = Path("checkpoints") / "default.pt"
CALIBRATION_DIR = Path("calibration")
ENGINES_DIR = Path("engines")
DEFAULT_MODEL = ENGINES_DIR / "default.int8.onnx"  # what the stream runs: fcn-edge build --int8 writes it


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_utf8(path: str | os.PathLike) -> bool:
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def utf8_path(path: str | os.PathLike) -> Iterator[str]:
    """A name of ``path`` that libraries taking UTF-8 text can open (OpenCV segfaults on one that is not, ONNX
    Runtime refuses it): the path itself when it is UTF-8; else, on Linux, ``/proc/self/fd/N/NAME`` of its folder
    held open for the block (files beside it, like external data, still resolve), or ``/proc/self/fd/N`` of the file
    when its own name is not UTF-8. FileNotFoundError/OSError when it cannot be opened."""
    if is_utf8(path) or not os.path.isdir("/proc/self/fd"):
        yield os.fspath(path)
        return
    path = Path(path)
    whole = not is_utf8(path.name)
    descriptor = os.open(path if whole else path.parent, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{descriptor}" + ("" if whole else f"/{path.name}")
    finally:
        os.close(descriptor)
