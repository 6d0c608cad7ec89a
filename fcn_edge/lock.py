"""One build per artifact name at a time: an advisory lock file in the engines folder.

Two builds of one name would write the same files; each is atomic, but together they could
leave one build's model beside the other's sidecar. ``flock`` is released by the kernel when
its process dies, so a killed build never leaves a lock that blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .atomic import write_errors
from .errors import FcnEdgeError


@contextlib.contextmanager
def build_lock(folder: Path, name: str) -> Iterator[None]:
    """Hold ``folder/.<name>.lock`` for the block; a one-line error if another process holds it."""
    path = folder / f".{name}.lock"
    with write_errors(path):
        fd = _acquire(path, name)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            path.unlink(missing_ok=True)  # while still held: the next build creates and locks a new file
            os.close(fd)


def _acquire(path: Path, name: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FcnEdgeError(
                f"another build of {name!r} (process {holder}) is writing to {path.parent}: "
                "wait for it to finish, or pass another --name"
            ) from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder finished and removed the file we opened: lock the new one
