"""The slow part of a build, run once the quick checks in :mod:`.pipeline` have passed.

:class:`PrecisionBuilder` prepares the FP32 graph (shape inference, basic optimisations), renders the
verification images and the FP32 reference once, then makes and verifies each precision
the build tries, and finally writes the chosen one (and its extra files) and the sidecar.
Latency is measured where the artifact will run: on this CPU through the runner the stream
opens, every runtime's candidate and FP32 timed together (:mod:`.timing`), or, for a TensorRT
build, the engine itself on the GPU (built once here and copied at write time). OpenVINO runs
FP32 and BF16 from the source graph: ONNX Runtime's preparation rewrites ops for its own
kernels (HardSwish into HardSigmoid x Mul), which OpenVINO ran slower (docs/cpu.md).
Every graph bound for TensorRT goes through the CPU compatibility check
(:mod:`fcn_edge.backends.tensorrt.compat`); what it finds is logged and recorded.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from ..atomic import atomic_files
from ..metadata import write_metadata
from ..backends.tensorrt import calibration_cache as trt_cache
from ..quantize import calibration, fp16, qdq, statistics
from .. import capabilities, cpu_features
from .. import sidecar as artifact
from ..backends.onnxruntime import default_threads
from ..backends.tensorrt import compat, opset
from ..errors import FcnEdgeError
from . import batches, cpu, mixed, timing, verification_data, verify
from .options import BuildOptions
from .source import SourceModel

Shape = tuple[int, ...]
CAMERA_SIZE = (1080, 1920)  # (H, W): the largest frame a default engine profile takes without --max-shape


@dataclass
class VerifiedArtifact:
    """One precision made and verified (and, on a CPU, timed): its file, its figures, what its sidecar will hold."""

    precision: str
    model: Path  # the ORT artifact (or the model a TensorRT engine is built from)
    figures: list  # verify.Figures: [artifact, ...other rows]
    extra_files: dict[str, Path] = field(default_factory=dict)  # role -> temp path of each extra file (sidecar.ArtifactPaths)
    sidecar_details: dict[str, Any] = field(default_factory=dict)  # the sidecar's "details": calibration, search, ...
    engine: tuple[Path, dict] | None = None  # TensorRT target: the engine built and timed here, and its sidecar record
    verified_on: str = "onnxruntime"  # the CPU runtime figures[0] was verified on while making it
    runs_on: str = ""  # CPU target: the runtime that runs the artifact (.timing.first_faster)
    measured: dict[str, float] = field(default_factory=dict)  # CPU target: median latency (ms) per runtime
    speed: str = ""  # against FP32: timing.FASTER, SLOWER or WITHIN_NOISE
    latency: dict[str, Any] = field(default_factory=dict)  # CPU target: how it was timed, for the sidecar
    batches: list[dict] = field(default_factory=list)  # --batch-sizes: agreement and ms a frame per size (.batches)


class PrecisionBuilder:
    """Makes, verifies and times each precision one build tries, over what they share (prepared graph, verification
    samples, FP32 reference), and writes the chosen one."""

    def __init__(self, source: SourceModel, options: BuildOptions, calib_set, tmp: Path, log: Callable[[str], None], trt_version: str,
                 target: str = "onnxruntime", cpu_backends: tuple[str, ...] = ("onnxruntime",)):  # fmt: skip
        self.source, self.options, self.calib_set, self.tmp, self.log = source, options, calib_set, tmp, log
        self.trt_version = trt_version  # the calibration cache header names the TensorRT it is for
        self.target = target  # the backend the artifact runs on: where latency is measured
        self.cpu_backends = cpu_backends  # CPU target: the runtimes verified and timed, the fastest wins (.cpu)
        self.threads = default_threads()  # the stream's default: what the artifacts are verified and timed at
        self._logit_diffs: dict[Path, float | None] = {}  # max|dlogit| per file: one figure whatever runtime runs it
        self._engines: dict[Path, tuple[Path, dict]] = {}  # TensorRT target: engines built so far, by source graph
        self.prepared = tmp / "prepared.onnx"
        qdq.prepare(source.path, self.prepared)
        if not timing.stream_runs(self.prepared) and len(cpu_backends) > 1:
            log(f"note: {source.path.name} does not take uint8 frames and give labels, so the stream's runners cannot run it: "
                "ONNX Runtime verifies and times it through a session with the runner's settings, OpenVINO not at all")  # fmt: skip
            self.cpu_backends = ("onnxruntime",)
        if target == "tensorrt" and options.dla_core is not None and not source.fixed_size and options.min_shape is None:
            log(f"DLA runs one input shape: the engine takes {options.latency_size[0]}x{options.latency_size[1]} frames only")
            self.source = source = dataclasses.replace(source, fixed_size=options.latency_size)
        if source.fixed_size:
            self.options = options = _at_fixed_size(options, source.fixed_size, log)
        holdout = []
        if calib_set and calib_set.holdout:
            frames = calibration.load_frames(calib_set.holdout, options.calib_size, "load hold-out images", options.progress)
            holdout = [(f"calibration:{p.name}", f) for p, f in zip(calib_set.holdout, frames)]
        split = options.val_fraction, options.split_seed
        self.data_choice = verification_data.choose(source, verification_data.parse_spec(options.val_data, "--val-data", *split), options.val_split,
                                  verification_data.parse_spec(options.calib_data, "--calib-data", *split))  # fmt: skip
        self.samples = verification_data.samples(
            self.data_choice, source, options.val_images, options.verify_scenes, options.verify_size, holdout
        )
        self.reference = verify.reference(source, self.samples, options.progress)
        if self.reference.miou is None and any(s.mask is not None for s in self.samples):
            log(
                f"note: cannot measure mIoU on {self.data_choice.data or 'the verification images'}: every mask pixel is ignore "
                f"(255), so --max-miou-drop {options.budget.max_miou_drop:g} is not checked, only label agreement"
            )
        self.fp32_latency: float | None = None
        self.profile = engine_profile(source, options, self.samples) if target == "tensorrt" else None

    def make(self, precision: str) -> VerifiedArtifact:
        if self.target != "tensorrt" and not capabilities.runners_of(precision, self.cpu_backends):
            raise FcnEdgeError(f"{precision.upper()} runs on OpenVINO's runner, which takes frame models only (uint8 frames "
                               f"in, labels out), and {self.source.path.name} is not one: build --int8, --fp16 or --fp32")  # fmt: skip
        verified = {"int8": self._int8, "fp16": self._fp16, "fp32": self._fp32, "bf16": self._bf16}[precision]()
        verified.sidecar_details["tensorrt_compat"] = self._compat(verified)
        if self.target == "tensorrt":
            verified.figures.insert(0, self._timed(verified))
            ratio = verified.figures[0].latency_ratio  # one median per engine: no spread measured on the GPU
            verified.speed = timing.verdict(timing.Spread(ratio, ratio, ratio))
        else:
            verified.figures = self._on_cpu(verified)
        return verified

    def _on_cpu(self, verified: VerifiedArtifact) -> list:
        """A verified, timed row per CPU runtime that runs this precision, the one that runs the artifact first.

        The precision on each runtime and the FP32 artifact on each are timed together (:mod:`.timing`); the ratios
        are to FP32 on the runtime that would run an FP32 artifact, round by round.
        """
        precision = verified.precision
        backends = capabilities.runners_of(precision, self.cpu_backends)
        rows = {
            backend: verified.figures[0] if backend == verified.verified_on else self._compare(
                self._model_on(backend, precision, verified.model), cpu.label(precision, backend), backend, precision)
            for backend in backends
        }  # fmt: skip
        candidates = {
            f"{precision} {b}": timing.Candidate(self._model_on(b, precision, verified.model), b, precision) for b in backends
        }
        candidates |= {
            f"fp32 {b}": timing.Candidate(self._model_on(b, "fp32", self.prepared), b, "fp32") for b in self.cpu_backends
        }
        rounds, through = timing.measure(
            candidates, self.source, self.options.latency_size, self.threads, self.tmp / "openvino-cache"
        )
        verified.runs_on = timing.first_faster({b: rounds[f"{precision} {b}"] for b in backends})
        fp32_on = timing.first_faster({b: rounds[f"fp32 {b}"] for b in self.cpu_backends})
        verified.model = self._model_on(verified.runs_on, precision, verified.model)
        reference = rounds[f"fp32 {fp32_on}"]
        self.fp32_latency = timing.Spread.of(reference).median
        timed = {}
        for backend in backends:
            ms, ratio = (
                timing.Spread.of(rounds[f"{precision} {backend}"]),
                timing.ratio(rounds[f"{precision} {backend}"], reference),
            )
            verified.measured[backend] = ms.median
            timed[backend] = dataclasses.replace(rows[backend], latency_ms=ms.median, latency_iqr_ms=(ms.low, ms.high),
                                                 latency_ratio=ratio.median, ratio_iqr=(ratio.low, ratio.high))  # fmt: skip
        chosen = timing.ratio(rounds[f"{precision} {verified.runs_on}"], reference)
        verified.speed = timing.verdict(chosen)
        verified.latency = {
            "threads": self.threads, "through": through, "rounds": timing.ROUNDS, "frames_per_round": timing.PER_ROUND,
            "runs_on": verified.runs_on, "fp32_runs_on": fp32_on, "ratio_to_fp32": dataclasses.asdict(chosen), "verdict": verified.speed,
            "ms": {name: dataclasses.asdict(timing.Spread.of(r)) for name, r in rounds.items()},
        }  # fmt: skip
        rest = verified.figures[1:] if verified.verified_on in backends else verified.figures
        return [timed[b] for b in sorted(backends, key=lambda b: (b != verified.runs_on, verified.measured[b]))] + rest

    def _model_on(self, backend: str, precision: str, model: Path) -> Path:
        """The file ``backend`` runs for ``model``: OpenVINO runs FP32 and BF16 from the source graph (module docstring)."""
        return self.source.path if backend == "openvino" and precision in ("fp32", "bf16") else model

    def _compat(self, verified: VerifiedArtifact) -> dict[str, list[str]]:
        """What each TensorRT line's ONNX parser would reject in the graph an engine of this precision is built from."""
        graph = verified.extra_files.get("tensorrt_qdq_onnx", verified.model)
        found = {}
        for line in compat.LINES:  # the graph each line's build parses: 8.x's at opset 17
            try:
                found[line] = [p.describe() for p in compat.check(opset.for_line(graph, line, self.tmp), line)]
            except FcnEdgeError as error:  # an opset-18 node 8.x cannot take
                found[line] = [str(error)]
        rejecting = [line for line, problems in found.items() if problems]
        if rejecting:
            first = found[rejecting[0]]
            self.log(
                f"note: TensorRT {', '.join(f'{line}.x' for line in rejecting)} would reject {len(first)} node(s) of the "
                f"{verified.precision.upper()} graph for TensorRT, e.g. {first[0]}; list them with python -m "
                f"fcn_edge.backends.tensorrt.compat {self.source.path.name}"
            )
        return found

    def verify_batches(self, verified: VerifiedArtifact) -> list[dict]:
        """``verified`` run at each of ``--batch-sizes`` by the runner the stream opens for it (:mod:`.batches`)."""
        if self.target == "tensorrt":
            from ..backends.tensorrt import TrtRunner

            open_runner = functools.partial(TrtRunner, verified.engine[0], check_inputs=False)
        elif timing.stream_runs(verified.model):
            open_runner = functools.partial(cpu.runner, verified.runs_on, verified.precision, verified.model, self.threads,
                                            self.tmp / "openvino-cache")  # fmt: skip
        else:
            raise FcnEdgeError(
                f"--batch-sizes: {self.source.path.name} does not take uint8 frames and give labels, so the stream cannot "
                "batch it: build without --batch-sizes"
            )
        frame = timing.latency_frame(self.options.latency_size)
        return batches.verify(open_runner, [sample.frame for sample in self.samples], frame, self.options.batch_sizes)

    def _compare(self, model: Path, label: str, backend: str = "onnxruntime", precision: str = "fp32",
                 logits: bool = True) -> verify.Figures:  # fmt: skip
        """``model`` verified through the runner the stream opens for it on ``backend`` (:func:`.cpu.runner`), at the
        stream's threads; with its max|dlogit| unless ``logits`` is False (the INT8 search's trials: :meth:`_int8`)."""
        runs = timing.stream_runs(model)
        runner = cpu.runner(backend, precision, model, self.threads, self.tmp / "openvino-cache") if runs else None
        figures = verify.compare(model, label, self.source, self.samples, self.reference, runner, self.options.progress)
        return self._with_logit_diff(figures, model) if logits and precision != "bf16" else figures

    def _with_logit_diff(self, figures: verify.Figures, model: Path) -> verify.Figures:
        """``figures`` with the file's max|dlogit| (:func:`.verify.logit_diff`; BF16 is the runtime's, not the file's)."""
        if figures.max_logit_diff is None:
            if model not in self._logit_diffs:
                self._logit_diffs[model] = verify.logit_diff(model, self.source, self.samples, self.reference)
            figures.max_logit_diff = self._logit_diffs[model]
        return figures

    def _timed(self, verified: VerifiedArtifact) -> verify.Figures:
        """The TensorRT target's row: the engine's own labels on the verification images, and its latency, on the GPU.

        The CPU rows the precision was made with follow it; the engine's comes first and decides. DLA runs no FP32,
        so there the reference the latency is compared with is the FP16 engine on the same DLA core.
        """
        if self.fp32_latency is None:
            reference = self._fp16() if self.options.dla_core is not None else VerifiedArtifact("fp32", self.prepared, [])
            self.fp32_latency = self._engine_latency(reference)
        latency = self._engine_latency(verified)
        engine_figures = self._engine_figures(verified, f"{verified.precision.upper()} TensorRT engine")
        return dataclasses.replace(engine_figures, latency_ms=latency, latency_ratio=latency / self.fp32_latency)

    def _engine_latency(self, verified: VerifiedArtifact) -> float:
        """Build (once per graph) and time the engine of ``verified`` on the GPU; it is kept for write()."""
        from ..backends.tensorrt import timing as engine_timing

        graph = verified.extra_files.get("tensorrt_qdq_onnx", verified.model)
        if graph not in self._engines:
            engine = self.tmp / f"{verified.precision}.engine"
            self._engines[graph] = (engine, self._build_engine(verified, engine))
        verified.engine = self._engines[graph]
        frame = timing.latency_frame(self.options.latency_size)
        return engine_timing.median_latency_ms(*verified.engine, frame)

    def _engine_figures(self, verified: VerifiedArtifact, label: str) -> verify.Figures:
        """The engine's labels on every verification image, run by the runner the stream uses, against FP32's
        (the runner reads the sidecar :meth:`_engine_latency` wrote beside the engine)."""
        from ..backends.tensorrt import TrtRunner

        with TrtRunner(verified.engine[0], check_inputs=False) as runner:
            predictions = ((runner.infer(sample.frame).astype(np.int64), None) for sample in self.samples)
            return verify.score(label, self.source, self.samples, self.reference, predictions, self.options.progress)

    def _fp32(self) -> VerifiedArtifact:
        return VerifiedArtifact("fp32", self.prepared, [self._compare(self.prepared, "FP32 (prepared)")])

    def _bf16(self) -> VerifiedArtifact:
        """The source graph run in BF16 by OpenVINO: a precision of the runtime, not of the file."""
        figures = self._compare(self.source.path, cpu.label("bf16", "openvino"), "openvino", "bf16")
        return VerifiedArtifact("bf16", self.source.path, [figures], verified_on="openvino")

    def _fp16(self) -> VerifiedArtifact:
        path = self.tmp / "fp16.onnx"
        kept = fp16.to_fp16(self.prepared, path)
        return VerifiedArtifact("fp16", path, [self._compare(path, "FP16")], sidecar_details={"kept_fp32_nodes": kept})

    def _int8(self) -> VerifiedArtifact:
        options, calib_set = self.options, self.calib_set
        frames = calibration.load_frames(calib_set.calibrate, options.calib_size, "load calibration images", options.progress)
        feeds = [self.source.feed([f]) for f in frames]
        prepared_model = onnx.load(str(self.prepared))
        ranges = statistics.collect_ranges(prepared_model, feeds, options.calib_method, progress=options.progress)
        qat = self._learned(ranges)
        if qat is not None:
            ranges, qat_record = qat
            self.log(f"scales: learned by QAT ({qat_record['learned_tensors']} tensors; calibrated: "
                     f"{', '.join(qat_record['calibrated_tensors']) or 'none'})")  # fmt: skip
        trials = mixed.Trials(self.prepared, ranges, self.tmp, self._compare_placement, options.budget.problems)
        problems = trials.problems([])
        kept: list[str] = []
        sensitivity = None
        if problems and options.search_minutes > 0:  # 0: no search, the plain INT8 model
            self.log(f"INT8 misses the budget ({'; '.join(problems)}): searching for the quantized nodes to keep in float"
                     + ("" if qat is not None or "checkpoint" not in self.source.origin else
                        "; for a model trained here, fine-tuning it for INT8 keeps every conv quantized: "
                        "fcn-edge train --qat --resume <its best.pt>, then build the qat.pt it writes"))  # fmt: skip
            kept, sensitivity = mixed.keep_in_float(
                self.prepared, trials.get([], ["onnxruntime"]).paths["onnxruntime"], ranges, feeds, trials.meets,
                options.search_minutes, self.log, options.progress,
            )  # fmt: skip
            if sensitivity.get("problems") and options.allow_accuracy_drop:
                kept = self._closest_int8(sensitivity)
        chosen = trials.get(kept)
        ort_path, trt_path = chosen.paths["onnxruntime"], chosen.paths["tensorrt"]
        figures, trt_figures, unquantized = chosen.figures["onnxruntime"], chosen.figures["tensorrt"], chosen.unquantized
        figures, trt_figures = self._with_logit_diff(figures, ort_path), self._with_logit_diff(trt_figures, trt_path)
        cache = self.tmp / "int8.calib"
        # implicit INT8 quantizes every tensor the cache names: only those the Q/DQ placement quantizes, never the score tail
        quantized = qdq.quantized_activations(onnx.load(str(trt_path)))
        trt_cache.write_cache(cache, {t: a for t, a in ranges.amax.items() if t in quantized}, self.trt_version)
        extra_files = {
            "tensorrt_qdq_onnx": trt_path,
            "tensorrt_calibration_cache": cache,
            "tensorrt_calibration_onnx": self.prepared,
        }
        sidecar_details = {
            "calibration": {
                **({"scales": "learned by QAT", "qat": qat[1]} if qat is not None else {}),
                "method": options.calib_method, "images": len(frames), "holdout_images": len(calib_set.holdout),
                "size": list(options.calib_size), "folder": str(calib_set.folder),
            },
            "weight_bits": qdq.WEIGHT_BITS,  # per placement: 7 on ONNX Runtime (no u8 x s8 saturation without VNNI)
            "kept_float": kept,
            "narrow_convs_float_on_onnxruntime": qdq.narrow_convs(prepared_model),
            "sensitivity": sensitivity,
            "problems": (sensitivity or {}).pop("problems", []),
            "tensorrt_qdq_layers": qdq.precision_summary(onnx.load(str(trt_path))),
            "tensorrt_qdq_unquantized_inputs": unquantized,  # placement rules: conv->relu, residual main branches
            "tensorrt_cache_version": trt_cache.version_number(self.trt_version),
        }  # fmt: skip
        sidecar_details["no_int8"] = _without_int8({"ONNX Runtime": ort_path, "TensorRT Q/DQ": trt_path})
        if not sidecar_details["no_int8"] and self.target != "tensorrt" and not _int8_layers(ort_path):
            self.log(f"note: ONNX Runtime runs every convolution of this model in float (narrower than {qdq.MIN_INT8_CHANNELS} "
                     "channels, faster in float there, or scoring labels); only the TensorRT Q/DQ model is INT8")  # fmt: skip
        return VerifiedArtifact("int8", ort_path, [figures, trt_figures], extra_files, sidecar_details)

    def _learned(self, calibrated: statistics.TensorRanges) -> tuple[statistics.TensorRanges, dict] | None:
        """The ranges a QAT checkpoint learned (:mod:`fcn_edge.train.qat_ranges`), None for any other source."""
        checkpoint = self.source.origin.get("checkpoint")
        if checkpoint is None:
            return None
        from ..train.qat_ranges import learned_ranges

        return learned_ranges(self.prepared, Path(checkpoint), calibrated, self.tmp)

    def _closest_int8(self, sensitivity: dict) -> list[str]:
        """--allow-accuracy-drop where only the all-float model met the budget: the most accurate model the search
        tried that still runs INT8 (the most nodes in float among those that missed), not FP32 under an INT8 name."""
        closest = max((t["kept_float"] for t in sensitivity["trials"] if not t["met"]), default=0)
        total = len(sensitivity["ranking"])
        self.log(f"--allow-accuracy-drop: writing the closest INT8 model the search tried ({closest} of {total} nodes "
                 "in float), which misses the budget, rather than the all-float model")  # fmt: skip
        sensitivity["problems"] = []  # the table's figures say what it misses
        return [entry["node"] for entry in sensitivity["ranking"][:closest]]

    def _compare_placement(self, model: Path, placement: str) -> verify.Figures:
        """A search trial's figures (or the plain INT8 model's), through ONNX Runtime's runner; its max|dlogit| is added
        only to the one the build keeps."""
        label = "INT8 (ONNX Runtime)" if placement == "onnxruntime" else "INT8 TensorRT Q/DQ on CPU"
        return self._compare(model, label, logits=False)

    def table(self, verified: VerifiedArtifact, precision: str) -> str:
        fp32 = verify.Figures(
            "FP32 (source)", None, self.reference.miou, None, None, self.fp32_latency, 1.0, self.reference.boundary_f
        )
        if self.target == "tensorrt":
            timed = "TensorRT engine on the GPU"
        else:
            fp32_ms = verified.latency["ms"][f"fp32 {verified.latency['fp32_runs_on']}"]
            fp32.latency_iqr_ms = (fp32_ms["low"], fp32_ms["high"])
            through = "the stream's runner" if verified.latency["through"] == "runner" else "a session with the runner's settings"
            timed = (f"{cpu.LABELS[verified.runs_on]} CPU (FP32: {cpu.LABELS[verified.latency['fp32_runs_on']]}), "
                     f"{verified.latency['threads']} threads, median of {timing.ROUNDS} interleaved rounds through {through}; "
                     "IQR of the per-round ratios")  # fmt: skip
        header = (
            f"verification ({precision.upper()}): {self.data_choice.describe(self.samples, self.options.verify_scenes)}; "
            f"latency at {self.options.latency_size[1]}x{self.options.latency_size[0]} (WxH), {timed}"
        )
        return verify.table([fp32, *verified.figures], header)

    def write(
        self,
        verified: VerifiedArtifact,
        paths: artifact.ArtifactPaths,
        backend,
        key: str,
        inputs,
        versions,
        table: str,
        passed: bool,
    ) -> dict:
        """Write the files (TensorRT: build the engine) and the sidecar under temporary names, then rename them all."""
        started = time.perf_counter()
        model = onnx.load(str(verified.model))
        with atomic_files([*paths.all(), paths.sidecar]) as staged:
            engine_record = None
            if backend.name == "tensorrt":
                built, engine_record = verified.engine  # built and timed on the GPU by make()
                shutil.copyfile(built, staged[paths.artifact])
            else:
                _copy_model(verified.model, staged[paths.artifact], self.source)
            for role, path in paths.extras.items():
                if path.suffix == ".onnx":
                    _copy_model(verified.extra_files[role], staged[path], self.source)
                else:
                    shutil.copyfile(verified.extra_files[role], staged[path])
            sidecar = {
                "key": key,
                "artifact": paths.artifact.name,
                "precision": verified.precision,
                "backend": {**backend.record, "why": backend.why}
                if backend.name == "tensorrt"
                else cpu.sidecar_entry(
                    verified.runs_on,
                    verified.precision,
                    verified.measured,
                    backend.why,
                    backend.record.get("openvino", backend.record.get("version")),
                    self.threads,
                ),
                "model": self.source.describe(),
                "io": artifact.io_description(model),
                "profiles": None if self.profile is None else dict(zip(("min", "opt", "max"), self.profile)),
                "layers": qdq.precision_summary(model),
                "engine": engine_record,
                "sources": inputs,
                "options": self.options.recorded(),
                "versions": versions,
                "details": verified.sidecar_details,
                "verification": {
                    "images": self.data_choice.record(self.samples, self.options.val_images),
                    "latency_size": list(self.options.latency_size),
                    "budget": dataclasses.asdict(self.options.budget),
                    "rows": verify.as_dict(verified.figures),
                    "fp32_miou": self.reference.miou,
                    "fp32_latency_ms": self.fp32_latency,
                    "latency": verified.latency or None,  # CPU: threads, rounds, spreads, the verdict (.timing)
                    "batches": verified.batches or None,  # --batch-sizes (.batches)
                    "passed": passed,
                    "table": table,
                    "instruction_set": None
                    if backend.name == "tensorrt"
                    else cpu_features.instruction_set(),  # the stream checks it
                },
                "write_seconds": round(time.perf_counter() - started, 3),
            }
            artifact.write_sidecar(paths, sidecar, staged)
        return sidecar

    def _build_engine(self, verified: VerifiedArtifact, engine_path: Path) -> dict:
        from ..backends.tensorrt import TrtBuildOptions, build_engine

        onnx_path = verified.extra_files.get("tensorrt_qdq_onnx", verified.model)
        low, opt, high = self.profile
        options = TrtBuildOptions(
            precision=verified.precision, min_shape=low, opt_shape=opt, max_shape=high,
            input_name=self.source.input_name, workspace_mb=self.options.workspace_mb,
            optimization_level=self.options.opt_level, timing_cache=self.options.timing_cache,
            dla_core=self.options.dla_core, progress=self.options.progress,
        )  # fmt: skip
        return build_engine(onnx_path, engine_path, options)


def _int8_layers(model: Path) -> int:
    """How many weighted layers (convolutions, matmuls) of a Q/DQ model read a DequantizeLinear."""
    layers = qdq.precision_summary(onnx.load(str(model)))
    return sum(layers.get(op, {}).get("int8", 0) for op in qdq.WEIGHTED_OPS)


def _without_int8(models: dict[str, Path]) -> str | None:
    """Why an INT8 build is not one: no placement runs a weighted layer in INT8 (None when one does).

    ONNX Runtime's alone may keep every conv float by its narrow-conv rule (a tiny model); with
    neither, the quantizer did nothing (once: unnamed nodes) and the file would be FP32.
    """
    if any(_int8_layers(path) for path in models.values()):
        return None
    return f"no INT8 left: neither the {' nor the '.join(models)} model runs a convolution or matmul in INT8"


def engine_profile(source: SourceModel, options: BuildOptions, samples: list[verify.Sample]) -> tuple[Shape, Shape, Shape]:
    """The input's optimization profile: the shapes given, else batch 1 from the smallest image the engine sees in
    this build (verification images, the latency frame) up to the largest of those and a 1080p camera's frame,
    optimized for the latency size; a model with one input size gets that size only."""
    if options.min_shape is not None:
        if source.input_format == "frame" and len(options.min_shape) == 4 and options.min_shape[-1] != 3:
            raise FcnEdgeError(
                f"--min-shape {'x'.join(map(str, options.min_shape))} is not a frame shape: the engine takes uint8 frames "
                "[N,H,W,3] (a foreign model's too, its preprocessing is in the graph): write NxHxWx3, e.g. 1x256x512x3"
            )
        return options.min_shape, options.opt_shape, options.max_shape
    sizes = [tuple(s.frame.shape[:2]) for s in samples] + [tuple(options.latency_size)]
    cameras = [] if source.fixed_size else [CAMERA_SIZE]
    low, high = tuple(map(min, zip(*sizes))), tuple(map(max, zip(*sizes, *cameras)))

    def shape(size: tuple[int, int]) -> Shape:
        return (1, *size, 3) if source.input_format == "frame" else (1, 3, *size)

    return shape(low), shape(tuple(options.latency_size)), shape(high)


def _at_fixed_size(options: BuildOptions, size: tuple[int, int], log: Callable[[str], None]) -> BuildOptions:
    """A model that takes one input size is calibrated, verified and timed at that size."""
    log(f"the model's input is fixed at {size[0]}x{size[1]}: calibrating, verifying and timing at {size[0]}x{size[1]}")
    return dataclasses.replace(options, calib_size=size, verify_size=size, latency_size=size)


def _copy_model(source_path: Path, target: Path, source: SourceModel) -> None:
    """Write the ONNX at ``target`` (a staged file) with the source's fcn_edge metadata (if any) carried over."""
    model = onnx.load(str(source_path))
    if source.metadata is not None:
        write_metadata(model, source.metadata)
    onnx.save_model(model, target)
