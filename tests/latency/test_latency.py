"""Latency regression tests (`pytest -m latency`): in-run normalised latencies against the baseline.

Each ONNX Runtime and OpenVINO latency is divided by an ONNX Runtime FP32 matrix product timed
interleaved with it (same threads, same run), and that ratio is compared with the committed
baseline for this machine class. The injected slowdown shows that the comparison catches a real
regression; on another machine class the tests skip with the refusal message, and the OpenVINO
rows skip where the [openvino] extra is not installed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from fcn_edge.bench import baselines
from fcn_edge.bench.fingerprint import fingerprint
from fcn_edge.bench.suite import openvino_backend, run_size, runner_backend
from fcn_edge.checkpoint import load_checkpoint
from fcn_edge.export import export_checkpoint
from fcn_edge.paths import DEFAULT_CHECKPOINT

from conftest import ROOT

pytestmark = pytest.mark.latency

HEIGHT, WIDTH, THREADS = 256, 512, 2


@pytest.fixture(scope="module")
def baseline():
    try:
        return baselines.load_baseline(fingerprint()["machine_class"])
    except baselines.BaselineMismatch as refusal:
        pytest.skip(str(refusal))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The default model's FP32 export and its INT8 artifact (built if engines/ lacks it)."""
    int8 = ROOT / "engines" / "default.int8.onnx"
    if not int8.is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_engine.py"), "--int8"], check=True, cwd=ROOT)
    fp32 = tmp_path_factory.mktemp("latency") / "default.fp32.onnx"
    export_checkpoint(DEFAULT_CHECKPOINT, fp32)
    return fp32, int8


def normalised(artifacts, **options) -> dict[str, float]:
    fp32, int8 = artifacts
    backends = [runner_backend("ort-fp32", "fp32", fp32, backend="onnxruntime", **options),
                runner_backend("ort-int8", "int8", int8, backend="onnxruntime", **options)]  # fmt: skip
    return timed(backends)


def timed(backends) -> dict[str, float]:
    model = load_checkpoint(DEFAULT_CHECKPOINT).build()
    return run_size(backends, model, HEIGHT, WIDTH, THREADS, rounds=15, per_round=3).normalised()


def test_unchanged_tree_is_within_the_baseline(baseline, artifacts):
    verdicts = baselines.compare(baseline, normalised(artifacts, threads=THREADS))
    print("\n".join(v.line() for v in verdicts))
    assert len(verdicts) == 2 and all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts)


def test_an_injected_slowdown_fails_the_comparison(baseline, artifacts):
    """Graph optimisation off (Q/DQ no longer fused into integer kernels): caught in every run.

    One thread instead of two was caught in 3 of 4 runs only: under load from elsewhere the
    two-thread reference slows down too, so it is not used as the proof here.
    """
    verdicts = baselines.compare(baseline, normalised(artifacts, threads=THREADS, optimize=False))
    print("\n".join(v.line() for v in verdicts))
    assert not all(v.ok for v in verdicts), "the slowdown went unnoticed:\n" + "\n".join(v.line() for v in verdicts)


def test_openvino_rows_are_within_the_baseline(baseline, artifacts):
    """OpenVINO FP32, BF16 (where the CPU has it) and INT8 against the same reference and baseline."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install -e '.[openvino]'): no OpenVINO rows")
    from fcn_edge.backends.openvino import probe

    fp32, int8 = artifacts
    backends = [
        openvino_backend("openvino-fp32", "fp32", fp32, THREADS),
        openvino_backend("openvino-int8", "int8", int8, THREADS),
    ]
    if probe().bf16:
        backends.append(openvino_backend("openvino-bf16", "bf16", fp32, THREADS))
    verdicts = baselines.compare(baseline, timed(backends))
    print("\n".join(v.line() for v in verdicts))
    assert len(verdicts) == len(backends) and all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts)
