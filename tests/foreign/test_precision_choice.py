"""The automatic precision choice (`fcn-edge build` with no precision flag) gives the same answer build after build.

The choice rests on latencies (a lower precision is written only when it is faster than FP32 beyond the
spread of round-robin timings through the stream's runner: docs/compile.md), so it is only as good as
its repeatability on a noisy machine. Five forced builds in a row of the shipped default model and of
an LR-ASPP MobileNetV3 (tests/fixtures/foreign_models.py) must each pick one precision. The runtime that
runs it may differ where ONNX Runtime and OpenVINO are close (OpenVINO runs an artifact only when it is
faster beyond the spread): the rows show it.
About 15 minutes on 2 cores:

    python -m pytest -m foreign -s tests/foreign/test_precision_choice.py

It prints one row per build (precision, runtime, ratio to FP32 and its spread): docs/compile.md's table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, run_script
from fixtures.foreign_models import make_foreign_model
from fixtures.voc_photos import all_photos, make_voc_photos

pytestmark = pytest.mark.foreign
BUILDS = 5
SIZE = "256x256"


def choices(args: list, engines: Path, name: str) -> list[dict]:
    """``BUILDS`` forced builds with no precision flag: what each chose, on which runtime, at what measured ratio."""
    rows = []
    for build in range(BUILDS):
        result = run_script("build_engine.py", *args, "--engines-dir", engines, "--force", "--no-progress", timeout=900)
        assert result.returncode == 0, result.stderr
        sidecar = json.loads(next(engines.glob(f"{name}.*.onnx.json")).read_text())
        latency = sidecar["verification"]["latency"]
        ratio = latency["ratio_to_fp32"]
        tried = [line.split(" is not the one")[0] for line in result.stdout.splitlines() if " is not the one" in line]
        rows.append({"build": build + 1, "precision": sidecar["precision"], "runs_on": latency["runs_on"],
                     "ratio": f"{ratio['median']:.2f} ({ratio['low']:.2f}-{ratio['high']:.2f})", "verdict": latency["verdict"],
                     "passed over": ", ".join(tried) or "-"})  # fmt: skip
        for stale in engines.glob(f"{name}.*"):  # the next build must not find this one's artifact beside its own
            stale.unlink()
    print(f"\n{name}: " + " | ".join(rows[0]))
    for row in rows:
        print(" | ".join(str(v) for v in row.values()))
    return rows


def test_the_default_model_gets_the_same_precision_in_five_builds(tmp_path):
    rows = choices(
        ["--checkpoint", ROOT / "checkpoints" / "default.pt", "--calib-dir", ROOT / "calibration"], tmp_path, "default"
    )
    assert len({r["precision"] for r in rows}) == 1, rows


def test_an_lraspp_model_gets_the_same_precision_in_five_builds(tmp_path):
    voc = make_voc_photos(tmp_path / "VOC", train=60, val=20)
    model = make_foreign_model("lraspp_mobilenet_v3", tmp_path / "lraspp.onnx", all_photos(), static=False)
    args = ["--onnx", model, "--input-format", "tensor", "--num-classes", "21", "--calib-data", f"voc:{voc}",
            "--calib-size", SIZE, "--latency-size", SIZE]  # fmt: skip
    rows = choices(args, tmp_path / "engines", "lraspp")
    assert len({r["precision"] for r in rows}) == 1, rows
