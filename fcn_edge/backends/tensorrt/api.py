"""The one place that knows how TensorRT's Python API differs between 8.5/8.6, 10.x and 11.x.

Code that builds or runs engines asks :func:`available` / :func:`needed` instead of
comparing version numbers itself, so a version fact lives in exactly one row of
:data:`CHANGES`, next to the migration note or binding source it was read from. Rows with
``verified=False`` were inferred, not read; docs/tensorrt.md lists them.

tests/unit/test_trt_api.py checks this table and every ``trt.*`` name and method the
build and runtime modules use against the published 10.x API (the ``tensorrt-stubs``
package), and tests/unit/test_trt_bindings.py against the real Python bindings of 8.6,
10.3, 10.13 and 11.4, release by release, so a misspelt or removed name fails the default
test suite on a CPU machine. "bindings 8.6.1/10.3.0/10.13.3.9/11.4.0" in a source below means
that test read it from those wheels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import FcnEdgeError

Version = tuple[int, ...]  # (major, minor), or (major, minor, patch) where the patch matters (DLA)

MIN_VERSION: Version = (8, 5)  # the name-based tensor API (execute_async_v3) starts here; JetPack 5.1 ships 8.5
INSTALL = "pip install -e '.[gpu-cu12]' ('.[gpu-cu13]' on a CUDA 13 driver, >= 580; on Jetson JetPack's python3-libnvinfer)"


def import_tensorrt():
    """``import tensorrt``, or FcnEdgeError saying how to install it (the type stubs alone do not count)."""
    try:
        import tensorrt as trt
    except ImportError as error:
        raise FcnEdgeError(f"TensorRT is not installed ({error}): {INSTALL}") from None
    if not hasattr(trt, "Builder"):  # tensorrt-stubs installs an importable, empty 'tensorrt' namespace
        raise FcnEdgeError(f"TensorRT is not installed (only its type stubs, tensorrt-stubs, are): {INSTALL}")
    return trt


def parse_version(text: str) -> Version:
    """'10.3.0.30' -> (10, 3)."""
    match = re.match(r"(\d+)\.(\d+)", text)
    if not match:
        raise FcnEdgeError(f"TensorRT version {text!r} is not MAJOR.MINOR[...]: reinstall TensorRT")
    return int(match[1]), int(match[2])


def parse_release(text: str) -> Version:
    """'11.4.1.2' -> (11, 4, 1): for facts that change within a minor release."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise FcnEdgeError(f"TensorRT version {text!r} is not MAJOR.MINOR[...]: reinstall TensorRT")
    return int(match[1]), int(match[2]), int(match[3] or 0)


DLA_SOURCE = (
    "TensorRT 11.4.1 'Working with DLA': TensorRT 10.7 was the last 10.x release with DLA; none in 11.0-11.3; 11.4.0 "
    "only on Windows on ARM; 11.4.1 on Jetson AGX Orin with JetPack 7.2.2+"
)


def has_dla(release: Version) -> bool:
    """Whether TensorRT ``release`` (major, minor, patch) can build for DLA at all (see DLA_SOURCE)."""
    return tuple(release) < (10, 8) or tuple(release) >= (11, 4, 1)


def check_supported(version: Version) -> None:
    if version < MIN_VERSION:
        raise FcnEdgeError(
            f"TensorRT {version[0]}.{version[1]} is too old: fcn_edge needs {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer "
            "(JetPack 5.1+, or pip install -e '.[gpu-cu12]')"
        )


@dataclass(frozen=True)
class Change:
    """One TensorRT name whose presence or meaning depends on the version."""

    name: str  # "Class.member", "Class", or "json:<key>" for the engine inspector's JSON
    since: Version | None  # first version that has it; None: older than MIN_VERSION
    until: Version | None  # first version without it; None: still present
    redundant_from: Version | None  # from here it is still accepted but is the default, so we stop passing it
    used: bool  # False: listed so nobody reaches for it; tests check this against the code
    note: str
    source: str
    verified: bool = True


MIGRATION_10 = "TensorRT 10.0 migration guide (Python API changes, removed Python APIs)"
MIGRATION_11 = "TensorRT 11 migration guide, 'Removed Python APIs and Replacements'"
BINDINGS_85 = "TensorRT 8.5 python/src/infer/pyCore.cpp (NVIDIA/TensorRT)"

CHANGES: tuple[Change, ...] = (
    # Building: network flags and precision
    Change(
        "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
        None,
        (11, 0),
        (10, 0),
        True,
        "ignored from 10.0 (every network is explicit batch), gone in 11: pass it before 10.0 only",
        "TensorRT 10 Python API, NetworkDefinitionCreationFlag: '[DEPRECATED] Ignored because networks are "
        "always explicit batch in TensorRT 10.0'; bindings 10.13.3.9 have it, 11.4.0 do not",
    ),
    Change(
        "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
        (10, 0),
        None,
        (11, 0),
        True,
        "strongly typed networks: precision comes from the ONNX (Q/DQ, FP16 tensors), no precision flags; "
        "the default in 11.x (kept there but ignored), so not passed there",
        "TensorRT 11.0.0 release notes: 'createNetworkV2() produces a strongly typed network by default'; "
        "bindings 8.6.1 lack it; 10.3.0 and 11.4.0 have it (11.4: 'Deprecated in TensorRT 11.0 ... ignored')",
    ),
    Change(
        "BuilderFlag.FP16",
        None,
        (11, 0),
        None,
        True,
        "weak typing removed in 11: build an FP16 ONNX as a strongly typed network",
        MIGRATION_11,
    ),
    Change(
        "BuilderFlag.INT8",
        None,
        (11, 0),
        None,
        True,
        "weak typing removed in 11: build the Q/DQ ONNX as a strongly typed network",
        MIGRATION_11,
    ),
    Change(
        "IBuilderConfig.int8_calibrator",
        None,
        (11, 0),
        None,
        True,
        "deprecated in 10.1, removed in 11: explicit quantization with Q/DQ nodes",
        MIGRATION_11 + "; bindings 10.13.3.9 have it, 11.4.0 do not",
    ),
    Change(
        "IBuilderConfig.set_calibration_profile",
        None,
        (11, 0),
        None,
        True,
        "the input shapes implicit INT8 calibration runs at: required when the input has dynamic dimensions",
        "TensorRT 10.3 NvInfer.h IBuilderConfig::setCalibrationProfile; bindings 8.6.1-10.13.3.9 have it, 11.4.0 do not",
    ),
    Change(
        "IInt8EntropyCalibrator2",
        None,
        (11, 0),
        None,
        True,
        "implicit INT8 calibration goes with int8_calibrator in 11",
        MIGRATION_11 + "; bindings 10.13.3.9 have the class, 11.4.0 do not",
    ),
    Change(
        "IBuilderConfig.builder_optimization_level",
        (8, 6),
        None,
        None,
        True,
        "builder optimization level 0-5 (default 3)",
        "absent from " + BINDINGS_85 + "; bindings 8.6.1, 10.3.0, 10.13.3.9 and 11.4.0 have it",
    ),
    Change(
        "IBuilderConfig.progress_monitor",
        (10, 0),
        None,
        None,
        True,
        "build progress callbacks (IProgressMonitor)",
        "IProgressMonitor documented in the TensorRT 10.0.1 API; bindings 8.6.1 lack it, 10.3.0 have it",
    ),
    Change(
        "IProgressMonitor",
        (10, 0),
        None,
        None,
        True,
        "subclassed for the tqdm build progress",
        "as IBuilderConfig.progress_monitor",
    ),
    Change(
        "IBuilderConfig.set_memory_pool_limit",
        (8, 4),
        None,
        None,
        True,
        "workspace limit: set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)",
        "TensorRT 8.4.3 C++ API (IBuilderConfig::setMemoryPoolLimit); " + BINDINGS_85,
    ),
    Change(
        "IBuilderConfig.max_workspace_size",
        None,
        (10, 0),
        None,
        False,
        "deprecated in 8.4 for set_memory_pool_limit, removed in 10.0",
        BINDINGS_85 + " (deprecateMember -> set_memory_pool_limit); " + MIGRATION_10,
    ),
    Change(
        "Builder.build_engine",
        None,
        (10, 0),
        None,
        False,
        "removed in 10.0: build_serialized_network + Runtime.deserialize_cuda_engine",
        MIGRATION_10,
    ),
    # Running: the name-based tensor API replaced bindings
    Change(
        "IExecutionContext.execute_async_v3",
        (8, 5),
        None,
        None,
        True,
        "enqueue with addresses set by name (set_tensor_address); replaces execute_async_v2",
        BINDINGS_85,
    ),
    Change(
        "IExecutionContext.set_tensor_address",
        (8, 5),
        None,
        None,
        True,
        "bind one I/O tensor's device address by name",
        BINDINGS_85,
    ),
    Change(
        "ICudaEngine.get_tensor_profile_shape",
        (8, 5),
        None,
        None,
        True,
        "min/opt/max of an input by name; replaces get_profile_shape",
        BINDINGS_85,
    ),
    Change(
        "IExecutionContext.execute_async_v2",
        None,
        (10, 0),
        None,
        False,
        "binding-index execution: deprecated in 8.5 for execute_async_v3, removed in 10.0",
        BINDINGS_85 + "; " + MIGRATION_10 + ": 'execute_async_v3 replaces execute_async_v2; binding API removed'",
    ),
    Change(
        "IExecutionContext.set_binding_shape",
        None,
        (10, 0),
        None,
        False,
        "deprecated in 8.5 for set_input_shape, removed in 10.0",
        BINDINGS_85 + "; " + MIGRATION_10,
    ),
    Change(
        "ICudaEngine.num_bindings",
        None,
        (10, 0),
        None,
        False,
        "binding API: num_io_tensors / get_tensor_name / get_tensor_mode instead",
        MIGRATION_10,
    ),
    Change(
        "ICudaEngine.binding_is_input",
        None,
        (10, 0),
        None,
        False,
        "deprecated in 8.5 for get_tensor_mode, removed in 10.0",
        BINDINGS_85 + "; " + MIGRATION_10,
    ),
    # The engine inspector's JSON (get_engine_information(LayerInformationFormat.JSON))
    Change(
        "json:Format/Datatype",
        None,
        (11, 0),
        None,
        True,
        "a layer tensor's format and type in one string, e.g. 'Row major linear FP16 format'",
        "TensorRT 11 migration guide, IEngineInspector JSON output: 'the split of the Format/DataType field'",
    ),
    Change(
        "json:DataType",
        (11, 0),
        None,
        None,
        True,
        "the type alone, once Format/Datatype was split",
        "the key of 11.x's 'I/O Tensors' objects in the same guide; that layer tensors use the same key is assumed",
        verified=False,
    ),
)

LAYER_DTYPE_KEYS = ("DataType", "Format/Datatype")  # newest first: the json: rows above

_BY_NAME = {change.name: change for change in CHANGES}


def available(name: str, version: Version) -> bool:
    """Whether TensorRT ``version`` has ``name``; names not in the table exist in every supported version.

    A member of a class goes with its class: "IProgressMonitor.__init__" needs "IProgressMonitor".
    """
    owner = name.split(".")[0]
    if owner != name and not available(owner, version):
        return False
    change = _BY_NAME.get(name)
    if change is None:
        return True
    return (change.since is None or version >= change.since) and (change.until is None or version < change.until)


def needed(name: str, version: Version) -> bool:
    """Whether to pass ``name`` on ``version``: available, and not yet the default behaviour."""
    change = _BY_NAME.get(name)
    redundant = change is not None and change.redundant_from is not None and version >= change.redundant_from
    return available(name, version) and not redundant


# Which TensorRT class each variable name stands for in build.py and runner.py
# (``self._engine`` counts as ``engine``): the test resolves ``<variable>.<member>`` through
# this and checks the pairs below against the published API.
OBJECT_CLASSES = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "tensor": "ITensor",
    "parser": "OnnxParser",
    "config": "IBuilderConfig",
    "profile": "IOptimizationProfile",
    "cache": "ITimingCache",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "inspector": "EngineInspector",
}

CALLED_METHODS: tuple[tuple[str, str], ...] = (
    ("Builder", "build_serialized_network"),
    ("Builder", "create_builder_config"),
    ("Builder", "create_network"),
    ("Builder", "create_optimization_profile"),
    ("Builder", "num_DLA_cores"),
    ("EngineInspector", "get_engine_information"),
    ("IBuilderConfig", "DLA_core"),
    ("IBuilderConfig", "add_optimization_profile"),
    ("IBuilderConfig", "builder_optimization_level"),
    ("IBuilderConfig", "create_timing_cache"),
    ("IBuilderConfig", "default_device_type"),
    ("IBuilderConfig", "get_timing_cache"),
    ("IBuilderConfig", "int8_calibrator"),
    ("IBuilderConfig", "profiling_verbosity"),
    ("IBuilderConfig", "progress_monitor"),
    ("IBuilderConfig", "set_calibration_profile"),
    ("IBuilderConfig", "set_flag"),
    ("IBuilderConfig", "set_memory_pool_limit"),
    ("IBuilderConfig", "set_timing_cache"),
    ("ICudaEngine", "create_engine_inspector"),
    ("ICudaEngine", "create_execution_context"),
    ("ICudaEngine", "get_tensor_dtype"),
    ("ICudaEngine", "get_tensor_mode"),
    ("ICudaEngine", "get_tensor_name"),
    ("ICudaEngine", "get_tensor_profile_shape"),
    ("ICudaEngine", "get_tensor_shape"),
    ("ICudaEngine", "num_io_tensors"),
    ("IExecutionContext", "execute_async_v3"),
    ("IExecutionContext", "get_tensor_shape"),
    ("IExecutionContext", "set_input_shape"),
    ("IExecutionContext", "set_tensor_address"),
    ("INetworkDefinition", "get_input"),
    ("INetworkDefinition", "num_inputs"),
    ("IOptimizationProfile", "set_shape"),
    ("ITensor", "name"),
    ("ITensor", "shape"),
    ("ITimingCache", "serialize"),
    ("OnnxParser", "get_error"),
    ("OnnxParser", "num_errors"),
    ("OnnxParser", "parse_from_file"),
    ("Runtime", "DLA_core"),
    ("Runtime", "num_DLA_cores"),
    ("Runtime", "deserialize_cuda_engine"),
)
