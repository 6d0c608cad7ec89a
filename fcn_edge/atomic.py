"""Atomic file writes: an artifact is either complete or absent, never half-written.

A file is written under a hidden temporary name beside its target (same folder, so the
same disk) and renamed into place once complete; files that belong together (an artifact,
its extras, its sidecar) are renamed together, after all of them were written. A full
disk or a read-only folder becomes one line naming the file, not a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from .errors import FcnEdgeError

# Only writing raises these, so a block that also reads files cannot mislabel a read error.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


@contextlib.contextmanager
def write_errors(where: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk, a quota or a read-only file system inside the block into one line naming ``where``.

    ``where``, not the error's file name: that may be a hidden temporary file or, for a copy, the source.
    """
    try:
        yield
    except OSError as error:
        if error.errno not in WRITE_ERRNOS:
            raise
        raise FcnEdgeError(f"cannot write {where}: {error.strerror}; free some space or choose another folder") from None


def check_writable(folder: str | os.PathLike, flag: str) -> None:
    """One line naming ``flag`` unless ``folder`` exists and a file can be created in it; checked before slow work."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FcnEdgeError(f"{flag}: folder {folder} {_missing(folder)}")
    # A real file, not os.access: root passes every permission check, yet not a read-only mount.
    os.unlink(temporary_beside(folder / ".fcn_edge_probe", flag=flag))


def ensure_folder(folder: str | os.PathLike, flag: str) -> Path:
    """Create ``folder`` (and its parents) if needed; one line naming ``flag`` if it cannot be, or cannot be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FcnEdgeError(f"{flag}: cannot create folder {folder} ({error.strerror}); choose another path") from None
    check_writable(folder, flag)
    return folder


def check_target(path: str | os.PathLike, flag: str = "output") -> None:
    """One line unless ``path`` can become a file: not a folder, in an existing folder."""
    path = Path(path)
    if path.is_dir():
        raise FcnEdgeError(f"{flag} {path} is a folder: give a file name")
    if not path.parent.is_dir():
        raise FcnEdgeError(f"{flag} {path}: folder {path.parent} {_missing(path.parent)}")


def check_distinct(inputs: Mapping[str, str | os.PathLike | None], outputs: Mapping[str, str | os.PathLike | None]) -> None:
    """One line naming both flags when an output is an input or another output of the same run; checked before any work.

    Paths are compared resolved (relative parts, ``..`` and symlinks followed) and, where both exist, as the same
    file (a hard link). A ``None`` path (a flag not given) is skipped.
    """
    seen: list[tuple[str, Path, bool]] = [(flag, Path(path), True) for flag, path in inputs.items() if path is not None]
    for flag, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        for other, earlier, is_input in seen:
            if _same_path(path, earlier):
                role = "an input" if is_input else "another output"
                raise FcnEdgeError(
                    f"{flag} {path} is the same file as {other} {earlier} ({role} of this run): write {flag} to another path"
                )
        seen.append((flag, path, False))


def _same_path(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _missing(folder: Path) -> str:
    return (
        "is a file, not a folder; choose another path" if folder.exists() else "does not exist; create it or choose another path"
    )


def check_output(path: str | os.PathLike, flag: str) -> None:
    """``check_target`` and a file really created in its folder: for outputs written only after a long run."""
    check_target(path, flag)
    check_writable(Path(path).parent, f"{flag} {path}")


def temporary_beside(target: Path, suffix: str = ".tmp", flag: str = "output") -> Path:
    """A new, hidden, empty file next to ``target`` with the user's usual mode (mkstemp makes 0600)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    except OSError as error:
        raise FcnEdgeError(f"{flag}: cannot create a file in {target.parent} ({error.strerror}); choose another folder") from None
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextlib.contextmanager
def atomic_files(targets: Sequence[str | os.PathLike]) -> Iterator[dict[Path, Path]]:
    """Yield {target: temporary path}; rename them all into place, in order, only if the block succeeds.

    With several targets the last one describes the others (a sidecar): its old version is
    removed before any other is replaced and the new one is renamed last, so it never vouches
    for a mix of old and new files. On any failure (a full disk, Ctrl-C) every temporary
    file is removed and the targets are as they were.
    """
    paths = [Path(t) for t in targets]
    for target in paths:
        check_target(target)
    staged: dict[Path, Path] = {}
    try:
        with write_errors(paths[0] if len(paths) == 1 else f"the files of {paths[0].name} in {paths[0].parent}"):
            for target in paths:
                staged[target] = temporary_beside(target)
            yield staged
            if len(paths) > 1:
                paths[-1].unlink(missing_ok=True)
            for target, tmp in staged.items():
                os.replace(tmp, target)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    with atomic_files([path]) as staged:
        yield staged[Path(path)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def finite(value):
    """``value`` with every non-finite float in it (nan: not measurable; inf), at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(value, indent: int | None = 2, **kwargs) -> str:
    """Strict JSON (no NaN or Infinity, which most parsers refuse): a figure that could not be measured is null."""
    return json.dumps(finite(value), indent=indent, allow_nan=False, **kwargs) + "\n"


def write_json_atomic(path: str | os.PathLike, value, indent: int | None = 2) -> None:
    write_text_atomic(path, json_text(value, indent))
