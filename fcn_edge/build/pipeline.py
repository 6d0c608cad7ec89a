"""One build: source model -> precision model(s) -> verification -> artifact + sidecar.

Order matters for the user: everything that can be checked in a second (backend, shapes,
calibration folder, engines folder, whether the artifact is already up to date) is checked
before anything slow (export, calibration, verification), and nothing is written to the
engines folder until the artifact has passed its accuracy budget.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import onnx

from ..atomic import atomic_path, write_bytes_atomic
from ..errors import FcnEdgeError
from ..quantize import calibration, trt_cache
from . import artifact
from . import onnxruntime as ort_backend

if TYPE_CHECKING:  # the modules that pull in torch load only once a build really runs (the skip check is fast)
    from ..quantize import statistics
    from .source import SourceModel

BACKENDS = ("auto", "tensorrt", "onnxruntime")
TUNING_IMAGES = 8  # calibration images the sensitivity pass ranks layers on


@dataclass(frozen=True)
class Budget:
    max_miou_drop: float = 1.0  # mIoU points (x100) below FP32, where ground truth exists
    min_agreement: float = 98.0  # percent of pixels with the FP32 label

    def problems(self, figures) -> list[str]:
        """What ``figures`` (a verify.Figures) break, as phrases; empty when within budget."""
        found = []
        if figures.miou_drop is not None and figures.miou_drop > self.max_miou_drop:
            found.append(f"mIoU drop {figures.miou_drop:.2f} > {self.max_miou_drop:g} points")
        if figures.agreement is not None and 100 * figures.agreement < self.min_agreement:
            found.append(f"label agreement {100 * figures.agreement:.2f}% < {self.min_agreement:g}%")
        return found


@dataclass
class BuildOptions:
    precision: str | None = None  # int8 | fp16 | fp32; None: the fastest that meets the budget
    backend: str = "auto"
    calib_dir: Path = calibration.DEFAULT_DIR
    calib_method: str = "entropy"
    calib_size: tuple[int, int] = calibration.DEFAULT_SIZE
    engines_dir: Path = Path("engines")
    budget: Budget = field(default_factory=Budget)
    allow_accuracy_drop: bool = False
    force: bool = False
    min_shape: tuple[int, ...] | None = None
    opt_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None
    workspace_mb: int | None = None
    opt_level: int | None = None
    dla_core: int | None = None
    timing_cache: Path | None = None
    verify_scenes: int = 32
    verify_size: tuple[int, int] = (256, 512)  # (H, W)
    latency_size: tuple[int, int] = (512, 1024)
    progress: bool = True

    def recorded(self) -> dict[str, Any]:
        """The options that change the artifact (the sidecar's ``options``, part of its key)."""
        skip = {"force", "progress", "engines_dir", "allow_accuracy_drop", "precision", "backend"}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        values["calib_dir"] = str(self.calib_dir)
        values["timing_cache"] = str(self.timing_cache) if self.timing_cache else None
        return values


@dataclass
class Backend:
    name: str  # "tensorrt" | "onnxruntime"
    why: str
    facts: dict[str, Any]  # version, GPU name, compute capability


def choose_backend(requested: str) -> Backend:
    """auto: TensorRT when probe() finds a GPU and TensorRT, else ONNX Runtime; say why either way."""
    if requested not in BACKENDS:
        raise FcnEdgeError(f"--backend {requested!r} is unknown: choose one of {', '.join(BACKENDS)}")
    cpu = Backend("onnxruntime", "", {"name": "onnxruntime", "version": ort_backend.VERSION, "device": "CPU"})
    if requested == "onnxruntime":
        cpu.why = "ONNX Runtime (--backend onnxruntime)"
        return cpu
    from .tensorrt import probe

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
    versions = {"onnxruntime": ort_backend.VERSION, "onnx": onnx.__version__, "backend": backend.facts}
    artifact.check_engines_dir(options.engines_dir)
    name = source_inputs["name"]
    for precision in precisions:
        paths = artifact.artifact_paths(options.engines_dir, name, precision, backend.name)
        key = artifact.build_key(inputs, {**options.recorded(), "precision": precision, "versions": versions})
        existing = None if options.force else artifact.up_to_date(paths, key)
        if existing and (existing["verification"]["passed"] or options.precision):
            return Built(paths, existing, True, existing["verification"]["table"], existing["verification"]["passed"])

    with tempfile.TemporaryDirectory(prefix="fcn_edge_build_") as tmp_name:
        tmp = Path(tmp_name)
        source = make_source(tmp)
        log(f"backend: {backend.why}")
        work = _Work(source, options, calib_set, tmp, log, backend.facts.get("version") if backend.name == "tensorrt" else trt_cache.DEFAULT_TRT_VERSION)
        for index, precision in enumerate(precisions):
            last = index == len(precisions) - 1
            paths = artifact.artifact_paths(options.engines_dir, name, precision, backend.name)
            key = artifact.build_key(inputs, {**options.recorded(), "precision": precision, "versions": versions})
            outcome = work.make(precision)
            problems = options.budget.problems(outcome.figures[0])
            if problems and not last and not options.precision:
                log(f"{precision.upper()} misses the budget ({'; '.join(problems)}): trying {precisions[index + 1].upper()}")
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


@dataclass
class _Outcome:
    precision: str
    model: Path  # the ORT artifact (or the model a TensorRT engine is built from)
    figures: list  # verify.Figures: [artifact, ...other rows]
    extras: dict[str, Path] = field(default_factory=dict)  # role -> temp path of each extra file
    details: dict[str, Any] = field(default_factory=dict)


class _Work:
    """State shared by the precisions one build tries: prepared graph, samples, FP32 reference."""

    def __init__(self, source: SourceModel, options: BuildOptions, calib_set, tmp: Path, log: Callable[[str], None], trt_version: str):
        self.source, self.options, self.calib_set, self.tmp, self.log = source, options, calib_set, tmp, log
        self.trt_version = trt_version  # the calibration cache header names the TensorRT it is for
        from ..quantize import qdq
        from . import verify
        self.prepared = tmp / "prepared.onnx"
        qdq.prepare(source.path, self.prepared)
        holdout = []
        if calib_set and calib_set.holdout:
            frames = calibration.load_frames(calib_set.holdout, options.calib_size, "load hold-out images")
            holdout = [(f"calibration:{p.name}", f) for p, f in zip(calib_set.holdout, frames)]
        self.samples = verify.verification_samples(options.verify_scenes, options.verify_size, holdout)
        self.reference = verify.reference(source, self.samples, options.progress)
        self.fp32_latency: float | None = None

    def make(self, precision: str) -> _Outcome:
        outcome = {"int8": self._int8, "fp16": self._fp16, "fp32": self._fp32}[precision]()
        outcome.figures[0] = self._timed(outcome.figures[0], outcome.model)
        return outcome

    def _compare(self, model: Path, label: str) -> verify.Figures:
        return verify.compare(model, label, self.source, self.samples, self.reference, self.options.progress)

    def _timed(self, figures: verify.Figures, model: Path) -> verify.Figures:
        size = self.options.latency_size
        if self.fp32_latency is None:
            self.fp32_latency = verify.median_latency_ms(self.source.path, self.source, size)
        latency = verify.median_latency_ms(model, self.source, size)
        return dataclasses.replace(figures, latency_ms=latency, latency_ratio=latency / self.fp32_latency)

    def _fp32(self) -> _Outcome:
        return _Outcome("fp32", self.prepared, [self._compare(self.prepared, "FP32 (prepared)")])

    def _fp16(self) -> _Outcome:
        path = self.tmp / "fp16.onnx"
        kept = fp16.to_fp16(self.prepared, path)
        return _Outcome("fp16", path, [self._compare(path, "FP16")], details={"kept_fp32_nodes": kept})

    def _int8(self) -> _Outcome:
        options, calib_set = self.options, self.calib_set
        frames = calibration.load_frames(calib_set.calibrate, options.calib_size, "load calibration images")
        feeds = [self.source.feed([f]) for f in frames]
        prepared_model = onnx.load(str(self.prepared))
        ranges = statistics.collect_ranges(prepared_model, feeds, options.calib_method, progress=options.progress)
        ort_path, trt_path = self.tmp / "int8.onnx", self.tmp / "int8.trt-qdq.onnx"
        qdq.quantize(self.prepared, ort_path, ranges, "onnxruntime")
        figures = self._compare(ort_path, "INT8 (ONNX Runtime)")
        kept: list[str] = []
        sensitivity = None
        if self.options.budget.problems(figures):
            self.log(f"INT8 misses the budget ({'; '.join(self.options.budget.problems(figures))}): ranking layers")
            result = self._sensitivity(prepared_model, ranges, frames[:TUNING_IMAGES], ort_path)
            kept = result.kept_float
            sensitivity = {"ranking": [{"layer": n, "agreement_alone": a} for n, a in result.ranking], "met": result.met}
            qdq.quantize(self.prepared, ort_path, ranges, "onnxruntime", kept)
            figures = self._compare(ort_path, "INT8 (ONNX Runtime)")
        qdq.quantize(self.prepared, trt_path, ranges, "tensorrt", kept)
        trt_figures = self._compare(trt_path, "INT8 TensorRT Q/DQ on CPU")
        cache = self.tmp / "int8.calib"
        trt_cache.write_cache(cache, ranges.amax, self.trt_version)
        extras = {"tensorrt_qdq_onnx": trt_path, "tensorrt_calibration_cache": cache, "tensorrt_calibration_onnx": self.prepared}
        details = {
            "calibration": {
                "method": options.calib_method, "images": len(frames), "holdout_images": len(calib_set.holdout),
                "size": list(options.calib_size), "folder": str(calib_set.folder),
            },
            "kept_float": kept,
            "narrow_convs_float_on_onnxruntime": qdq.narrow_convs(prepared_model),
            "sensitivity": sensitivity,
            "tensorrt_qdq_layers": qdq.precision_summary(onnx.load(str(trt_path))),
            "tensorrt_cache_version": trt_cache.version_number(self.trt_version),
        }  # fmt: skip
        return _Outcome("int8", ort_path, [figures, trt_figures], extras, details)

    def _sensitivity(self, prepared_model: onnx.ModelProto, ranges: statistics.TensorRanges, frames: list, scratch: Path):
        reference_sess = ort_backend.session(self.prepared)
        targets = [verify.predict(reference_sess, self.source, f)[0] for f in frames]

        def agreement(excluded: list[str]) -> float:
            qdq.quantize(self.prepared, scratch, ranges, "onnxruntime", excluded)
            sess = ort_backend.session(scratch)
            same = sum(int((verify.predict(sess, self.source, f)[0] == t).sum()) for f, t in zip(frames, targets))
            return same / sum(t.size for t in targets)

        def meets(excluded: list[str]) -> bool:
            qdq.quantize(self.prepared, scratch, ranges, "onnxruntime", excluded)
            return not self.options.budget.problems(self._compare(scratch, "INT8 trial"))

        return keep_sensitive_layers(qdq.quantizable_convs(prepared_model), agreement, meets, progress=self.options.progress)

    def table(self, outcome: _Outcome, precision: str) -> str:
        fp32 = verify.Figures("FP32 (source)", None, self.reference.miou, None, None, self.fp32_latency, 1.0)
        images = f"{self.options.verify_scenes} held-out synthetic scenes {self.options.verify_size[0]}x{self.options.verify_size[1]}"
        holdout = len(self.samples) - self.options.verify_scenes
        header = (
            f"verification ({precision.upper()}): {images} + {holdout} calibration hold-out images; "
            f"latency at {self.options.latency_size[0]}x{self.options.latency_size[1]}, ONNX Runtime CPU, {ort_backend.THREADS} threads"
        )
        return verify.table([fp32, *outcome.figures], header)

    def write(self, outcome: _Outcome, paths: artifact.ArtifactPaths, backend: Backend, key: str, inputs, versions, table: str, passed: bool) -> dict:
        """Copy the files into the engines folder (TensorRT: build the engine), then the sidecar, last."""
        started = time.perf_counter()
        model = onnx.load(str(outcome.model))
        engine_facts = None
        if backend.name == "tensorrt":
            engine_facts = self._build_engine(outcome, paths.artifact)
        else:
            _copy_model(outcome.model, paths.artifact, self.source)
        for role, path in paths.extras.items():
            if path.suffix == ".onnx":
                _copy_model(outcome.extras[role], path, self.source)
            else:
                write_bytes_atomic(path, outcome.extras[role].read_bytes())
        sidecar = {
            "key": key,
            "artifact": paths.artifact.name,
            "precision": outcome.precision,
            "backend": {**backend.facts, "why": backend.why, **({"session_options": ort_backend.describe_options()} if backend.name == "onnxruntime" else {})},
            "model": self.source.describe(),
            "io": artifact.io_description(model),
            "profiles": {"min": self.options.min_shape, "opt": self.options.opt_shape, "max": self.options.max_shape},
            "layers": qdq.precision_summary(model),
            "engine": engine_facts,
            "sources": inputs,
            "options": self.options.recorded(),
            "versions": versions,
            "details": outcome.details,
            "verification": {
                "images": {
                    "synthetic_seeds": [HELDOUT_SEED, HELDOUT_SEED + self.options.verify_scenes],
                    "synthetic_size": list(self.options.verify_size),
                    "calibration_holdout": [s.name for s in self.samples[self.options.verify_scenes :]],
                },
                "latency_size": list(self.options.latency_size),
                "budget": dataclasses.asdict(self.options.budget),
                "rows": verify.as_dict(outcome.figures),
                "fp32_miou": self.reference.miou,
                "fp32_latency_ms": self.fp32_latency,
                "passed": passed,
                "table": table,
            },
            "write_seconds": round(time.perf_counter() - started, 3),
        }
        artifact.write_sidecar(paths, sidecar)
        return sidecar

    def _build_engine(self, outcome: _Outcome, engine_path: Path) -> dict:
        from .tensorrt import TrtBuildOptions, build_engine

        onnx_path = outcome.extras.get("tensorrt_qdq_onnx", outcome.model)
        options = TrtBuildOptions(
            precision=outcome.precision, min_shape=self.options.min_shape, opt_shape=self.options.opt_shape,
            max_shape=self.options.max_shape, input_name=self.source.input_name, workspace_mb=self.options.workspace_mb,
            optimization_level=self.options.opt_level, timing_cache=self.options.timing_cache,
            dla_core=self.options.dla_core, progress=self.options.progress,
        )  # fmt: skip
        return build_engine(onnx_path, engine_path, options)


def _copy_model(source_path: Path, target: Path, source: SourceModel) -> None:
    """Write the ONNX at ``target`` atomically, with the source's fcn_edge metadata (if any) carried over."""
    model = onnx.load(str(source_path))
    if source.metadata is not None:
        write_metadata(model, source.metadata)
    with atomic_path(target) as tmp:
        onnx.save_model(model, tmp)
