"""One build: source model -> precision model(s) -> verification -> artifact + sidecar.

Order matters for the user: everything that can be checked in a second (backend, shapes,
calibration folder, engines folder, whether the artifact is already up to date) is checked
before anything slow (export, calibration, verification), and nothing is written to the
engines folder until the artifact has passed its accuracy budget.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import onnx

from ..errors import FcnEdgeError
from ..quantize import calibration, trt_cache
from .. import sidecar as artifact
from ..backends import BACKENDS
from ..backends import onnxruntime as ort_backend
from .options import Backend, BuildOptions
from .source import SourceModel



def choose_backend(requested: str) -> Backend:
    """auto: TensorRT when probe() finds a GPU and TensorRT, else ONNX Runtime; say why either way."""
    if requested not in BACKENDS:
        raise FcnEdgeError(f"--backend {requested!r} is unknown: choose one of {', '.join(BACKENDS)}")
    cpu = Backend("onnxruntime", "", {"name": "onnxruntime", "version": ort_backend.VERSION, "device": "CPU"})
    if requested == "onnxruntime":
        cpu.why = "ONNX Runtime (--backend onnxruntime)"
        return cpu
    from ..backends.tensorrt import probe

    found = probe()
    if found.available:
        facts = {"name": "tensorrt", "version": found.version, "gpu_name": found.gpu_name, "compute_capability": found.compute_capability}
        return Backend("tensorrt", f"TensorRT: {found.reason}", facts)
    if requested == "tensorrt":
        raise FcnEdgeError(f"--backend tensorrt is not available here: {found.reason}; use --backend onnxruntime or auto")
    cpu.why = f"ONNX Runtime on the CPU, because TensorRT is not available: {found.reason}"
    return cpu


def candidate_precisions(requested: str | None, backend: str) -> list[str]:
    """The asked precision, or for 'best' the fastest first (FP16 gives no speed on ORT's CPU kernels)."""
    if requested:
        return [requested]
    return ["int8", "fp16", "fp32"] if backend == "tensorrt" else ["int8", "fp32"]


@dataclass
class Built:
    paths: artifact.ArtifactPaths
    sidecar: dict[str, Any]
    skipped: bool
    table: str
    passed: bool


def build(
    make_source: Callable[[Path], SourceModel],
    source_inputs: dict[str, str],
    options: BuildOptions,
    backend: Backend,
    log: Callable[[str], None] = print,
) -> Built:
    """Build the asked precision (or the best one) for ``make_source``'s model; see the module docstring for order.

    ``make_source(tmp_dir)`` produces the FP32 model (exporting a checkpoint when needed);
    ``source_inputs`` are the hashes that identify it without producing it (for the skip check).
    """
    calib_set = calibration.find_calibration_set(options.calib_dir) if _needs_calibration(options) else _optional_set(options)
    inputs = {**source_inputs, "calibration_sha256": calib_set.sha256() if calib_set else None}
    precisions = candidate_precisions(options.precision, backend.name)
    requested = options.precision or "best"  # an explicit --fp32 artifact must not satisfy a 'best' build
    versions = {"onnxruntime": ort_backend.VERSION, "onnx": onnx.__version__, "backend": backend.facts}
    artifact.check_engines_dir(options.engines_dir)
    name = source_inputs["name"]
    for precision in precisions:
        paths = artifact.artifact_paths(options.engines_dir, name, precision, backend.name)
        key = artifact.build_key(inputs, {**options.recorded(), "precision": precision, "requested": requested, "versions": versions})
        existing = None if options.force else artifact.up_to_date(paths, key)
        if existing:
            return Built(paths, existing, True, existing["verification"]["table"], existing["verification"]["passed"])

    with tempfile.TemporaryDirectory(prefix="fcn_edge_build_") as tmp_name:
        tmp = Path(tmp_name)
        from .steps import Work  # the quantization tools load slowly: only once a build really runs

        source = make_source(tmp)
        log(f"backend: {backend.why}")
        work = Work(source, options, calib_set, tmp, log, backend.facts.get("version") if backend.name == "tensorrt" else trt_cache.DEFAULT_TRT_VERSION)
        for index, precision in enumerate(precisions):
            last = index == len(precisions) - 1
            paths = artifact.artifact_paths(options.engines_dir, name, precision, backend.name)
            key = artifact.build_key(inputs, {**options.recorded(), "precision": precision, "requested": requested, "versions": versions})
            outcome = work.make(precision)
            problems = options.budget.problems(outcome.figures[0])
            slower = (outcome.figures[0].latency_ratio or 0) >= 1
            if (problems or slower) and not last and not options.precision:
                why = "; ".join(problems) if problems else f"{outcome.figures[0].latency_ratio:.2f}x the FP32 latency"
                log(f"{precision.upper()} is not the one ({why}): trying {precisions[index + 1].upper()}")
                continue
            table = work.table(outcome, precision)
            log(table)
            if problems and not options.allow_accuracy_drop:
                raise FcnEdgeError(
                    f"the {precision.upper()} build misses the accuracy budget ({'; '.join(problems)}); nothing written to "
                    f"{options.engines_dir}: raise --max-miou-drop or lower --min-agreement, or pass --allow-accuracy-drop"
                )
            sidecar = work.write(outcome, paths, backend, key, inputs, versions, table, not problems)
            return Built(paths, sidecar, False, table, not problems)
    raise AssertionError("unreachable: the last precision always returns or raises")


def _needs_calibration(options: BuildOptions) -> bool:
    return options.precision in (None, "int8")


def _optional_set(options: BuildOptions) -> calibration.CalibrationSet | None:
    try:
        return calibration.find_calibration_set(options.calib_dir)
    except FcnEdgeError:
        return None
