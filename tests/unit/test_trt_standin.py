"""The TensorRT and CUDA STAND-INS (fcn_edge.standin) are faithful: real names only, real preconditions.

A stand-in that offers a name the real bindings lack, or accepts a call TensorRT refuses, would
hide the very defects it exists to find; these tests hold it to the bindings wheels CI downloads
and to the documented preconditions, and run fcn_edge's own code against it (imports swapped).
"""

from __future__ import annotations

import inspect
import sys
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fcn_edge.backends.cuda import CudaError
from fcn_edge.standin import tensorrt_api
from test_trt_bindings import releases, stubs  # noqa: F401 (fixtures)

OBJECTS = {  # the stand-in's classes of objects TensorRT hands out -> the real class
    tensorrt_api._Network: "INetworkDefinition", tensorrt_api._Config: "IBuilderConfig",
    tensorrt_api._Profile: "IOptimizationProfile", tensorrt_api._Engine: "ICudaEngine",
    tensorrt_api._Context: "IExecutionContext", tensorrt_api._TimingCache: "ITimingCache", tensorrt_api._Tensor: "ITensor",
}  # fmt: skip


def public(cls: type) -> set[str]:
    own = {n for n, _ in inspect.getmembers(cls) if not n.startswith("_")}
    return own - {"algorithm"}  # the stand-in's marker of which calibrator a subclass is


@pytest.mark.parametrize("line", tensorrt_api.RELEASES)
def test_every_name_the_stand_in_offers_is_in_that_releases_bindings(line, releases):
    (release,) = [r for r in releases if r.version == tuple(int(p) for p in line.split("."))]
    trt = tensorrt_api.module(line)
    missing = []
    for name, value in vars(trt).items():
        if name.startswith("_") or not isinstance(value, type):
            continue
        missing += [f"{name}.{m}" for m in public(value) if not release.has(f"{name}.{m}")] + (
            [name] if not release.has(name) else []
        )
    for cls, real in OBJECTS.items():
        members = public(cls) - {"model", "api", "strongly_typed", "explicit", "header", "engine", "contexts", "shapes",
                                 "addresses", "key", "flags", "profiles", "calibration_profile", "calibrator", "pool_limits",
                                 "timing_cache", "model_bytes", "data_type", "dtype"}  # fmt: skip
        missing += [f"{real}.{m}" for m in members if not release.has(f"{real}.{m}")]
    has_calibration = release.has("IBuilderConfig.int8_calibrator")
    assert has_calibration == (tuple(map(int, line.split("."))) < (11, 0))  # what _Config.__getattr__ offers
    assert not missing, f"the {line} stand-in offers names its bindings lack: {sorted(missing)}"


def frame_model(path, opset: int = 17):
    """uint8 NHWC frame -> labels: the brightest channel's index per pixel, through a float Cast as TensorRT needs."""
    nodes = [
        helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ArgMax", ["f"], ["arg"], axis=3, keepdims=0),
        helper.make_node("Cast", ["arg"], ["labels"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["n", "h", "w", 3])],
                              [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["n", "h", "w"])])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def test_a_dynamic_input_needs_a_profile_and_frames_must_fit_it(standin_imports, tmp_path, capsys):
    standin_imports("10.13")
    trt = sys.modules["tensorrt"]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert trt.OnnxParser(network, logger).parse_from_file(str(frame_model(tmp_path / "m.onnx")))
    config = builder.create_builder_config()
    assert builder.build_serialized_network(network, config) is None  # as TensorRT: logs and returns None
    assert "no optimization profile has been defined" in capsys.readouterr().err
    profile = builder.create_optimization_profile()
    profile.set_shape("frame", (1, 8, 8, 3), (1, 16, 16, 3), (1, 32, 32, 3))
    config.add_optimization_profile(profile)
    config.set_flag(trt.BuilderFlag.FP16)  # precision flags are for weakly typed networks
    assert builder.build_serialized_network(network, config) is None
    config.clear_flag(trt.BuilderFlag.FP16)
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    context = engine.create_execution_context()
    assert not context.set_input_shape("frame", (1, 64, 64, 3)) and context.set_input_shape("frame", (1, 16, 24, 3))
    assert tuple(context.get_tensor_shape("labels")) == (1, 16, 24)
    assert not context.set_tensor_address("labels", 0x1001)  # not 256-byte aligned
    assert not context.execute_async_v3(0)  # addresses unset


def test_engines_refuse_another_release_and_another_compute_capability(standin_imports, tmp_path, monkeypatch, capsys):
    standin_imports("10.3")
    trt = sys.modules["tensorrt"]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    trt.OnnxParser(network, logger).parse_from_file(str(frame_model(tmp_path / "m.onnx")))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("frame", (1, 8, 8, 3), (1, 8, 8, 3), (1, 8, 8, 3))
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    monkeypatch.setenv("FCN_EDGE_STANDIN_DEVICE", "orin-agx")
    assert trt.Runtime(logger).deserialize_cuda_engine(blob) is None
    assert "expecting compute 8.7 got compute 9.0" in capsys.readouterr().err
    assert tensorrt_api.module("10.13").Runtime(logger).deserialize_cuda_engine(blob) is None


def test_the_8x_parser_reduces_over_every_axis_when_axes_is_an_opset_18_input(standin_imports, tmp_path):
    """onnx-tensorrt 8.6 imports ReduceMean as opset 13 did: the ``axes`` input of opset 18 is ignored."""
    standin_imports("8.6")
    trt = sys.modules["tensorrt"]
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "r.onnx")
    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    assert trt.OnnxParser(network, logger).parse_from_file(str(tmp_path / "r.onnx"))
    assert [list(n.input) for n in network.model.graph.node] == [["x"]]


def test_pycuda_buffers_can_be_allocated_and_freed_from_any_thread(standin_imports):
    """The stream's capture thread allocates frame-pool slots: CUDA's context stack is per thread."""
    standin_imports("10.13")
    from fcn_edge.backends.cuda import open_cuda

    cuda = open_cuda("pycuda")
    found: list = []
    worker = threading.Thread(target=lambda: found.append(cuda.pinned(4096)))
    worker.start()
    worker.join()
    (buffer,) = found
    buffer.array[:] = 3
    device, stream = cuda.malloc(4096), cuda.stream()
    cuda.copy_htod(device, buffer, 4096, stream)
    cuda.synchronize(stream)
    closer = threading.Thread(target=lambda: (buffer.free(), cuda.free(device), cuda.close()))
    closer.start()
    closer.join()
    from fcn_edge.standin.device import GPU

    assert device not in GPU.memory.blocks and buffer.array is None


def test_work_on_a_stream_runs_when_it_is_synchronized(standin_imports):
    """A host that reads the labels before synchronizing reads stale bytes, as on a GPU."""
    standin_imports("10.13")
    from fcn_edge.backends.cuda import open_cuda

    cuda = open_cuda("cuda-python")
    source, target, device, stream = cuda.pinned(256), cuda.pinned(256), cuda.malloc(256), cuda.stream()
    source.array[:] = 9
    cuda.copy_htod(device, source, 256, stream)
    cuda.copy_dtoh(target, device, 256, stream)
    assert not target.array.any()
    cuda.synchronize(stream)
    assert (target.array == 9).all()
    source.free()
    with pytest.raises(CudaError, match="cudaMemcpyAsync failed: cudaErrorIllegalAddress"):
        cuda.copy_htod(device, source, 256, stream)  # freed memory: refused when the copy is queued
    cuda.copy_htod(device, target, 256, stream)
    target.free()  # freed while a queued copy still reads it
    with pytest.raises(CudaError, match="cudaStreamSynchronize failed: cudaErrorIllegalAddress"):
        cuda.synchronize(stream)
    cuda.free(device)
    cuda.destroy_stream(stream)
