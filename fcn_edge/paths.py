"""Project-wide file facts with no heavy imports.

The build's up-to-date check must answer in well under a second, so what it needs (the
default places, the image types, the file digest) lives here, away from the modules that
import torch.

The default places are relative to the working folder, in every entry point, like ``runs/``:
a user expects ``engines/`` to mean the one they are looking at, and the build writes there.
What a command only reads (the default checkpoint, the calibration images, the model the
stream opens) falls back, when the working folder has none, to the project's own copy beside
the package (:func:`default_input`): a source or editable install (``pip install -e .``) runs
``fcn-edge build --int8`` from any folder, and says in one line which file it used. A wheel
ships no checkpoint or images (5 MB of weights in every deploy install that never trains or
builds): there the commands name the flag to pass (--checkpoint, --calib-dir, --model).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path
from typing import Iterator

DEFAULT_CHECKPOINT = Path("checkpoints") / "default.pt"
CALIBRATION_DIR = Path("calibration")
ENGINES_DIR = Path("engines")
DEFAULT_MODEL = ENGINES_DIR / "default.int8.onnx"  # what the stream runs: fcn-edge build --int8 writes it
PROJECT = Path(__file__).resolve().parent.parent  # the source tree, in a source or editable install


def cache_folder(kind: str) -> Path:
    """Where fcn_edge keeps ``kind`` of cache: $FCN_EDGE_CACHE/<kind>, else $XDG_CACHE_HOME or ~/.cache, /fcn_edge/<kind>."""
    if os.environ.get("FCN_EDGE_CACHE"):
        return Path(os.environ["FCN_EDGE_CACHE"]) / kind
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fcn_edge" / kind


def shipped(relative: Path) -> Path | None:
    """The project's own copy of a default input (``checkpoints/default.pt``, ``calibration/``): beside the package in a
    source or editable install; None in a wheel install, which ships none (module docstring)."""
    found = PROJECT / relative
    return found if (PROJECT / "pyproject.toml").is_file() and found.exists() else None


def default_input(relative: Path, what: str | None) -> Path:
    """``relative`` in the working folder when it is there, else the project's copy (said in one line on stderr, unless
    ``what`` is None: the caller says it), else ``relative`` itself, whose absence the caller reports with the flag."""
    if relative.exists():
        return relative
    found = shipped(relative)
    if found is None:
        return relative
    if what is not None:
        print(f"{what}: {found} ({fallback_note(relative)})", file=sys.stderr)
    return found


def fallback_note(relative: Path) -> str:
    folder = "/" if (PROJECT / relative).is_dir() else ""
    return f"the project's: the working folder has no {relative.as_posix()}{folder}"


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
