"""A stand-in ``tensorrt`` module for one API line (8.6, 10.x, 11.x): what fcn_edge calls, with TensorRT's preconditions.

Names exist only in the lines whose real bindings have them (a test holds this to the
bindings wheels CI downloads). The build refuses what TensorRT refuses (a dynamic input
without an optimization profile, a profile that is not min <= opt <= max or does not fit
the input, implicit INT8 without a calibrator or, with runtime dimensions, without a
calibration profile, a cache for another TensorRT version with no data to recalibrate,
precision flags on a strongly typed network, DLA on a device or release without it, a
DLA core out of range, FP32 or dynamic shapes on DLA without GPU fallback) by logging an
error and returning None, as ``build_serialized_network`` does. The serialized engine is
the parsed graph at the engine's precision (:mod:`.graph`) plus the build's facts; the
runtime refuses it for another TensorRT version or compute capability, and the execution
context runs it with ONNX Runtime on :mod:`.device` memory, on the stream it is given.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from . import graph as parsing
from .device import DEVICE_SIDE, GPU

RELEASES = {"8.6": "8.6.1.6", "10.3": "10.3.0.26", "10.13": "10.13.3.9", "11.4": "11.4.0.106"}
MAGIC = b"fcn_edge TensorRT stand-in engine\0"
TIMING_MAGIC = b"fcn_edge TensorRT stand-in timing cache\0"


def _enum(name: str, members: list[str]) -> type:
    return type(name, (), {m: _Value(name, m, i) for i, m in enumerate(members)})


@dataclass(frozen=True)
class _Value:
    owner: str
    name: str
    value: int

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"{self.owner}.{self.name}"


class _Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity: int = 2) -> None:
        self.min_severity = min_severity

    def log(self, severity: int, message: str) -> None:
        if severity <= self.min_severity:
            print(
                f"[TensorRT stand-in] {('INTERNAL_ERROR', 'ERROR', 'WARNING', 'INFO', 'VERBOSE')[severity]}: {message}",
                file=sys.stderr,
            )


def module(line: str) -> types.ModuleType:
    """The ``tensorrt`` module of ``line`` ("8.6", "10.3", "10.13" or "11.4")."""
    if line not in RELEASES:
        raise ValueError(f"TensorRT stand-in line {line!r} is not one of {', '.join(RELEASES)}")
    major, minor = (int(p) for p in line.split("."))
    api = _Api(RELEASES[line], (major, minor))
    trt = types.ModuleType("tensorrt", f"TensorRT {RELEASES[line]} STAND-IN (fcn_edge.standin): for tests and CI only")
    trt.__version__ = RELEASES[line]
    for name, value in api.names().items():
        setattr(trt, name, value)
    return trt


class _Api:
    def __init__(self, release: str, version: tuple[int, int]) -> None:
        self.release, self.version = release, version
        self.line = "8" if version[0] < 10 else str(version[0])

    @property
    def has_dla(self) -> bool:  # TensorRT 11.4.1 "Working with DLA": none from 10.8 to 11.4.0
        return self.version < (10, 8)

    def names(self) -> dict[str, Any]:
        v = self.version
        data_types = ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8"] + (["INT64", "BF16"] if v >= (10, 0) else [])
        DataType = _enum("DataType", data_types)  # noqa: N806
        flags = ["GPU_FALLBACK", "REFIT"]
        if v < (11, 0):
            flags += ["FP16", "INT8"]
        network_flags = (["EXPLICIT_BATCH"] if v < (11, 0) else []) + (["STRONGLY_TYPED"] if v >= (10, 0) else [])
        api = self
        nptypes = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
                   "UINT8": np.uint8, "INT64": np.int64}  # fmt: skip

        class Builder:
            def __init__(self, logger: _Logger) -> None:
                self.logger = logger

            @property
            def num_DLA_cores(self) -> int:  # noqa: N802
                return GPU.device.dla_cores if api.has_dla else 0

            def create_network(self, flags: int = 0) -> _Network:
                known = {f: 1 << int(getattr(NetworkDefinitionCreationFlag, f)) for f in network_flags}
                unknown = flags & ~sum(known.values())
                if unknown:
                    raise TypeError(f"unknown NetworkDefinitionCreationFlag bits {unknown:#x}")
                strongly = v >= (11, 0) or bool(flags & known.get("STRONGLY_TYPED", 0))
                explicit = v >= (10, 0) or bool(flags & known.get("EXPLICIT_BATCH", 0))
                return _Network(api, strongly, explicit, DataType)

            def create_builder_config(self) -> _Config:
                return _Config(api)

            def create_optimization_profile(self) -> _Profile:
                return _Profile()

            def build_serialized_network(self, network: _Network, config: _Config) -> IHostMemory | None:
                return _build(api, self, network, config)

        NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", network_flags)  # noqa: N806
        BuilderFlag = _enum("BuilderFlag", flags)  # noqa: N806
        DeviceType = _enum("DeviceType", ["GPU", "DLA"])  # noqa: N806

        class Runtime:
            def __init__(self, logger: _Logger) -> None:
                self.logger = logger
                self.DLA_core = -1

            @property
            def num_DLA_cores(self) -> int:  # noqa: N802
                return GPU.device.dla_cores if api.has_dla else 0

            def deserialize_cuda_engine(self, blob: Any) -> _Engine | None:
                return _deserialize(api, self, bytes(blob), DataType)

        class OnnxParser:
            def __init__(self, network: _Network, logger: _Logger) -> None:
                self.network, self.logger = network, logger
                self.errors: list[str] = []

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, index: int) -> str:
                return self.errors[index]

            def clear_errors(self) -> None:
                self.errors = []

            def parse_from_file(self, path: str) -> bool:
                try:
                    model = onnx.load(str(path))
                except Exception as error:  # noqa: BLE001 - the parser reports, it does not raise
                    self.errors.append(f"Failed to parse ONNX model from file {path}: {error}")
                    return False
                warn = lambda message: self.logger.log(_Logger.WARNING, message)  # noqa: E731
                try:
                    self.network.model = parsing.parse(model, api.line, self.network.explicit, warn)
                except parsing.ParseError as error:
                    self.errors.append(f"In node of {Path(path).name}: {error}")
                    return False
                return True

        class IInt8EntropyCalibrator2:
            algorithm = "EntropyCalibration2"

            def __init__(self) -> None:
                """Subclasses call this, as pybind11 requires."""

        class IProgressMonitor:
            def __init__(self) -> None:
                """Subclasses call this, as pybind11 requires."""

        names: dict[str, Any] = {
            "Builder": Builder, "Runtime": Runtime, "OnnxParser": OnnxParser, "Logger": _Logger,
            "DataType": DataType, "BuilderFlag": BuilderFlag, "DeviceType": DeviceType,
            "NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag,
            "TensorIOMode": _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"]),
            "MemoryPoolType": _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM"]),
            "ProfilingVerbosity": _enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"]),
            "LayerInformationFormat": _enum("LayerInformationFormat", ["ONELINE", "JSON"]),
            "nptype": lambda dtype: nptypes[dtype.name],
            "float32": DataType.FLOAT, "float16": DataType.HALF, "int8": DataType.INT8, "int32": DataType.INT32,
            "uint8": DataType.UINT8, "bool": DataType.BOOL,
        }  # fmt: skip
        if v < (11, 0):
            names["IInt8EntropyCalibrator2"] = IInt8EntropyCalibrator2
        if v >= (10, 0):
            names["IProgressMonitor"] = IProgressMonitor
        return names


class IHostMemory(bytes):
    """A serialized engine: bytes TensorRT owns (the buffer protocol, ``nbytes``)."""

    @property
    def nbytes(self) -> int:
        return len(self)


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: Any


class _Network:
    def __init__(self, api: _Api, strongly_typed: bool, explicit: bool, data_type: type) -> None:
        self.api, self.strongly_typed, self.explicit, self._data_type = api, strongly_typed, explicit, data_type
        self.model: onnx.ModelProto | None = None

    def _io(self, values) -> list[_Tensor]:
        if self.model is None:
            return []
        initializers = {t.name for t in self.model.graph.initializer}
        return [
            _Tensor(v.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim),
                    _dtype(self._data_type, v.type.tensor_type.elem_type))
            for v in values if v.name not in initializers
        ]  # fmt: skip

    @property
    def num_inputs(self) -> int:
        return len(self._io(self.model.graph.input)) if self.model else 0

    def get_input(self, index: int) -> _Tensor:
        return self._io(self.model.graph.input)[index]

    @property
    def num_outputs(self) -> int:
        return len(self.model.graph.output) if self.model else 0

    def get_output(self, index: int) -> _Tensor:
        return self._io(self.model.graph.output)[index]

    @property
    def has_implicit_batch_dimension(self) -> bool:
        return not self.explicit


def _dtype(data_type: type, elem_type: int) -> Any:
    token = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.INT8: "INT8",
             onnx.TensorProto.INT32: "INT32", onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.UINT8: "UINT8",
             onnx.TensorProto.INT64: "INT64"}.get(elem_type)  # fmt: skip
    if token is None or not hasattr(data_type, token):
        raise parsing.ParseError(f"no TensorRT type for ONNX type {onnx.TensorProto.DataType.Name(elem_type)}")
    return getattr(data_type, token)


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's keywords
        self.shapes[name] = tuple(tuple(int(d) for d in s) for s in (min, opt, max))

    def get_shape(self, name: str) -> list[tuple[int, ...]]:
        return list(self.shapes.get(name, ()))


@dataclass
class _TimingCache:
    key: dict[str, Any]

    def serialize(self) -> IHostMemory:
        return IHostMemory(TIMING_MAGIC + json.dumps(self.key).encode())


class _Config:
    def __init__(self, api: _Api) -> None:
        self.api = api
        self.flags: set[str] = set()
        self.profiles: list[_Profile] = []
        self.calibration_profile: _Profile | None = None
        self.calibrator: Any = None
        self.default_device_type: Any = None
        self.DLA_core = -1
        self.pool_limits: dict[str, int] = {}
        self.profiling_verbosity: Any = None
        self.progress_monitor: Any = None
        self.timing_cache: _TimingCache | None = None
        if api.version >= (8, 6):
            self.builder_optimization_level = 3

    def set_flag(self, flag: Any) -> None:
        self.flags.add(flag.name)

    def clear_flag(self, flag: Any) -> None:
        self.flags.discard(flag.name)

    def get_flag(self, flag: Any) -> bool:
        return flag.name in self.flags

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        if size < 0:
            raise ValueError(f"memory pool limit {size} is negative")
        self.pool_limits[pool.name] = int(size)

    def create_timing_cache(self, blob: bytes) -> _TimingCache:
        blob = bytes(blob)
        key = json.loads(blob[len(TIMING_MAGIC) :]) if blob.startswith(TIMING_MAGIC) else _timing_key(self.api)
        return _TimingCache(key)

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        if cache.key != _timing_key(self.api) and not ignore_mismatch:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self.timing_cache

    def __getattr__(self, name: str) -> Any:
        if name in ("int8_calibrator", "set_calibration_profile") and self.api.version < (11, 0):
            return self.calibrator if name == "int8_calibrator" else self._set_calibration_profile
        raise AttributeError(f"'tensorrt.IBuilderConfig' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "int8_calibrator":
            if self.api.version >= (11, 0):
                raise AttributeError("'tensorrt.IBuilderConfig' object has no attribute 'int8_calibrator'")
            name = "calibrator"
        if name == "builder_optimization_level" and not 0 <= int(value) <= 5:
            raise ValueError(f"builder optimization level {value} is not 0-5")
        object.__setattr__(self, name, value)

    def _set_calibration_profile(self, profile: _Profile) -> bool:
        self.calibration_profile = profile
        return True


def _timing_key(api: _Api) -> dict[str, Any]:
    device = GPU.device
    return {"tensorrt": api.release, "device": device.name, "compute": list(device.compute_capability)}


class _BuildError(Exception):
    """What build_serialized_network logs before it returns None."""


def _build(api: _Api, builder: Any, network: _Network, config: _Config) -> IHostMemory | None:
    try:
        if network.model is None:
            raise _BuildError("the network is empty: parse an ONNX model into it first")
        return IHostMemory(_engine_blob(api, builder, network, config))
    except _BuildError as error:
        builder.logger.log(_Logger.ERROR, str(error))
        return None


def _engine_blob(api: _Api, builder: Any, network: _Network, config: _Config) -> bytes:
    model = network.model
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    weak_flags = {"FP16", "INT8"} & config.flags
    if network.strongly_typed and weak_flags:
        raise _BuildError(f"BuilderFlag {', '.join(sorted(weak_flags))} cannot be set for a strongly typed network")
    profile = _check_profiles(inputs, config)
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    scales = _implicit_scales(api, inputs, config, profile, qdq) if "INT8" in config.flags else {}
    dla = _check_dla(builder, config, profile, network)
    monitor = config.progress_monitor
    if monitor is not None:
        monitor.phase_start("Building engine", None, 2)
        if not monitor.step_complete("Building engine", 0) or not monitor.step_complete("Building engine", 1):
            raise _BuildError("the build was cancelled by the progress monitor")
        monitor.phase_finish("Building engine")
    fp16 = "FP16" in config.flags
    runs = parsing.executable(model, fp16, scales)
    device = GPU.device
    header = {
        "tensorrt_version": api.release,
        "compute_capability": list(device.compute_capability),
        "device_name": device.name,
        "strongly_typed": network.strongly_typed,
        "flags": sorted(config.flags),
        "profile": {name: [list(s) for s in shapes] for name, shapes in profile.items()},
        "io": _io(model),
        "dla_core": dla,
        "layers": _layers(model, network.strongly_typed, fp16, scales, api),
    }
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(8, "little") + head + runs.SerializeToString()


def _check_profiles(inputs: list[_Tensor], config: _Config) -> dict[str, tuple[tuple[int, ...], ...]]:
    dynamic = [t for t in inputs if any(d < 0 for d in t.shape)]
    if dynamic and not config.profiles:
        raise _BuildError(
            f"Network has dynamic or shape inputs ({dynamic[0].name}), but no optimization profile has been defined"
        )
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
    for tensor in inputs:
        found = config.profiles[0].shapes.get(tensor.name) if config.profiles else None
        if found is None:
            if tensor in dynamic:
                raise _BuildError(f"optimization profile is missing values for input {tensor.name}")
            found = (tensor.shape,) * 3
        _check_shapes(tensor, found, "optimization profile")
        shapes[tensor.name] = found
    return shapes


def _check_shapes(tensor: _Tensor, shapes: tuple[tuple[int, ...], ...], what: str) -> None:
    low, opt, high = shapes
    if not len(low) == len(opt) == len(high) == len(tensor.shape):
        raise _BuildError(f"{what}: input {tensor.name} has {len(tensor.shape)} dimensions, the profile gives {len(low)}")
    for d, (a, b, c) in enumerate(zip(low, opt, high)):
        if not 0 < a <= b <= c:
            raise _BuildError(f"{what}: input {tensor.name} dimension {d} must satisfy 0 < min <= opt <= max, got {a}, {b}, {c}")
        if tensor.shape[d] >= 0 and not a == c == tensor.shape[d]:
            raise _BuildError(f"{what}: input {tensor.name} dimension {d} is {tensor.shape[d]}, the profile gives {a}..{c}")


def _implicit_scales(api: _Api, inputs: list[_Tensor], config: _Config, profile: dict, qdq: bool) -> dict[str, float]:
    """Scales from the calibrator's cache (implicit INT8); none when the graph is explicitly quantized."""
    if qdq:
        return {}  # explicit quantization: Q/DQ decide, the calibrator is not used
    calibrator = config.calibrator
    if calibrator is None:
        raise _BuildError("INT8 is set, the network has no Q/DQ and no calibrator was given: dynamic ranges are missing")
    dynamic = any(any(d < 0 for d in t.shape) for t in inputs)
    if dynamic and config.calibration_profile is None:
        raise _BuildError(
            "calibration with runtime dimensions needs a calibration profile (IBuilderConfig.set_calibration_profile)"
        )
    if dynamic:
        for tensor in inputs:
            low, opt, high = config.calibration_profile.shapes.get(tensor.name, ((), (), ()))
            if not low or low != high:
                raise _BuildError(f"the calibration profile must give input {tensor.name} one shape (min == opt == max)")
    from fcn_edge.backends.tensorrt.calibration_cache import parse_cache, version_number

    blob = calibrator.read_calibration_cache()
    text = bytes(blob).decode("ascii", "replace") if blob else ""
    algorithm = getattr(type(calibrator), "algorithm", "EntropyCalibration2")
    wanted = f"TRT-{version_number(api.release)}-{algorithm}"
    if not text.startswith(wanted + "\n"):
        batch = calibrator.get_batch([t.name for t in inputs])  # the cache does not apply: TensorRT calibrates
        if batch is None:
            raise _BuildError(
                f"the calibration cache does not start with {wanted!r} and the calibrator gave no batch: calibration failure"
            )
        raise _BuildError("the stand-in does not calibrate from batches: give a calibration cache for this TensorRT")
    return parse_cache(text)[1]


def _check_dla(builder: Any, config: _Config, profile: dict, network: _Network) -> int | None:
    if config.default_device_type is None or config.default_device_type.name != "DLA":
        return None
    cores = builder.num_DLA_cores
    if not 0 <= config.DLA_core < cores:
        raise _BuildError(f"DLA core {config.DLA_core} is not available: the device has {cores} DLA cores")
    fallback = "GPU_FALLBACK" in config.flags
    fixed = all(s[0] == s[2] for s in profile.values())
    reduced = network.strongly_typed or {"FP16", "INT8"} & config.flags
    if not fallback and not fixed:
        raise _BuildError("DLA does not support dynamic shapes: set GPU_FALLBACK or give one input shape")
    if not fallback and not reduced:
        raise _BuildError("DLA supports only FP16 and INT8 precision: set BuilderFlag.FP16 or INT8, or GPU_FALLBACK")
    return config.DLA_core if fixed and reduced else None  # else every layer falls back to the GPU


def _io(model: onnx.ModelProto) -> list[dict[str, Any]]:
    initializers = {t.name for t in model.graph.initializer}
    found = []
    for mode, values in (("INPUT", model.graph.input), ("OUTPUT", model.graph.output)):
        for value in values:
            if value.name in initializers:
                continue
            tensor_type = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
            found.append({"name": value.name, "mode": mode, "elem_type": tensor_type.elem_type, "shape": dims})
    return found


def _layers(model: onnx.ModelProto, strongly: bool, fp16: bool, scales: dict[str, float], api: _Api) -> list[dict[str, Any]]:
    """The engine inspector's layers: one per node that is not a Q/DQ, typed by what it reads."""
    key = "DataType" if api.version >= (11, 0) else "Format/Datatype"
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    types = parsing.types_of(parsing.typed(model))
    layers = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        first = node.input[0] if node.input else ""
        if first in dequantized or first in scales:
            text = "INT8"
        elif types.get(first) == onnx.TensorProto.FLOAT16 or (fp16 and types.get(first) == onnx.TensorProto.FLOAT):
            text = "FP16"
        elif types.get(first) == onnx.TensorProto.UINT8:
            text = "UInt8"
        else:
            text = "FP32" if types.get(first) in (onnx.TensorProto.FLOAT, None) else "Int32"
        layers.append({"Name": node.name or node.output[0], "Inputs": [{"Name": first, key: f"Row major linear {text} format"}]})
    return layers


@dataclass
class _Engine:
    header: dict[str, Any]
    model_bytes: bytes
    data_type: type
    contexts: list["_Context"] = field(default_factory=list)

    def _tensor(self, name: str) -> dict[str, Any]:
        for tensor in self.header["io"]:
            if tensor["name"] == name:
                return tensor
        raise KeyError(name)

    @property
    def num_io_tensors(self) -> int:
        return len(self.header["io"])

    def get_tensor_name(self, index: int) -> str:
        return self.header["io"][index]["name"]

    def get_tensor_mode(self, name: str) -> Any:
        return _Value("TensorIOMode", self._tensor(name)["mode"], 1 if self._tensor(name)["mode"] == "INPUT" else 2)

    def get_tensor_dtype(self, name: str) -> Any:
        return _dtype(self.data_type, self._tensor(name)["elem_type"])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensor(name)["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        if profile_index != 0 or name not in self.header["profile"]:
            raise ValueError(f"no profile {profile_index} for tensor {name}")
        return [tuple(s) for s in self.header["profile"][name]]

    def create_execution_context(self) -> "_Context":
        context = _Context(self)
        self.contexts.append(context)
        return context

    def create_engine_inspector(self) -> Any:
        layers = self.header["layers"]
        return types.SimpleNamespace(get_engine_information=lambda fmt: json.dumps({"Layers": layers}))


def _deserialize(api: _Api, runtime: Any, blob: bytes, data_type: type) -> _Engine | None:
    def refuse(message: str) -> None:
        runtime.logger.log(_Logger.ERROR, message)

    if not blob.startswith(MAGIC):
        return refuse("IRuntime::deserializeCudaEngine: the engine plan file is not a TensorRT engine (magic tag mismatch)")
    at = len(MAGIC)
    size = int.from_bytes(blob[at : at + 8], "little")
    header = json.loads(blob[at + 8 : at + 8 + size])
    if header["tensorrt_version"] != api.release:
        return refuse(f"The engine plan file is not compatible with this version of TensorRT, expecting library version "
                      f"{api.release} got {header['tensorrt_version']}, please rebuild.")  # fmt: skip
    device = GPU.device
    if header["compute_capability"] != list(device.compute_capability):
        return refuse(f"The engine plan file is generated on an incompatible device, expecting compute "
                      f"{'.'.join(map(str, device.compute_capability))} got compute "
                      f"{'.'.join(map(str, header['compute_capability']))}, please rebuild.")  # fmt: skip
    if header["device_name"] != device.name:
        runtime.logger.log(_Logger.WARNING, "Using an engine plan file across different models of devices is not recommended")
    if header["dla_core"] is not None and not 0 <= runtime.DLA_core < runtime.num_DLA_cores:
        return refuse(f"the engine runs layers on DLA but the runtime's DLA core is {runtime.DLA_core} "
                      f"(this device has {runtime.num_DLA_cores}): set IRuntime.DLA_core before deserializing")  # fmt: skip
    return _Engine(header, blob[at + 8 + size :], data_type)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self._session = None
        self._output_shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}

    def _inputs(self) -> list[dict[str, Any]]:
        return [t for t in self.engine.header["io"] if t["mode"] == "INPUT"]

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        profile = self.engine.header["profile"].get(name)
        if profile is None or len(shape) != len(profile[0]):
            return False
        if not all(a <= s <= b for a, s, b in zip(profile[0], shape, profile[2])):
            return False  # TensorRT: "Supplied binding dimension ... is out of bounds for the profile"
        self.shapes[name] = shape
        return True

    @property
    def all_binding_shapes_specified(self) -> bool:
        return all(t["name"] in self.shapes for t in self._inputs())

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        tensor = self.engine._tensor(name)
        if tensor["mode"] == "INPUT":
            return self.shapes.get(name, tuple(tensor["shape"]))
        if not self.all_binding_shapes_specified:
            return tuple(tensor["shape"])
        return self._output_shapes_now()[name]

    def _output_shapes_now(self) -> dict[str, tuple[int, ...]]:
        key = tuple(sorted(self.shapes.items()))
        if key not in self._output_shapes:
            feeds = {n: np.zeros(s, _numpy(self.engine, n)) for n, s in self.shapes.items()}
            outputs = [t["name"] for t in self.engine.header["io"] if t["mode"] == "OUTPUT"]
            values = self._run(feeds)
            self._output_shapes[key] = {n: tuple(v.shape) for n, v in zip(outputs, values)}
        return self._output_shapes[key]

    def set_tensor_address(self, name: str, address: int) -> bool:
        try:
            self.engine._tensor(name)
        except KeyError:
            return False
        if not address or int(address) % 256:
            return False  # NvInferRuntime.h: null or not 256-byte aligned
        self.addresses[name] = int(address)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self.addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        io = self.engine.header["io"]
        if not self.all_binding_shapes_specified or any(t["name"] not in self.addresses for t in io):
            return False
        try:
            stream = GPU.stream(stream_handle)
        except Exception:  # noqa: BLE001 - TensorRT reports an invalid stream by returning False
            return False
        shapes = {**self.shapes, **self._output_shapes_now()}
        sizes = {t["name"]: int(np.prod(shapes[t["name"]])) * np.dtype(_numpy(self.engine, t["name"])).itemsize for t in io}
        for name, address in self.addresses.items():
            GPU.memory.view(address, sizes[name], DEVICE_SIDE)  # enqueue-time check: device memory of the right size

        def run() -> None:
            feeds = {
                t["name"]: GPU.memory.view(self.addresses[t["name"]], sizes[t["name"]], DEVICE_SIDE)
                .view(_numpy(self.engine, t["name"])).reshape(shapes[t["name"]]).copy()
                for t in io if t["mode"] == "INPUT"
            }  # fmt: skip
            outputs = [t for t in io if t["mode"] == "OUTPUT"]
            for tensor, value in zip(outputs, self._run(feeds)):
                target = GPU.memory.view(self.addresses[tensor["name"]], sizes[tensor["name"]], DEVICE_SIDE)
                target[:] = np.ascontiguousarray(value, _numpy(self.engine, tensor["name"])).view(np.uint8).reshape(-1)

        stream.enqueue(run)
        return True

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            self._session = ort.InferenceSession(self.engine.model_bytes, options, providers=["CPUExecutionProvider"])
        outputs = [t["name"] for t in self.engine.header["io"] if t["mode"] == "OUTPUT"]
        return self._session.run(outputs, feeds)


def _numpy(engine: _Engine, name: str) -> Any:
    return onnx.helper.tensor_dtype_to_np_dtype(engine._tensor(name)["elem_type"])
