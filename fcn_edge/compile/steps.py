"""The slow part of a build, run once the quick checks in :mod:`.pipeline` have passed.

:class:`Work` prepares the FP32 graph (shape inference, basic optimisations), renders the
verification images and the FP32 reference once, then makes and verifies each precision
the build tries, and finally writes the chosen one (and its extras) and the sidecar.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import onnx

from ..atomic import atomic_path, write_bytes_atomic
from ..data.synthetic import HELDOUT_SEED
from ..metadata import write_metadata
from ..quantize import calibration, fp16, qdq, statistics, trt_cache
from ..quantize.sensitivity import keep_sensitive_layers
from .. import sidecar as artifact
from ..backends import onnxruntime as ort_backend
from . import verify
from .options import BuildOptions
from .source import SourceModel


TUNING_IMAGES = 8  # calibration images the sensitivity pass ranks layers on


@dataclass
class Outcome:
    precision: str
    model: Path  # the ORT artifact (or the model a TensorRT engine is built from)
    figures: list  # verify.Figures: [artifact, ...other rows]
    extras: dict[str, Path] = field(default_factory=dict)  # role -> temp path of each extra file
    details: dict[str, Any] = field(default_factory=dict)


class Work:
    """State shared by the precisions one build tries: prepared graph, samples, FP32 reference."""

    def __init__(self, source: SourceModel, options: BuildOptions, calib_set, tmp: Path, log: Callable[[str], None], trt_version: str):
        self.source, self.options, self.calib_set, self.tmp, self.log = source, options, calib_set, tmp, log
        self.trt_version = trt_version  # the calibration cache header names the TensorRT it is for
        self.prepared = tmp / "prepared.onnx"
        qdq.prepare(source.path, self.prepared)
        holdout = []
        if calib_set and calib_set.holdout:
            frames = calibration.load_frames(calib_set.holdout, options.calib_size, "load hold-out images")
            holdout = [(f"calibration:{p.name}", f) for p, f in zip(calib_set.holdout, frames)]
        self.samples = verify.verification_samples(options.verify_scenes, options.verify_size, holdout)
        self.reference = verify.reference(source, self.samples, options.progress)
        self.fp32_latency: float | None = None

    def make(self, precision: str) -> Outcome:
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

    def _fp32(self) -> Outcome:
        return Outcome("fp32", self.prepared, [self._compare(self.prepared, "FP32 (prepared)")])

    def _fp16(self) -> Outcome:
        path = self.tmp / "fp16.onnx"
        kept = fp16.to_fp16(self.prepared, path)
        return Outcome("fp16", path, [self._compare(path, "FP16")], details={"kept_fp32_nodes": kept})

    def _int8(self) -> Outcome:
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
        return Outcome("int8", ort_path, [figures, trt_figures], extras, details)

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

    def table(self, outcome: Outcome, precision: str) -> str:
        fp32 = verify.Figures("FP32 (source)", None, self.reference.miou, None, None, self.fp32_latency, 1.0)
        images = f"{self.options.verify_scenes} held-out synthetic scenes {self.options.verify_size[0]}x{self.options.verify_size[1]}"
        holdout = len(self.samples) - self.options.verify_scenes
        header = (
            f"verification ({precision.upper()}): {images} + {holdout} calibration hold-out images; "
            f"latency at {self.options.latency_size[0]}x{self.options.latency_size[1]}, ONNX Runtime CPU, {ort_backend.THREADS} threads"
        )
        return verify.table([fp32, *outcome.figures], header)

    def write(self, outcome: Outcome, paths: artifact.ArtifactPaths, backend, key: str, inputs, versions, table: str, passed: bool) -> dict:
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

    def _build_engine(self, outcome: Outcome, engine_path: Path) -> dict:
        from ..backends.tensorrt import TrtBuildOptions, build_engine

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
