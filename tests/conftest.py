"""Shared fixtures. Tests use real files in tmp_path, real ONNX Runtime sessions and real OpenCV I/O."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_script(script: str, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>`` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user mistake: non-zero exit, one 'error:' line naming the culprit, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


STANDIN_MODULES = ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.driver", "cuda.bindings.runtime",
                   "cuda.bindings.utils", "pycuda", "pycuda.driver")  # fmt: skip


@pytest.fixture
def standin_imports():
    """``install(line)`` of the TensorRT/CUDA STAND-INS (fcn_edge.standin) for one test; the real modules (or their
    absence) are put back after it. Only imports are swapped, never fcn_edge's functions."""
    from fcn_edge import standin

    saved = {name: sys.modules.get(name) for name in STANDIN_MODULES}
    yield standin.install
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Test tensors are small: on a shared 2-core machine a second torch thread only adds
    contention (a small forward pass measured 100x slower). Scripts run as subprocesses keep
    their own settings."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def frame_model(tmp_path_factory) -> Path:
    """The default architecture with random weights, exported as the stream runs it (frames in, labels out)."""
    import torch

    from fcn_edge.data.synthetic import CLASSES, PALETTE
    from fcn_edge.export import export_model
    from fcn_edge.metadata import ModelMetadata
    from fcn_edge.models import ModelConfig, build_model
    from fcn_edge.spec import Preprocess

    path = tmp_path_factory.mktemp("frame_model") / "frame_model.onnx"
    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(CLASSES))
    meta = ModelMetadata(CLASSES, PALETTE, Preprocess(), "frame", ["labels"], 32, "0" * 64, config.to_dict())
    # >= 10,000 pixels, so one near-tie label flip cannot fail the 99.99% agreement check
    export_model(build_model(config), meta, path, verify_sizes=((1, 96, 128),))
    return path
