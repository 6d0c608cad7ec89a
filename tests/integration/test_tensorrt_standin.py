"""The GPU path end to end on the STAND-INS for TensorRT and CUDA (fcn_edge.standin), as a user runs it.

No GPU and no TensorRT here: ``FCN_EDGE_TENSORRT_STANDIN`` makes ``import tensorrt``, cuda-python and
PyCUDA resolve to stand-ins that keep TensorRT's and CUDA's preconditions and run the engine's graph
with ONNX Runtime at the engine's precision. Nothing of fcn_edge is patched: these are the commands of
README, each on one TensorRT API line, with no shape flag (the build chooses the profile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, assert_user_error, run_script
from fcn_edge.data.synthetic import HELDOUT_SEED, PALETTE, render_scene
from fcn_edge.stream.overlay import Overlay
from fcn_edge.stream.pipeline import Stream, StreamOptions
from fcn_edge.stream.sinks import Sink
from fcn_edge.stream.sources import Source

SMALL = ["--verify-scenes", "4", "--verify-size", "64x128", "--latency-size", "64x128", "--calib-size", "64x128",
         "--search-minutes", "0", "--no-progress"]  # fmt: skip
BUILDS = {  # id: (TensorRT line, device, precision flags)
    "8.6-int8": ("8.6", "desktop", ["--int8"]),
    "10.13-fp16": ("10.13", "desktop", ["--fp16"]),
    "11.4-best": ("11.4", "desktop", []),
    "10.3-dla": ("10.3", "orin-agx", ["--int8", "--dla-core", "0"]),
}


def standin(line: str, device: str) -> dict[str, str]:
    return {"FCN_EDGE_TENSORRT_STANDIN": line, "FCN_EDGE_STANDIN_DEVICE": device}


def stream(engine: Path, line: str, device: str, *args: str, source: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m fcn_edge.stream --backend tensorrt`` on ``source`` (default: six synthetic frames)."""
    source = source or ("--synthetic", "--size", "64x128", "--fps", "0", "--max-frames", "6")
    command = [
        sys.executable,
        "-m",
        "fcn_edge.stream",
        *source,
        "--model",
        str(engine),
        "--backend",
        "tensorrt",
        "--headless",
        *args,
    ]
    env = {**os.environ, **standin(line, device)}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """Six held-out scenes, 128 wide and 64 high, as an MJPG video file."""
    path = tmp_path_factory.mktemp("video") / "scenes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 64))
    for i in range(6):
        writer.write(render_scene(np.random.default_rng(HELDOUT_SEED + i), (64, 128))[0])
    writer.release()
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Each build's sidecar, built once for the module."""
    found = {}
    for name, (line, device, flags) in BUILDS.items():
        engines = tmp_path_factory.mktemp(name) / "engines"
        result = run_script("build_engine.py", *flags, *SMALL, "--engines-dir", engines, env=standin(line, device))
        assert result.returncode == 0, result.stdout + result.stderr
        (found[name],) = engines.glob("*.engine.json")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILDS)
def test_the_main_command_builds_an_engine_whose_own_labels_meet_the_budget(built, name):
    line, device, flags = BUILDS[name]
    sidecar = json.loads(built[name].read_text())
    engine_row = sidecar["verification"]["rows"][0]
    assert engine_row["label"] == f"{sidecar['precision'].upper()} TensorRT engine"  # the engine's labels decide, not ORT's
    assert engine_row["agreement"] >= 0.98 and engine_row["miou_drop"] <= 1.0 and sidecar["verification"]["passed"]
    assert sidecar["engine"]["tensorrt_version"].startswith(line + ".")
    profile = sidecar["profiles"]  # from the sizes the build knew: calibration hold-outs, verification, latency
    assert profile["opt"] == [1, 64, 128, 3] and profile["min"] == [1, 64, 128, 3]
    if "--dla-core" not in flags:
        assert profile["max"] == [1, 1080, 1920, 3]  # a 1080p camera streams without --max-shape
    else:
        assert sidecar["engine"]["dla_core"] == 0 and profile["min"] == profile["opt"] == profile["max"]
        assert sidecar["precision"] == "int8" and sidecar["engine"]["dla_cores"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_the_stream_runs_the_engine_on_a_video_with_either_cuda_binding(built, video, binding, tmp_path):
    """PyCUDA: the capture thread allocates frame-pool buffers, where no context is current unless the binding pushes it."""
    engine = built["8.6-int8"].with_suffix("")
    result = stream(engine, "8.6", "desktop", "--cuda-binding", binding, "--stats-json", str(tmp_path / "stats.json"),
                    "--output", str(tmp_path / "overlay.mp4"), source=("--video", str(video)))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "stats.json").read_text())["frames"] == 6
    assert cv2.VideoCapture(str(tmp_path / "overlay.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 6


@pytest.mark.slow
def test_jetson_runs_its_dla_engine_in_mapped_memory_and_another_orin_refuses_it(built, tmp_path):
    engine = built["10.3-dla"].with_suffix("")
    result = stream(engine, "10.3", "orin-agx", "--stats-json", str(tmp_path / "stats.json"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "stats.json").read_text())["frames"] == 6
    refused = stream(engine, "10.3", "orin-nano")  # same name "Orin" and compute 8.7: told apart by SMs, memory, DLA
    assert_user_error(refused, "with 2 DLA cores, this machine has Orin (stand-in) (compute 8.7, 8 SMs", "rebuild")


@pytest.mark.slow
def test_an_engine_of_another_tensorrt_is_refused_with_the_rebuild_command(built):
    engine = built["10.13-fp16"].with_suffix("")
    assert_user_error(stream(engine, "10.3", "desktop"), "built with TensorRT 10.13.3.9, this machine has 10.3.0.26", "rebuild")


@pytest.mark.slow
def test_an_opset_18_graph_is_built_at_opset_17_for_the_8x_parser(tmp_path):
    """--refine's ReduceMean takes its axes as an input from opset 18, which the 8.6 importer ignores: built as exported,
    the engine averages over every axis and its labels miss the budget; the build converts it to opset 17 first."""
    model = tmp_path / "refine.onnx"
    export = run_script("export_onnx.py", "--refine", "--output", model)
    assert export.returncode == 0, export.stderr
    result = run_script("build_engine.py", "--onnx", model, "--fp32", *SMALL, "--engines-dir", tmp_path / "engines",
                        env=standin("8.6", "desktop"))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (sidecar,) = (tmp_path / "engines").glob("*.engine.json")
    engine_row = json.loads(sidecar.read_text())["verification"]["rows"][0]
    assert engine_row["label"] == "FP32 TensorRT engine" and engine_row["agreement"] >= 0.999


class SizeChanges(Source):
    """Frames whose size changes every two, read into the pool's buffer when it fits (as OpenCV reads video)."""

    description = "frames of two sizes"

    def __init__(self, count: int) -> None:
        self.sizes = [(96, 128) if i // 2 % 2 == 0 else (64, 96) for i in range(count)]
        self.index = 0

    def open(self) -> None:
        self.index = 0

    def read(self, buffer):
        if self.index >= len(self.sizes):
            return None
        shape = (*self.sizes[self.index], 3)
        self.index += 1
        frame = buffer if buffer is not None and buffer.shape == shape else np.empty(shape, np.uint8)
        frame[:] = self.index
        return frame

    def close(self) -> None:
        """Nothing to release."""


class PinnedCount(Sink):
    """Counts the stand-in GPU's live page-locked allocations at every frame written."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def write(self, image) -> None:
        from fcn_edge.standin.device import GPU

        self.counts.append(sum(kind == "pinned" for _, kind in list(GPU.memory.blocks.values())))

    def close(self) -> None:
        """Nothing to release."""


@pytest.mark.slow
def test_frame_pool_slots_of_an_old_frame_size_are_freed(standin_imports, frame_model, tmp_path):
    """Every size change gave the pool new page-locked slots and kept the old ones until the stream ended."""
    standin_imports("10.13")
    from fcn_edge.backends.tensorrt import TrtBuildOptions, TrtRunner, build_engine
    from fcn_edge.backends.tensorrt.runner import write_sidecar

    engine = tmp_path / "m.fp32.engine"
    options = TrtBuildOptions(min_shape=(1, 64, 96, 3), opt_shape=(1, 96, 128, 3), max_shape=(1, 96, 128, 3), progress=False)
    write_sidecar(engine, build_engine(frame_model, engine, options))
    counter = PinnedCount()
    source = SizeChanges(24)
    with TrtRunner(engine) as runner:
        stats = Stream(source, runner, Overlay(PALETTE, 0.5), [counter], StreamOptions(status_interval=0)).run()
    assert stats.frames == 24
    assert max(counter.counts) == max(counter.counts[:8]), counter.counts  # 12 size changes: no growth after the first two


@pytest.mark.slow
def test_the_calibration_cache_builds_an_implicit_int8_engine_within_budget(built, standin_imports, tmp_path):
    """8.6 users build from the FP32 graph and the cache the INT8 build wrote: TensorRT quantizes every tensor the cache
    names, so it must name only what the Q/DQ placement quantizes (not the label convs and score tail)."""
    standin_imports("8.6")
    import onnxruntime as ort

    from fcn_edge.backends.tensorrt import TrtBuildOptions, TrtRunner, build_engine
    from fcn_edge.backends.tensorrt.runner import write_sidecar

    folder = built["8.6-int8"].parent
    calibration_onnx, cache = folder / "default.int8.calib.onnx", folder / "default.int8.calib"
    engine = tmp_path / "implicit.int8.engine"
    shapes = dict(min_shape=(1, 64, 128, 3), opt_shape=(1, 128, 256, 3), max_shape=(1, 128, 256, 3))
    options = TrtBuildOptions(precision="int8", calibration_cache=cache, strongly_typed=False, progress=False, **shapes)
    write_sidecar(engine, build_engine(calibration_onnx, engine, options))
    session = ort.InferenceSession(str(calibration_onnx), providers=["CPUExecutionProvider"])
    frames = [render_scene(np.random.default_rng(HELDOUT_SEED + i), (128, 256))[0] for i in range(6)]
    with TrtRunner(engine) as runner:
        agreement = np.mean([np.mean(runner.infer(f) == session.run(None, {"frame": f[None]})[0][0]) for f in frames])
    assert agreement >= 0.98


class FramesInRunnerMemory(PinnedCount):
    """Also records, for every frame drawn, whether it lies in one of the stand-in GPU's page-locked blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.pinned: list[bool] = []

    def draw(self, frame, labels, overlay):
        from fcn_edge.standin.device import GPU

        self.pinned.append(frame.ctypes.data in GPU.memory.blocks)
        return frame


@pytest.mark.slow
def test_each_stream_of_a_multi_stream_run_decodes_into_page_locked_slots(standin_imports, frame_model, tmp_path):
    """Several cameras on TensorRT: each stream's frame pool is the runner's page-locked memory (a frame that runs alone
    goes to the GPU without a host copy), and a stream's size changes free its old slots as the single stream does."""
    standin_imports("10.13")
    from fcn_edge.backends.tensorrt import TrtBuildOptions, TrtRunner, build_engine
    from fcn_edge.backends.tensorrt.runner import write_sidecar
    from fcn_edge.stream.multi import MultiStream

    engine = tmp_path / "m.fp32.engine"
    options = TrtBuildOptions(min_shape=(1, 64, 96, 3), opt_shape=(2, 96, 128, 3), max_shape=(2, 96, 128, 3), progress=False)
    write_sidecar(engine, build_engine(frame_model, engine, options))
    sinks = [FramesInRunnerMemory(), FramesInRunnerMemory()]
    feeds = [("changing", SizeChanges(24), [sinks[0]]), ("steady", SizeChanges(24), [sinks[1]])]
    feeds[1][1].sizes = [(96, 128)] * 24
    with TrtRunner(engine) as runner:
        stats = MultiStream(feeds, runner, Overlay(PALETTE, 0.5), StreamOptions(status_interval=0)).run()
    assert [s.frames for s in stats] == [24, 24]
    assert all(sinks[0].pinned) and all(sinks[1].pinned)
    counts = sinks[0].counts
    assert max(counts) == max(counts[:8]), counts  # 12 size changes: the live page-locked slots do not grow
