"""One package per backend, each holding how an artifact is made for it and how it is run.

:func:`open_runner` is the one place that picks a backend for a file, so the stream loop
and the benchmarks never branch on the backend. Backend packages are imported here
lazily: a CPU-only install never imports TensorRT, CUDA or OpenVINO.

For a .onnx file ``auto`` follows the build: its sidecar names the CPU backend the build
measured fastest (OpenVINO or ONNX Runtime) and the precision (BF16 runs on OpenVINO only).
Without a sidecar, or without OpenVINO installed, ONNX Runtime runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..capabilities import runtime_for
from ..errors import FcnEdgeError
from ..runner import Runner
from ..sidecar import Sidecar

BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino")
TENSORRT_SUFFIXES = (".engine", ".plan")


def backend_for(path: Path, backend: str = "auto", sidecar: Sidecar | None = None) -> str:
    """The backend that runs ``path``: the one asked for, else by file type and the build's sidecar
    (read here unless given; the capability table decides)."""
    if backend not in BACKENDS:
        raise FcnEdgeError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if path.suffix in TENSORRT_SUFFIXES:
        return "tensorrt"
    if path.suffix == ".onnx":
        sidecar = sidecar or Sidecar.beside(path)
        return runtime_for(sidecar.precision, sidecar.built_for, _openvino_installed())
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
    inflight: int = 1,
) -> Runner:
    """An inactive runner for ``path``: TensorRT for .engine/.plan files; ONNX Runtime or OpenVINO for .onnx.

    Each backend takes the options that mean something to it (ONNX Runtime: ``threads``,
    ``providers``, ``optimize``, ``inflight``; OpenVINO: ``threads``, ``inflight``, and the precision
    from the sidecar; ``inflight``: frames run at once, on a stream (OpenVINO) or session (ONNX Runtime)
    each up to the threads; TensorRT: ``cuda_binding``, one frame or batch at a time whatever ``inflight`` asks). The runner's ``classes`` and ``palette`` come
    from the model's metadata or else from the build sidecar beside it; None when neither has them.
    """
    path = Path(path)
    sidecar = Sidecar.beside(path)  # the one read of it in this open
    chosen = backend_for(path, backend, sidecar)
    if chosen == "tensorrt":
        from . import tensorrt

        runner: Runner = tensorrt.make_runner(path, cuda_binding=cuda_binding, check_inputs=check_inputs, sidecar=sidecar)
    elif chosen == "openvino":
        from ..capabilities import float_ops
        from . import openvino
        from .onnxruntime import default_threads

        precision = float_ops("openvino", sidecar.precision) if sidecar.precision else "fp32"
        runner = openvino.make_runner(path, threads=threads or default_threads(), precision=precision,
                                      check_inputs=check_inputs, inflight=inflight)  # fmt: skip
    else:
        from . import onnxruntime

        runner = onnxruntime.make_runner(path, threads=threads, providers=providers, check_inputs=check_inputs,
                                         optimize=optimize, inflight=inflight)  # fmt: skip
    if runner.metadata is not None:
        runner.classes, runner.palette = list(runner.metadata.classes), list(runner.metadata.palette)
    else:
        runner.classes, runner.palette = sidecar.classes()
    return runner


def _openvino_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("openvino") is not None
