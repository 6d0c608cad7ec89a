"""One build: source model -> precision model(s) -> verification -> artifact + sidecar.

Order matters for the user: everything that can be checked in a second (backend, shapes,
calibration folder, engines folder, whether the artifact is already up to date) is checked
before anything slow (export, calibration, verification), and nothing is written to the
engines folder until the artifact has passed its accuracy budget. Then all its files are
written under temporary names and renamed together, under a lock on the artifact's name.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import onnx

from ..atomic import write_errors
from ..errors import FcnEdgeError
from ..lock import build_lock
from ..backends.tensorrt import calibration_cache as trt_cache
from ..quantize import calibration, qdq
from .. import capabilities
from .. import sidecar as artifact
from ..backends import BACKENDS
from ..backends import onnxruntime as ort_backend
from . import batches, timing, verification_data
from ..scratch import scratch_folder
from .options import Backend, BuildOptions
from .source import SourceModel, external_data_files

TEMP_COPIES = (
    12  # copies of the model (prepared, quantized, observed, verification twins) a build's temporary folder holds, with slack
)


def choose_backend(requested: str) -> Backend:
    """auto: TensorRT when probe() finds a GPU and TensorRT, else the CPU runtimes installed, the fastest
    measured per artifact (ONNX Runtime, and OpenVINO with the [openvino] extra); say why either way."""
    if requested not in BACKENDS:
        raise FcnEdgeError(f"--backend {requested!r} is unknown: choose one of {', '.join(BACKENDS)}")
    from ..backends import openvino as ov_backend

    cpu = Backend("onnxruntime", "", {"name": "onnxruntime", "version": ort_backend.VERSION, "device": "CPU"})
    if requested == "onnxruntime":
        cpu.why = "ONNX Runtime (--backend onnxruntime)"
        return cpu
    openvino = ov_backend.probe()
    if requested == "openvino":
        if not openvino.available:
            raise FcnEdgeError(f"--backend openvino is not available here: {openvino.reason}")
        record = {"name": "openvino", "version": openvino.version, "device": "CPU", "bf16": openvino.bf16}
        return Backend("openvino", "OpenVINO (--backend openvino)", record, ("openvino",))
    from ..backends.tensorrt import probe

    found = probe()
    if found.available:
        record = {
            "name": "tensorrt",
            "version": found.version,
            "gpu_name": found.gpu_name,
            "compute_capability": found.compute_capability,
        }
        return Backend("tensorrt", f"TensorRT: {found.reason}", record)
    if requested == "tensorrt":
        raise FcnEdgeError(f"--backend tensorrt is not available here: {found.reason}; use --backend onnxruntime or auto")
    if openvino.available:
        cpu.record.update(openvino=openvino.version, bf16=openvino.bf16)
        cpu.cpu_backends = ("onnxruntime", "openvino")
        cpu.why = (
            f"the faster of ONNX Runtime and OpenVINO on the CPU, measured, because TensorRT is not available: {found.reason}"
        )
    else:
        cpu.why = f"ONNX Runtime on the CPU, because TensorRT is not available: {found.reason}"
    return cpu


def candidate_precisions(requested: str | None, backend: Backend, dla: bool = False) -> list[str]:
    """The asked precision, or for 'best' the fastest first, as the capability table says ``backend`` runs them."""
    bf16_cpu = bool(backend.record.get("bf16", False))
    return capabilities.candidates(requested, backend.name, backend.cpu_backends, bf16_cpu, dla)


OPENVINO_HINT = "install it with pip install -e '.[openvino]' in the fcn_edge folder"


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
    calib_set = _calibration_set(options) if _needs_calibration(options) else _optional_set(options)
    if options.verify_scenes == 0 and options.val_data in (None, "synthetic") and not (calib_set and calib_set.holdout):
        raise FcnEdgeError(
            f"nothing to verify on: --verify-scenes 0 and no hold-out images in --calib-dir {options.calib_dir} "
            f"(every {calibration.HOLDOUT_EVERY}th image is one): use --verify-scenes 1 or more"
        )
    inputs = {**source_inputs, "calibration_sha256": calib_set.sha256() if calib_set else None}
    val_data = verification_data.parse_spec(options.val_data, "--val-data", options.val_fraction, options.split_seed)
    if val_data is not None and val_data.name != "synthetic":  # the user's labelled files, checked and hashed now
        inputs["val_data_sha256"] = verification_data.dataset_sha256(val_data, options.val_split, options.val_images)
    created = artifact.check_engines_dir(options.engines_dir)
    temporary = f"the build's temporary folder in {tempfile.gettempdir()} (TMPDIR)"
    try:
        with build_lock(options.engines_dir, source_inputs["name"]), write_errors(temporary):
            return _build(make_source, inputs, calib_set, options, backend, log)
    except BaseException:
        if created and not any(options.engines_dir.iterdir()):
            options.engines_dir.rmdir()  # a failed first build leaves no empty engines folder behind
        raise


def _build(make_source: Callable[[Path], SourceModel], inputs: dict, calib_set, options: BuildOptions, backend: Backend,
           log: Callable[[str], None]) -> Built:  # fmt: skip
    """Skip when up to date, else build; runs under the artifact name's lock."""
    precisions = candidate_precisions(options.precision, backend, options.dla_core is not None and backend.name == "tensorrt")
    requested = options.precision or "best"  # an explicit --fp32 artifact must not satisfy a 'best' build
    versions = {"onnxruntime": ort_backend.VERSION, "onnx": onnx.__version__, "backend": backend.record}
    name = inputs["name"]
    for precision in precisions:
        paths = artifact.artifact_paths(options.engines_dir, name, precision, backend.name)
        key = _key(inputs, options, precision, requested, versions)
        existing = None if options.force else artifact.up_to_date(paths, key, log)
        # --val-data is hashed into the key; a dataset the build chose itself is rehashed here
        if existing and options.val_data is None and verification_data.verified_data_changed(existing, options.val_images):
            log(
                f"{paths.sidecar}: {existing['verification']['images']['data']}, which it was verified on, has changed: rebuilding"
            )
            existing = None
        if existing:
            return Built(paths, existing, True, existing["verification"]["table"], existing["verification"]["passed"])

    with scratch_folder("build") as tmp:  # one a killed build left is reclaimed by the next
        from .steps import PrecisionBuilder  # the quantization tools load slowly: only once a build really runs

        source = make_source(tmp)
        _check_room(tmp, source.path)
        log(f"backend: {backend.why}")
        trt_version = backend.record.get("version") if backend.name == "tensorrt" else trt_cache.DEFAULT_TRT_VERSION
        builder = PrecisionBuilder(source, options, calib_set, tmp, log, trt_version, target=backend.name,
                                   cpu_backends=backend.cpu_backends)  # fmt: skip
        for index, precision in enumerate(precisions):
            last = index == len(precisions) - 1
            paths = artifact.artifact_paths(options.engines_dir, name, precision, backend.name)
            key = _key(inputs, options, precision, requested, versions)
            verified = builder.make(precision)
            # every file the build writes meets the budget: the TensorRT Q/DQ model of an INT8 build too
            problems = [f"{row.label}: {problem}" for row in verified.figures for problem in options.budget.problems(row)]
            problems += verified.sidecar_details.get("problems", [])  # e.g. an INT8 model the search had to make all float
            no_int8 = verified.sidecar_details.get("no_int8")  # never FP32 under an INT8 name, whatever the flags
            not_faster = verified.speed != timing.FASTER  # a lower precision costs accuracy: only a measured gain pays for it
            if (problems or not_faster or no_int8) and not last and not options.precision:
                why = "; ".join(problems + [no_int8] * bool(no_int8)) or f"{_speed(verified)}, not faster beyond the spread"
                log(f"{precision.upper()} is not the one ({why}): trying {precisions[index + 1].upper()}")
                continue
            table = builder.table(verified, precision)
            log(table)
            if not_faster and options.precision == precision and precision != "fp32":
                log(f"{precision.upper()} here is {_speed(verified)}: --fp32 is "
                    f"{'faster' if verified.speed == timing.SLOWER else 'as fast'} on this machine (without a precision flag "
                    "the build picks a lower precision only when it is faster beyond the spread)")  # fmt: skip
            if problems and not options.allow_accuracy_drop:
                raise FcnEdgeError(
                    f"the {precision.upper()} build misses the accuracy budget ({'; '.join(problems)}); nothing written to "
                    f"{options.engines_dir}: raise --max-miou-drop or lower --min-agreement, or pass --allow-accuracy-drop"
                )
            if no_int8:
                raise FcnEdgeError(
                    f"{no_int8}: it would be the FP32 model under an INT8 name; nothing written to {options.engines_dir}: "
                    "build --fp32 (or --fp16) instead"
                )
            if len(options.batch_sizes) > 1:
                verified.batches = builder.verify_batches(verified)
                batch_table = batches.table(verified.batches)
                log(batch_table)
                table += "\n\n" + batch_table
            sidecar = builder.write(verified, paths, backend, key, inputs, versions, table, not problems)
            return Built(paths, sidecar, False, table, not problems)
    raise AssertionError("unreachable: the last precision always returns or raises")


def _speed(verified) -> str:
    """'0.98x the FP32 latency (IQR 0.95-1.02): within noise', from the row that decides."""
    row = verified.figures[0]
    spread = f" (IQR {row.ratio_iqr[0]:.2f}-{row.ratio_iqr[1]:.2f})" if row.ratio_iqr else ""
    return f"{row.latency_ratio:.2f}x the FP32 latency{spread}: {verified.speed}"


def _key(inputs: dict, options: BuildOptions, precision: str, requested: str, versions: dict) -> str:
    """The artifact's key; an INT8 one also holds the weight bits per placement, so that INT8 artifacts
    quantized before ONNX Runtime's weights became 7-bit (:mod:`..quantize.qdq`) are rebuilt, not kept."""
    recipe = {"weight_bits": qdq.WEIGHT_BITS} if precision == "int8" else {}
    return artifact.build_key(
        inputs, {**options.recorded(), "precision": precision, "requested": requested, "versions": versions, **recipe}
    )


def _check_room(tmp: Path, model: Path) -> None:
    """Say a full temporary folder now: ONNX Runtime's optimiser writes its file from C++ and truncates it silently."""
    size = sum(p.stat().st_size for p in [model, *external_data_files(model, onnx.load(str(model), load_external_data=False))])
    free = shutil.disk_usage(tmp).free
    if free < TEMP_COPIES * size:
        raise FcnEdgeError(
            f"the build's temporary folder {tmp.parent} has {free / 1e6:.1f} MB free and a build of this model needs about "
            f"{TEMP_COPIES * size / 1e6:.1f} MB: free some space, or set TMPDIR to a folder on a bigger disk"
        )


def _needs_calibration(options: BuildOptions) -> bool:
    return options.precision in (None, "int8")


def _calibration_set(options: BuildOptions) -> calibration.CalibrationSet:
    calib_data = verification_data.parse_spec(options.calib_data, "--calib-data", options.val_fraction, options.split_seed)
    return verification_data.calibration_set(options.calib_dir, calib_data, options.calib_images)


def _optional_set(options: BuildOptions) -> calibration.CalibrationSet | None:
    """FP16/FP32 builds verify on a calibration hold-out when there is one; a named --calib-data must exist."""
    if options.calib_data:
        return _calibration_set(options)
    try:
        return _calibration_set(options)
    except FcnEdgeError:
        return None
