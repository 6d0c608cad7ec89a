"""README's GPU commands on a GPU: ``scripts/build_engine.py`` at each precision, with no shape flag; each engine's
own labels against the FP32 model (the build's first row); the stream with both CUDA bindings; mapped memory forced.

On a CPU machine these skip; ``FCN_EDGE_TENSORRT_STANDIN=10.13 pytest -m gpu`` runs them on the stand-in
(docs/tensorrt.md), and ``FCN_EDGE_REQUIRE_GPU=1`` turns every skip into a failure (scripts/gpu_check.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_script
from fcn_edge.backends.tensorrt import TrtRunner
from fcn_edge.data.synthetic import HELDOUT_SEED, render_scene

pytestmark = pytest.mark.gpu

SMALL = ["--verify-scenes", "8", "--verify-size", "128x256", "--latency-size", "256x512", "--calib-size", "128x256",
         "--search-minutes", "1", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def engines(trt, tmp_path_factory) -> dict:
    """The default model built at each precision (the engine row decides: the build exits 2 when it misses the budget)."""
    built = {}
    for precision in ("int8", "fp16", "fp32"):
        folder = tmp_path_factory.mktemp(precision)
        result = run_script("build_engine.py", f"--{precision}", *SMALL, "--engines-dir", folder, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        (sidecar,) = folder.glob("*.engine.json")
        built[precision] = sidecar
    return built


@pytest.mark.parametrize("precision", ["int8", "fp16", "fp32"])
def test_each_precision_builds_an_engine_whose_labels_meet_the_budget(engines, precision):
    sidecar = json.loads(engines[precision].read_text())
    row = sidecar["verification"]["rows"][0]
    assert (
        row["label"] == f"{precision.upper()} TensorRT engine" and row["agreement"] >= 0.98 and sidecar["verification"]["passed"]
    )
    assert sidecar["profiles"]["opt"] == [1, 256, 512, 3]


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_the_stream_runs_the_int8_engine_with_each_binding(engines, binding, tmp_path):
    engine = engines["int8"].with_suffix("")
    command = [sys.executable, "-m", "fcn_edge.stream", "--synthetic", "--size", "256x512", "--fps", "0", "--max-frames", "60",
               "--model", str(engine), "--headless", "--cuda-binding", binding, "--stats-json", str(tmp_path / "s.json")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ))
    if done.returncode and ("not installed" in done.stderr or "cannot be imported" in done.stderr):
        from .conftest import skip_or_fail

        skip_or_fail(f"{binding}: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 60


def test_mapped_memory_gives_the_labels_pinned_memory_gives(engines):
    """Jetson's zero-copy path (mapped host memory the GPU reads in place), forced on this GPU."""
    engine = engines["int8"].with_suffix("")
    frames = [render_scene(np.random.default_rng(HELDOUT_SEED + i), (256, 512))[0] for i in range(4)]
    with TrtRunner(engine) as pinned, TrtRunner(engine, mapped=True) as mapped:
        for frame in frames:
            slot = mapped.frame_buffer(frame.shape)
            slot[:] = frame
            assert np.array_equal(mapped.infer(slot), pinned.infer(frame))
