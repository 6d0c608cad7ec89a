"""Build a TensorRT engine from an ONNX model: thin over TensorRT, imported lazily.

What a build does is decided by :func:`plan_build`, pure Python tested on a CPU machine;
:func:`build_engine` then makes the TensorRT calls. Per version (facts in api.py):

- 10.x (JetPack 6.1/6.2 ship 10.3): a strongly typed network built from the ONNX of the
  wanted precision (the Q/DQ model for INT8, an FP16 model for FP16), no precision
  flags. ``strongly_typed=False`` gives the weakly typed 8.x-style build instead.
- 8.5/8.6 (JetPack 5: 8.5, best effort): an explicit-batch network with BuilderFlag.FP16,
  or INT8 together with FP16 (layers without INT8 scales then run in FP16, not FP32);
  INT8 from the Q/DQ model, or implicitly from a calibration cache written on the CPU by
  :mod:`.calibration_cache`, with a calibration profile at the opt shape (TensorRT
  requires one when the input has runtime dimensions).
- 11.x: strongly typed only; weak typing and calibrators are gone.

Before anything is built the ONNX goes through :mod:`.compat`: a graph this TensorRT's
parser would reject stops the build with the nodes named. Every build: one optimization
profile for the single input, a workspace pool limit, the builder optimization level, a
timing cache loaded and saved back (atomically) so later builds reuse it, DLA with GPU
fallback on request (only where the release has DLA, FP16/INT8 only, one fixed input
shape), DETAILED profiling verbosity so the engine inspector can report each layer's
precision, and a progress bar on 10+. The engine is written atomically; the dict returned
is what the sidecar records.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import atomic_path
from ... import capabilities
from ...errors import FcnEdgeError
from . import api as trt_api
from ...scratch import scratch_folder
from ..cuda import DeviceInfo
from .api import Version, available, needed

PRECISIONS = capabilities.precisions("tensorrt")
Shape = tuple[int, ...]


@dataclass(frozen=True)
class TrtProbe:
    """Whether this machine can build and run TensorRT engines, and if not, exactly what is missing."""

    available: bool
    reason: str
    version: str | None
    gpu_name: str | None
    compute_capability: str | None
    device: DeviceInfo | None = None


def probe() -> TrtProbe:
    """Look for a CUDA GPU and an importable TensorRT; fast (well under 5 s) when either is missing."""
    from ..cuda import find_gpu

    gpu, gpu_problem = find_gpu()
    version, trt_problem = None, None
    try:
        version = trt_api.import_tensorrt().__version__
    except FcnEdgeError as error:
        trt_problem = f"tensorrt not importable: {error}"
    problems = [p for p in (gpu_problem, trt_problem) if p]
    return TrtProbe(
        available=not problems,
        reason="; ".join(problems) or f"TensorRT {version} on {gpu.name}",
        version=version,
        gpu_name=gpu.name if gpu else None,
        compute_capability=gpu.compute_capability if gpu else None,
        device=gpu,
    )


@dataclass(frozen=True)
class TrtBuildOptions:
    precision: str = "fp32"  # must match the ONNX for strongly typed builds: Q/DQ for int8, FP16 tensors for fp16
    min_shape: Shape | None = None  # of the single input, e.g. NHWC (1, 256, 512, 3) for frame models
    opt_shape: Shape | None = None
    max_shape: Shape | None = None
    input_name: str | None = None  # default: the network's only input
    workspace_mb: int | None = None  # default: TensorRT's (all device memory)
    optimization_level: int | None = None  # builder_optimization_level 0-5; default: TensorRT's (3)
    timing_cache: Path | None = None  # loaded if it exists, saved back after the build
    dla_core: int | None = None  # Jetson DLA core, with GPU fallback for layers DLA cannot run
    calibration_cache: Path | None = None  # implicit INT8 (weakly typed builds only)
    strongly_typed: bool | None = None  # None: strongly typed where TensorRT has it (10+)
    progress: bool = True  # tqdm bars for the build phases (10+)


@dataclass(frozen=True)
class BuildPlan:
    """The version-dependent choices of one build."""

    strongly_typed: bool
    strongly_typed_flag: bool  # pass NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.x; the default in 11)
    explicit_batch_flag: bool  # pass EXPLICIT_BATCH (before 10.0)
    fp16_flag: bool
    int8_flag: bool
    calibrate_from_cache: bool  # with a calibration profile at the opt shape
    progress_monitor: bool


def plan_build(version: Version, options: TrtBuildOptions, model_kinds: frozenset[str]) -> BuildPlan:
    """Choose flags for TensorRT ``version`` and a model with ``model_kinds`` (see :func:`onnx_kinds`); refuse what cannot work."""
    trt_api.check_supported(version)
    if options.precision not in PRECISIONS:
        raise FcnEdgeError(f"precision {options.precision!r} is unknown: choose one of {', '.join(PRECISIONS)}")
    weak_possible = available("BuilderFlag.FP16", version) and available("BuilderFlag.INT8", version)
    strong_possible = available("NetworkDefinitionCreationFlag.STRONGLY_TYPED", version)
    strongly = strong_possible if options.strongly_typed is None else options.strongly_typed
    here = f"TensorRT {version[0]}.{version[1]}"
    if strongly and not strong_possible:
        raise FcnEdgeError(f"{here} has no strongly typed networks (10.0+): build weakly typed (strongly_typed=False)")
    if not strongly and not weak_possible:
        raise FcnEdgeError(
            f"{here} builds strongly typed networks only (BuilderFlag.FP16/INT8 and calibrators were removed): "
            "build the FP16 or Q/DQ ONNX strongly typed"
        )
    (_check_typed_model if strongly else _check_weak_model)(options, model_kinds)
    # the values' ranges: compile.options.BuildOptions, once; here what this TensorRT version can do
    if options.optimization_level is not None and not available("IBuilderConfig.builder_optimization_level", version):
        raise FcnEdgeError(f"{here} has no builder optimization level (8.6+): drop the optimization level")
    if options.dla_core is not None:
        _check_dla(version, options)
    return BuildPlan(
        strongly_typed=strongly,
        strongly_typed_flag=strongly and needed("NetworkDefinitionCreationFlag.STRONGLY_TYPED", version),
        explicit_batch_flag=needed("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", version),
        fp16_flag=not strongly and options.precision in ("fp16", "int8"),
        int8_flag=not strongly and options.precision == "int8",
        calibrate_from_cache=not strongly and options.calibration_cache is not None,
        progress_monitor=options.progress and available("IBuilderConfig.progress_monitor", version),
    )


def _check_dla(version: Version, options: TrtBuildOptions) -> None:
    """DLA builds: a release with DLA, FP16 or INT8, and one fixed input shape (DLA has no dynamic shapes)."""
    release = ".".join(map(str, version))
    if not trt_api.has_dla(version):
        raise FcnEdgeError(
            f"TensorRT {release} has no DLA support ({trt_api.DLA_SOURCE}): drop the DLA core or use TensorRT 10.7 or older"
        )
    if options.precision == "fp32":
        raise FcnEdgeError("DLA runs FP16 and INT8 only: build with precision fp16 or int8, or drop the DLA core")
    shapes = (options.min_shape, options.opt_shape, options.max_shape)
    if shapes[0] is not None and not shapes[0] == shapes[1] == shapes[2]:
        raise FcnEdgeError(
            f"DLA needs one fixed input shape, got min {shapes[0]}, opt {shapes[1]}, max {shapes[2]}: give the same "
            "shape for all three (the camera's frame size), or drop the DLA core"
        )


def _check_typed_model(options: TrtBuildOptions, kinds: frozenset[str]) -> None:
    """A strongly typed build keeps the model's types, so the model must already be in the asked precision."""
    if options.calibration_cache is not None:
        raise FcnEdgeError(
            "a calibration cache is for weakly typed INT8 builds (TensorRT 8.x/10.x): build the Q/DQ model "
            "instead, or build weakly typed (strongly_typed=False)"
        )
    if options.precision == "int8" and "qdq" not in kinds:
        raise FcnEdgeError(
            "an INT8 strongly typed build needs the Q/DQ model: build <name>.int8.onnx with fcn-edge build --int8 and give that"
        )
    if options.precision == "fp16" and "fp16" not in kinds:
        raise FcnEdgeError(
            "an FP16 strongly typed build needs an FP16 ONNX model: convert it to FP16 first, or build weakly typed (strongly_typed=False)"
        )
    if options.precision == "fp32" and kinds:
        raise FcnEdgeError(
            f"precision fp32 asked, but the model has {' and '.join(sorted(kinds))} tensors and a strongly typed "
            "build keeps them: pass the precision the model was made for"
        )


def _check_weak_model(options: TrtBuildOptions, kinds: frozenset[str]) -> None:
    if options.precision == "int8":
        if "qdq" not in kinds and options.calibration_cache is None:
            raise FcnEdgeError(
                "INT8 needs the Q/DQ model or a calibration cache (fcn-edge build --int8 writes both: "
                "<name>.int8.onnx, <name>.int8.calib): pass one of them"
            )
        if "qdq" in kinds and options.calibration_cache is not None:
            raise FcnEdgeError("the model already carries Q/DQ scales: drop the calibration cache")
    elif options.calibration_cache is not None:
        raise FcnEdgeError(f"a calibration cache only applies to INT8 builds, not {options.precision}: drop it")


def onnx_kinds(onnx_path: Path) -> frozenset[str]:
    """Which reduced precisions the model already carries: "qdq" (Quantize/DequantizeLinear) and/or "fp16"."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except DecodeError as error:
        raise FcnEdgeError(f"{onnx_path} is not an ONNX model ({error}): re-export it with fcn-edge export") from None
    fp16 = onnx.TensorProto.FLOAT16
    kinds = set()
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node):
        kinds.add("qdq")
    casts_to_fp16 = any(
        attr.name == "to" and attr.i == fp16 for node in graph.node if node.op_type == "Cast" for attr in node.attribute
    )
    if casts_to_fp16 or any(t.data_type == fp16 for t in graph.initializer):
        kinds.add("fp16")
    return frozenset(kinds)


def profile_shapes(options: TrtBuildOptions) -> tuple[Shape, Shape, Shape] | None:
    """(min, opt, max) for the input's optimization profile, checked; None when no shapes were given."""
    shapes = (options.min_shape, options.opt_shape, options.max_shape)
    if all(s is None for s in shapes):
        return None
    if any(s is None for s in shapes):
        raise FcnEdgeError("give all three of min, opt and max input shapes, or none")
    low, opt, high = (tuple(int(d) for d in s) for s in shapes)
    if not len(low) == len(opt) == len(high):
        raise FcnEdgeError(f"min {low}, opt {opt} and max {high} shapes have different ranks: give one shape per input dimension")
    if not all(0 < a <= b <= c for a, b, c in zip(low, opt, high)):
        raise FcnEdgeError(f"input shapes must satisfy 0 < min <= opt <= max in every dimension: got {low}, {opt}, {high}")
    return low, opt, high


def read_calibration_cache(path: Path, trt_version: str) -> bytes:
    """The cache bytes, after checking TensorRT will accept them rather than try to recalibrate."""
    from .calibration_cache import parse_cache, version_number

    if not path.is_file():
        raise FcnEdgeError(
            f"calibration cache {path} not found: fcn-edge build --int8 writes it beside the engine (<name>.int8.calib)"
        )
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise FcnEdgeError(
            f"{path} is not a text calibration cache: pass the <name>.int8.calib that fcn-edge build --int8 writes"
        ) from None
    written_for, _ = parse_cache(text, str(path))
    if written_for != version_number(trt_version):
        raise FcnEdgeError(
            f"{path} was written for TensorRT version {written_for}, this is {trt_version} "
            f"({version_number(trt_version)}); TensorRT would recalibrate, with no data: rewrite the cache for {trt_version}"
        )
    return text.encode("ascii")


_PRECISION_TOKENS = (
    ("uint8", "uint8"), ("int8", "int8"), ("bf16", "bf16"), ("bfloat", "bf16"), ("fp16", "fp16"), ("half", "fp16"),
    ("fp8", "fp8"), ("fp32", "fp32"), ("float", "fp32"), ("int32", "int32"), ("int64", "int64"), ("bool", "bool"),
)  # fmt: skip


def layer_precisions(engine_json: str) -> dict[str, int]:
    """Layers per precision, from the engine inspector's JSON (DETAILED verbosity).

    A layer's precision is the type of its first input (what its kernel reads), else of
    its first output; 10.x spells it in "Format/Datatype", 11.x in "DataType".
    """
    counts: Counter[str] = Counter()
    for layer in json.loads(engine_json).get("Layers", []):
        tensors = (layer.get("Inputs") or layer.get("Outputs") or []) if isinstance(layer, dict) else []
        counts[_precision(tensors[0]) if tensors else "unknown"] += 1
    return dict(sorted(counts.items()))


def _precision(tensor: dict[str, Any]) -> str:
    text = next((str(tensor[key]) for key in trt_api.LAYER_DTYPE_KEYS if key in tensor), "").lower()
    return next((name for token, name in _PRECISION_TOKENS if token in text), "unknown")


def build_engine(onnx_path: str | Path, engine_path: str | Path, options: TrtBuildOptions) -> dict[str, Any]:
    """Build ``onnx_path`` into ``engine_path`` (atomically); return the sidecar's TensorRT facts."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FcnEdgeError(f"ONNX model {onnx_path} does not exist: export one with fcn-edge export")
    shapes = profile_shapes(options)
    found = probe()
    if not found.available:
        raise FcnEdgeError(f"cannot build a TensorRT engine here: {found.reason}")
    trt = trt_api.import_tensorrt()
    release = trt_api.parse_release(trt.__version__)
    plan = plan_build(release, options, onnx_kinds(onnx_path))
    from . import compat, opset  # here, not at the top: python -m fcn_edge.backends.tensorrt.compat must run it fresh

    calibration = read_calibration_cache(options.calibration_cache, trt.__version__) if plan.calibrate_from_cache else None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    line = compat.line_of(release)
    with scratch_folder("opset") as workdir:  # 8.x parses opsets up to 17 only
        parsed = opset.for_line(onnx_path, line, Path(workdir))
        compat.require_parsable(parsed, line, str(onnx_path))
        if not parser.parse_from_file(str(parsed)):
            errors = " | ".join(" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors))
            raise FcnEdgeError(f"TensorRT cannot parse {onnx_path}: {errors or 'no details'}: re-export it with fcn-edge export")
    config = builder.create_builder_config()
    keep_alive = _configure(trt, builder, network, config, options, plan, shapes, calibration)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise FcnEdgeError(
            f"TensorRT could not build {onnx_path.name} (its errors are printed above): check the shapes, precision and DLA options"
        )
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(serialized)
    if options.timing_cache is not None:
        cache = config.get_timing_cache()
        with atomic_path(options.timing_cache) as tmp:
            tmp.write_bytes(cache.serialize())
    del keep_alive  # the calibrator, timing cache and monitor had to outlive the build; now they may go

    runtime = trt.Runtime(logger)
    if options.dla_core is not None:
        runtime.DLA_core = options.dla_core  # before deserializing: the engine's DLA layers run on this core
    engine = runtime.deserialize_cuda_engine(serialized)
    return {
        "tensorrt_version": trt.__version__,
        "gpu_name": found.gpu_name,
        "compute_capability": found.compute_capability,
        "sm_count": found.device.sm_count,  # with memory and DLA cores: the device's identity (runner.check_engine_matches)
        "memory_mb": found.device.memory_mb,
        "dla_cores": builder.num_DLA_cores,
        "precision": options.precision,
        "strongly_typed": plan.strongly_typed,
        "dla_core": options.dla_core,
        **_describe_io(trt, engine),
        "layer_precisions": _inspect_layers(trt, engine),
        "build_seconds": round(seconds, 3),
    }


def _network_flags(trt: Any, plan: BuildPlan) -> int:
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def _configure(
    trt: Any, builder: Any, network: Any, config: Any, options: TrtBuildOptions, plan: BuildPlan,
    shapes: tuple[Shape, Shape, Shape] | None, calibration: bytes | None,
) -> list[Any]:  # fmt: skip
    """Set everything but the network on ``config``; return the objects that must outlive the build."""
    keep_alive: list[Any] = []
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    input_name = _add_profile(builder, network, config, options.input_name, shapes)
    if options.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.optimization_level is not None:
        config.builder_optimization_level = options.optimization_level
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8_flag:
        config.set_flag(trt.BuilderFlag.INT8)
    if calibration is not None:
        calibrator = _cache_calibrator(trt, calibration)
        config.int8_calibrator = calibrator
        keep_alive.append(calibrator)
        if shapes is not None:  # required for runtime dimensions; the calibrator hands over no batches anyway
            profile = builder.create_optimization_profile()
            profile.set_shape(input_name, shapes[1], shapes[1], shapes[1])
            config.set_calibration_profile(profile)
    if options.dla_core is not None:
        if options.dla_core >= builder.num_DLA_cores:
            raise FcnEdgeError(
                f"DLA core {options.dla_core} does not exist: this device has {builder.num_DLA_cores} "
                "(Jetson AGX/NX Orin and Xavier have DLA): drop the DLA core or choose a smaller one"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if options.timing_cache is not None:
        blob = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        if not config.set_timing_cache(cache, False):
            print(
                f"note: timing cache {options.timing_cache} is from another GPU or TensorRT: starting a new one", file=sys.stderr
            )
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
        keep_alive.append(cache)
    if plan.progress_monitor:
        monitor = _progress_monitor(trt)
        config.progress_monitor = monitor
        keep_alive.append(monitor)
    return keep_alive


def _add_profile(
    builder: Any, network: Any, config: Any, input_name: str | None, shapes: tuple[Shape, Shape, Shape] | None
) -> str:
    """One optimization profile for the single input (required when it has dynamic dimensions); returns its name."""
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    inputs = {tensor.name: tensor for tensor in tensors}
    if input_name is None:
        if len(inputs) != 1:
            raise FcnEdgeError(f"the model has inputs {sorted(inputs)}: name the one the profile is for")
        input_name = next(iter(inputs))
    if input_name not in inputs:
        raise FcnEdgeError(f"the model has no input {input_name!r} (it has {sorted(inputs)}): pass one of those")
    tensor = inputs[input_name]
    if shapes is None:
        if any(d < 0 for d in tensor.shape):
            raise FcnEdgeError(f"input {input_name} has dynamic dimensions {list(tensor.shape)}: give min, opt and max shapes")
        return input_name
    if len(shapes[0]) != len(tensor.shape):
        raise FcnEdgeError(
            f"input {input_name} has {len(tensor.shape)} dimensions {list(tensor.shape)}, the shapes given have {len(shapes[0])}"
        )
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    config.add_optimization_profile(profile)
    return input_name


def _cache_calibrator(trt: Any, cache: bytes) -> Any:
    """An INT8 calibrator that only hands TensorRT a cache computed on the CPU: it never calibrates."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None  # no data: TensorRT uses the cache (read_calibration_cache checked its version)

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            """Nothing to write back: the cache is an input, owned by .calibration_cache."""

    return CacheCalibrator()


def _progress_monitor(trt: Any) -> Any:
    """Build phases as nested tqdm bars on stderr."""
    from tqdm import tqdm

    class TqdmProgress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, Any] = {}
            self._lock = threading.Lock()  # TensorRT reports from several threads

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                position = len(self._bars)
                self._bars[phase_name] = tqdm(
                    total=num_steps, desc=phase_name, position=position, leave=parent_phase is None, file=sys.stderr
                )

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return TqdmProgress()


def _describe_io(trt: Any, engine: Any) -> dict[str, Any]:
    """Inputs and outputs (name, numpy dtype, shape with -1 for dynamic) and each input's profile 0."""
    tensors: dict[str, list[dict[str, Any]]] = {"inputs": [], "outputs": []}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        side = "inputs" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "outputs"
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        tensors[side].append({"name": name, "dtype": dtype, "shape": list(engine.get_tensor_shape(name))})
    profile = {
        t["name"]: dict(zip(("min", "opt", "max"), (list(s) for s in engine.get_tensor_profile_shape(t["name"], 0))))
        for t in tensors["inputs"]
    }
    return {**tensors, "profile": profile}


def _inspect_layers(trt: Any, engine: Any) -> dict[str, int]:
    inspector = engine.create_engine_inspector()
    return layer_precisions(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
