"""One package per backend, each holding how an artifact is made for it and how it is run.

:func:`open_runner` is the one place that picks a backend for a file, so the stream loop
and the benchmarks never branch on the backend. Backend packages are imported here
lazily: a CPU-only install never imports TensorRT or CUDA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import FcnEdgeError
from ..runner import Runner
from ..sidecar import sidecar_classes

BACKENDS = ("auto", "onnxruntime", "tensorrt")
TENSORRT_SUFFIXES = (".engine", ".plan")


def backend_for(path: Path, backend: str = "auto") -> str:
    """The backend that runs ``path``: the one asked for, else by file type."""
    if backend not in BACKENDS:
        raise FcnEdgeError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if path.suffix in TENSORRT_SUFFIXES:
        return "tensorrt"
    if path.suffix == ".onnx":
        return "onnxruntime"
    raise FcnEdgeError(
        f"cannot tell the backend of {path} from its suffix: use a .onnx (ONNX Runtime) or "
        f".engine/.plan (TensorRT) file, or pass --backend"
    )


def open_runner(
    path: str | Path,
    backend: str = "auto",
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    cuda_binding: str = "auto",
    check_inputs: bool = True,
    optimize: bool = True,
) -> Runner:
    """An inactive runner for ``path``: TensorRT for .engine/.plan files, ONNX Runtime for .onnx.

    Each backend takes the options that mean something to it (ONNX Runtime: ``threads``,
    ``providers``, ``optimize``; TensorRT: ``cuda_binding``). The runner's ``classes`` and
    ``palette`` come from the model's metadata or else from the build sidecar beside it;
    None when neither has them.
    """
    path = Path(path)
    if backend_for(path, backend) == "tensorrt":
        from . import tensorrt

        runner: Runner = tensorrt.make_runner(path, cuda_binding=cuda_binding, check_inputs=check_inputs)
    else:
        from . import onnxruntime

        runner = onnxruntime.make_runner(path, threads=threads, providers=providers, check_inputs=check_inputs, optimize=optimize)
    if runner.metadata is not None:
        runner.classes, runner.palette = list(runner.metadata.classes), list(runner.metadata.palette)
    else:
        runner.classes, runner.palette = sidecar_classes(path)
    return runner
