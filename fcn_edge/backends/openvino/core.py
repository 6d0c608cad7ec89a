"""What every OpenVINO model of the project is compiled with, and whether OpenVINO is here at all.

``import openvino`` happens only in :func:`import_openvino`, so the package imports on a machine
without the [openvino] extra. Three settings are explicit because OpenVINO's defaults are wrong
for this project:

- **precision.** On a CPU with AVX512_BF16 (or AMX) OpenVINO silently runs FP32 models in BF16.
  Here FP32 means FP32, and BF16 is its own precision with its own verification row.
- **shape.** A model compiled for the frame's exact size ran faster than with the open
  (dynamic) input shape (docs/cpu.md, "Figures behind the code"): the caller compiles once per size (see
  :class:`fcn_edge.backends.openvino.runner.OvRunner`).
- **threads and streams.** One stream of ``threads`` threads, latency hint: one frame at a time;
  or, for a runner with frames in flight, ``streams`` streams sharing the threads, throughput
  hint; threads not pinned to cores (measured under a camera's pacing, docs/cpu.md).

Compiled models are cached on disk (``cache_dir``): a second start at a size seen before
loads in a fraction of the time (docs/cpu.md, "Figures behind the code"). The
cache holds one blob per model, frame size and settings (about 3 MB each for the default
model), so it is bounded: each entry is a folder named by its model file, shape and
settings, touched when used, and after each compile the least recently used entries are
removed until the cache is within ``$FCN_EDGE_CACHE_MB`` (default 256; 0 turns the disk cache
off). Location: ``$FCN_EDGE_CACHE/openvino``, else ``$XDG_CACHE_HOME/fcn_edge/openvino``, else
``~/.cache/fcn_edge/openvino``.

Processes share the cache (one process per camera is common), and OpenVINO neither writes a blob
atomically nor checks it before mapping it: a process that loaded a blob while another was still
writing it died of SIGBUS (2 of 24 processes started 0.4 s apart on one new model). So a compile
holds its entry's lock file (``flock``, released by the kernel if the process dies); the next
process waits, then loads the finished blob. Trimming skips an entry whose lock is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ...errors import FcnEdgeError
from ...paths import cache_folder

FLOAT_OPS = {"fp32": "f32", "bf16": "bf16"}  # capabilities.float_ops -> OpenVINO's inference precision hint
INSTALL = "pip install -e '.[openvino]'"
CACHE_MB_ENV = "FCN_EDGE_CACHE_MB"
DEFAULT_CACHE_MB = 256


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as error:
        raise FcnEdgeError(f"OpenVINO is not installed ({error}): {INSTALL}, or use --backend onnxruntime") from None
    return openvino


def cache_limit_bytes() -> int:
    """$FCN_EDGE_CACHE_MB in bytes (default 256 MB; 0: no disk cache); one line when it is not a whole number."""
    text = os.environ.get(CACHE_MB_ENV, "").strip() or str(DEFAULT_CACHE_MB)
    if not text.isdigit():
        raise FcnEdgeError(f"{CACHE_MB_ENV}={text!r} is not a whole number of megabytes: set it like 256 (0: no disk cache)")
    return int(text) << 20


def default_cache_dir() -> Path | None:
    """Where compiled models are kept: $FCN_EDGE_CACHE, else the user's cache folder; None when $FCN_EDGE_CACHE_MB is 0."""
    if cache_limit_bytes() == 0:
        return None
    return cache_folder("openvino")


@dataclass(frozen=True)
class OvProbe:
    available: bool
    version: str | None
    reason: str
    bf16: bool  # the CPU runs BF16 natively (AVX512_BF16 or AMX)


def probe() -> OvProbe:
    """Is OpenVINO importable, which version, and can this CPU run BF16? Never raises."""
    try:
        openvino = import_openvino()
        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except FcnEdgeError as error:
        return OvProbe(False, None, str(error), False)
    version = openvino.__version__.split("-")[0]
    return OvProbe(True, version, f"OpenVINO {version} on the CPU", "BF16" in capabilities)


def check_precision(precision: str) -> str:
    """OpenVINO's inference precision for ``precision``; FcnEdgeError if unknown or the CPU cannot run it."""
    if precision not in FLOAT_OPS:
        raise FcnEdgeError(f"OpenVINO precision {precision!r} is unknown: choose one of {', '.join(FLOAT_OPS)}")
    if precision == "bf16" and not probe().bf16:
        raise FcnEdgeError("this CPU has no BF16 instructions (AVX512_BF16 or AMX): use an FP32 or INT8 artifact")
    return FLOAT_OPS[precision]


def compile_config(threads: int, precision: str, streams: int = 1) -> dict[str, Any]:
    """The properties every compiled model of the project gets (see the module docstring); ``streams`` > 1 splits
    the threads between that many frames in flight."""
    openvino = import_openvino()
    props, hints = openvino.properties, openvino.properties.hint
    mode = hints.PerformanceMode.LATENCY if streams == 1 else hints.PerformanceMode.THROUGHPUT
    return {
        hints.inference_precision: check_precision(precision),
        hints.performance_mode: mode,
        props.inference_num_threads: threads,
        props.num_streams: streams,
        # unpinned: a pinned thread waits for its core when anything else runs there; pinned was slower in 3 of 5
        # runs under a camera's pacing, with the longer tails (benchmarks/cpu_threads.py, docs/cpu.md)
        hints.enable_cpu_pinning: False,
    }


def new_core(cache_dir: Path | None) -> Any:
    """An OpenVINO Core; ``cache_dir`` (None: no disk cache) is created now, so a folder that cannot be is one line
    before the first frame. ``compile_for_shape`` caches there."""
    openvino = import_openvino()
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FcnEdgeError(
                f"cannot create the OpenVINO cache folder {cache_dir} ({error.strerror}): set FCN_EDGE_CACHE to a writable folder"
            ) from None
    return openvino.Core()


def compile_for_shape(core: Any, model: Any, shape: list[int], config: dict[str, Any], cache_dir: Path | None = None,
                      source: Path | None = None) -> Any:  # fmt: skip
    """``model`` (read once, from ``source``) compiled for one static input shape; the model itself is left open-shaped.
    With ``cache_dir``, through its cache entry for this file, shape and config, then the cache is trimmed."""
    static = model.clone()
    static.reshape({static.inputs[0]: shape})
    if cache_dir is None or source is None:
        return core.compile_model(static, "CPU", config)
    entry = cache_entry(cache_dir, source, shape, config)
    with entry_lock(entry):
        compiled = core.compile_model(static, "CPU", {**config, import_openvino().properties.cache_dir: str(entry)})
    trim_cache(cache_dir, cache_limit_bytes(), keep=entry)
    return compiled


LOCK_FILE = ".lock"


@contextlib.contextmanager
def entry_lock(entry: Path, wait: bool = True) -> Iterator[bool]:
    """Hold ``entry``'s lock for the block (see the module docstring); with ``wait`` False, yields False at once when
    another process holds it."""
    fd = os.open(entry / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def cache_entry(cache_dir: Path, source: Path, shape: list[int], config: dict[str, Any]) -> Path:
    """The folder caching ``source`` compiled at ``shape`` with ``config``, created and marked as just used."""
    facts = source.stat()
    key = repr((os.fsencode(source.resolve()), facts.st_size, facts.st_mtime_ns, list(shape), sorted(map(str, config.items()))))
    entry = cache_dir / hashlib.sha256(key.encode()).hexdigest()[:20]
    entry.mkdir(exist_ok=True)
    os.utime(entry)  # the most recently used: evicted last
    return entry


def trim_cache(cache_dir: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used entries of ``cache_dir`` (by their folder's time) until it holds at most
    ``limit`` bytes; ``keep`` (the entry in use) stays. Files OpenVINO's own cache_dir left at the top (releases
    before the bound) go first. The removed paths."""
    entries = []
    try:
        children = list(os.scandir(cache_dir))
    except OSError:
        return []
    for child in children:
        try:
            if child.is_dir(follow_symlinks=False):
                size = sum(f.stat().st_size for f in os.scandir(child.path) if f.is_file(follow_symlinks=False))
                entries.append((child.stat().st_mtime, size, Path(child.path)))
            elif child.is_file(follow_symlinks=False):
                entries.append((0.0, child.stat().st_size, Path(child.path)))  # unbounded-cache leftovers: oldest
        except OSError:
            continue
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if keep is not None and path == keep:
            continue
        if path.is_dir():
            if not remove_unlocked(path):
                continue
        else:
            path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed


def remove_unlocked(entry: Path) -> bool:
    """Remove ``entry`` unless another process is compiling into it (or it is already gone); whether it was."""
    try:
        with entry_lock(entry, wait=False) as free:
            if free:
                shutil.rmtree(entry, ignore_errors=True)
            return free
    except OSError:
        return False
