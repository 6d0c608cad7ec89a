"""Scratch folders that a killed run does not leave behind for good.

A build works in a temporary folder (models, calibration tensors: ~10 MB for a small model,
gigabytes for a large one) that its ``with`` removes; ``kill -9`` or a power cut skips that.
Each folder's name carries the owning process id (``fcn_edge_<job>_<pid>_<random>``), so the
next scratch folder made removes the ones whose process is gone and that belong to this user.
A folder of a live process (another build running) is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

NAME = re.compile(r"^fcn_edge_[a-z]+_(\d+)_")


@contextlib.contextmanager
def scratch_folder(job: str) -> Iterator[Path]:
    """A fresh folder in the system temp folder, removed after the block; first reclaims those of dead runs."""
    reclaim_orphans()
    with tempfile.TemporaryDirectory(prefix=f"fcn_edge_{job}_{os.getpid()}_") as folder:
        yield Path(folder)


def reclaim_orphans(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the scratch folders under ``root`` (the system temp folder) whose owning process has ended; the
    removed ones."""
    removed = []
    try:
        entries = list(os.scandir(root or tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        match = NAME.match(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or a number no process has: leave the folder alone
    return True
