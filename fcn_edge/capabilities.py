"""Which backend runs which precision, on what, and what it needs: the one table every stage reads.

The build asks it which precisions to try and which runtimes verify each, :func:`open_runner
<fcn_edge.backends.open_runner>` which runtime runs an artifact, the benchmark which rows to time and
the doctor what to report; none of them lists precisions of its own. Torch-free and import-free, so
the lowest layer (sidecar, runners) can read it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FcnEdgeError

PRECISIONS = ("int8", "fp16", "bf16", "fp32")  # every precision an artifact may have, fastest first
OPENVINO_INSTALL = "pip install -e '.[openvino]'"
TENSORRT_INSTALL = "pip install -e '.[gpu-cu12]' and a CUDA GPU"
BF16_CPU = "a CPU with BF16 instructions (AVX512_BF16 or AMX)"


@dataclass(frozen=True)
class Capability:
    """One backend running one precision."""

    backend: str
    precision: str
    runs: str  # what runs it, in words (the doctor's and the benchmark's label)
    needs: str  # what it needs beyond the core install; "" for nothing
    tried: bool = True  # tried by the automatic choice (--int8/--fp16/... not given)
    on_dla: bool = False  # runs on a Jetson's DLA too (TensorRT)
    float_ops: str = "fp32"  # the precision its float ops run in: what a runner is opened with (OpenVINO)


TABLE = (
    Capability("tensorrt", "int8", "TensorRT engine from the Q/DQ model", TENSORRT_INSTALL, on_dla=True),
    Capability("tensorrt", "fp16", "TensorRT engine, FP16 kernels", TENSORRT_INSTALL, on_dla=True, float_ops="fp16"),
    Capability("tensorrt", "fp32", "TensorRT engine, FP32 (TF32 off)", TENSORRT_INSTALL),
    Capability("onnxruntime", "int8", "ONNX Runtime CPU, Q/DQ .onnx on integer kernels", ""),
    # FP16 gives no speed on ONNX Runtime's CPU kernels: built when asked, never tried by the automatic choice
    Capability("onnxruntime", "fp16", "ONNX Runtime CPU, FP16 .onnx", "", tried=False, float_ops="fp16"),
    Capability("onnxruntime", "fp32", "ONNX Runtime CPU, FP32 .onnx", ""),
    Capability("openvino", "int8", "OpenVINO CPU, the same Q/DQ .onnx", OPENVINO_INSTALL),
    Capability(
        "openvino", "bf16", "OpenVINO CPU, the FP32 .onnx run in BF16", f"{OPENVINO_INSTALL} and {BF16_CPU}", float_ops="bf16"
    ),
    Capability("openvino", "fp32", "OpenVINO CPU, FP32 .onnx", OPENVINO_INSTALL),
)
LABELS = {"tensorrt": "TensorRT", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
CPU_BACKENDS = ("onnxruntime", "openvino")  # run the same .onnx files; the build times each installed one


def find(backend: str, precision: str) -> Capability | None:
    return next((c for c in TABLE if c.backend == backend and c.precision == precision), None)


def precisions(backend: str) -> tuple[str, ...]:
    """What ``backend`` runs, fastest first."""
    return tuple(c.precision for c in TABLE if c.backend == backend)


def runners_of(precision: str, backends: tuple[str, ...]) -> list[str]:
    """Those of ``backends`` that run ``precision``, in the order given."""
    return [b for b in backends if find(b, precision) is not None]


def float_ops(backend: str, precision: str) -> str:
    """The precision ``backend``'s float ops run in for a ``precision`` artifact (an INT8 model's float ops: FP32)."""
    found = find(backend, precision)
    return found.float_ops if found else "fp32"


def candidates(requested: str | None, target: str, cpu_backends: tuple[str, ...], bf16_cpu: bool, dla: bool = False) -> list[str]:
    """The precisions a build tries, fastest first: the one asked for (refused, saying what it needs, where
    nothing here runs it), else every precision the table marks ``tried`` that a runtime here runs."""
    backends = (target,) if target == "tensorrt" else cpu_backends

    def available(c: Capability) -> bool:
        return c.backend in backends and (not dla or c.on_dla) and (c.precision != "bf16" or bf16_cpu)

    if requested is not None:
        if requested not in PRECISIONS:
            raise FcnEdgeError(f"precision {requested!r} is unknown: choose one of {', '.join(PRECISIONS)}")
        if not any(available(c) for c in TABLE if c.precision == requested):
            raise FcnEdgeError(_why_not(requested, target, backends, bf16_cpu, dla))
        return [requested]
    return [p for p in PRECISIONS if any(available(c) and c.tried for c in TABLE if c.precision == p)]


def _why_not(precision: str, target: str, backends: tuple[str, ...], bf16_cpu: bool, dla: bool) -> str:
    if dla:
        on_dla = sorted({c.precision for c in TABLE if c.on_dla}, key=PRECISIONS.index)
        return (f"--{precision} cannot run on DLA, which runs {' and '.join(p.upper() for p in on_dla)} only: "
                f"use {' or '.join('--' + p for p in on_dla)}, or drop --dla-core")  # fmt: skip
    if precision == "bf16":
        where = "this CPU has none" if "openvino" in backends and not bf16_cpu else f"install it with {OPENVINO_INSTALL}"
        return f"--bf16 runs on OpenVINO on {BF16_CPU} only: {where}; use --fp32 or --int8"
    runners = " and ".join(LABELS[c.backend] for c in TABLE if c.precision == precision)
    here = " and ".join(LABELS[b] for b in backends)
    others = [f"--{p}" for p in PRECISIONS if any(c.backend in backends and c.precision == p for c in TABLE)]
    return f"--{precision} is for {runners}: {here} on this machine runs {', '.join(others[:-1])} or {others[-1]}"


def runtime_for(precision: str | None, built_for: str | None, openvino_installed: bool) -> str:
    """Which CPU runtime runs a .onnx artifact under --backend auto: the one its build measured fastest
    (``built_for``, from the sidecar) where installed, OpenVINO for what only it runs, else ONNX Runtime."""
    if precision is not None and find("onnxruntime", precision) is None and find("openvino", precision) is not None:
        return "openvino"  # nothing else runs it on a CPU; open_runner says what to install if missing
    if built_for == "openvino" and openvino_installed:
        return "openvino"
    return "onnxruntime"
