"""Foreign architectures through `build_engine.py --onnx M --int8` and `--fp16`, as a user would run them.

LR-ASPP and DeepLabV3 on MobileNetV3-Large, FCN-ResNet50 and a U-Net (tests/fixtures/foreign_models.py),
random backbone weights with BatchNorm re-estimated on real photos and the 1x1 classifiers fitted to
photo masks (a linear probe), each exported with a dynamic and with a fixed 1x3x256x256 input;
calibrated on the VOC-layout photo dataset's train split and verified on its val split (21
classes, as torchvision's models have). An INT8 build ends within the budget or
with one line saying why not, in under 10 minutes; FP16 builds pass. LR-ASPP and DeepLabV3 also
come trained end to end on samples of that dataset (``TRAIN_RECIPE``; about 10 minutes each on
first use, then cached): there issue 21's line is asserted, INT8 within the budget with at most a
fifth of the quantized nodes kept in float. About an hour on 2 cores:

    python -m pytest -m foreign -s tests/foreign     # FOREIGN_REPORT=path.json keeps the figures

Each build prints one summary line (agreement, latency, build time): README's Compile table.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import assert_user_error, run_script
from fixtures.foreign_models import ARCHITECTURES, TRAIN_RECIPE, make_foreign_model, make_trained_model
from fixtures.voc_photos import all_photos, make_voc_photos

pytestmark = pytest.mark.foreign
SIZE = "256x256"  # calibration and latency size of the dynamic exports: the static ones are fixed at it
LIMIT_S = 600
MAX_FLOAT_SHARE = 0.2  # issue 21: at most a fifth of the quantized nodes kept in float on a trained model
LABEL_WIDTH = 28  # the table's indent and label column (fcn_edge.compile.verify.table)


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc_photos(tmp_path_factory.mktemp("photos") / "VOC", train=60, val=20)


@pytest.fixture(scope="module")
def photos():
    return all_photos()


def summary(output: str, run: str) -> dict:
    """The figures a build printed: first INT8 agreement, search trials, each table row's agreement, mIoU, latency, ratio
    and its spread."""
    first = re.search(r"INT8 misses the budget \(onnxruntime: label agreement ([\d.]+)%", output)
    trials = re.findall(r"search: (\d+) of (\d+) quantized nodes in float (meets|misses)", output)
    lines = output.splitlines()
    header = next((i for i, line in enumerate(lines) if line.strip().startswith("model ") and "agreement" in line), None)
    rows = {}
    for line in lines[header + 1 :] if header is not None else []:
        if not line.startswith("  ") or len(line) < LABEL_WIDTH:
            break
        tokens = line[LABEL_WIDTH:].split()  # agreement, mIoU, ..., latency ("12.3 ms" or "n/a"), ratio
        latency = float(tokens[tokens.index("ms") - 1]) if "ms" in tokens else None
        after = tokens[tokens.index("ms") + 1 :] if "ms" in tokens else []
        ratio = after[0] if after and after[0].endswith("x") else None
        spread = after[1] if ratio and len(after) > 1 else None  # the IQR of the per-round ratios
        rows[line[:LABEL_WIDTH].strip()] = {"agreement": tokens[0], "miou": tokens[1], "latency_ms": latency, "vs_fp32": ratio,
                                            "iqr": spread}  # fmt: skip
    return {"run": run, "all_int8_agreement": first and float(first[1]), "trials": trials, "rows": rows}


def build_runs(name: str, model: Path, static: bool, voc: Path, engines: Path, runs) -> dict:
    """Each of ``runs`` ((run, flags)) built from ``model`` as a user would; the figures each printed, by run."""
    args = ["--onnx", model, "--input-format", "tensor", "--num-classes", "21", "--calib-data", f"voc:{voc}",
            "--calib-size", SIZE, "--latency-size", SIZE, "--engines-dir", engines, "--no-progress"]  # fmt: skip
    report = {"model": name, "input": "static 1x3x256x256" if static else "dynamic"}
    try:
        for run, flags in runs:
            started = time.perf_counter()
            result = run_script("build_engine.py", *flags, *args, "--force", timeout=LIMIT_S + 120)
            seconds = time.perf_counter() - started
            report[run] = {**summary(result.stdout, run), "seconds": round(seconds), "exit": result.returncode,
                           "error": result.stderr.strip().splitlines()[-1] if result.returncode else None}  # fmt: skip
            assert seconds < LIMIT_S, f"{name} {run} took {seconds:.0f} s"
            if result.returncode:
                assert run == "int8", result.stderr
                assert_user_error(result, "INT8")
            elif run != "int8_plain":
                sidecar = json.loads((engines / f"{name}.{run}.onnx.json").read_text())
                assert sidecar["verification"]["passed"] and sidecar["verification"]["images"]["kind"] == "dataset"
                details = sidecar["details"]
                report[run]["kept_float"] = len(details.get("kept_float", []))
                report[run]["candidates"] = (details.get("sensitivity") or {}).get("candidates")
    finally:
        print(f"\nFOREIGN {json.dumps(report)}")
        if os.environ.get("FOREIGN_REPORT"):
            with open(os.environ["FOREIGN_REPORT"], "a") as out:
                out.write(json.dumps(report) + "\n")
    return report


PLAIN_INT8 = ("int8_plain", ["--int8", "--search-minutes", "0", "--allow-accuracy-drop"])


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_foreign_model_builds_int8_within_budget_or_says_why_not_and_fp16(name, static, voc, photos, tmp_path):
    model = make_foreign_model(name, tmp_path / f"{name}.onnx", photos, static)
    # the plain INT8 model first (no search, written whatever it costs: its agreement and speed), then the builds
    build_runs(name, model, static, voc, tmp_path / "engines", [PLAIN_INT8, ("int8", ["--int8"]), ("fp16", ["--fp16"])])


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("name", list(TRAIN_RECIPE))
def test_trained_foreign_model_int8_keeps_at_most_a_fifth_of_its_nodes_in_float(name, static, voc, tmp_path):
    """Issue 21's line on the models users bring: trained end to end (minutes per model on first use, then cached)."""
    model = make_trained_model(name, tmp_path / f"{name}.onnx", static)
    report = build_runs(name, model, static, voc, tmp_path / "engines", [PLAIN_INT8, ("int8", ["--int8"]), ("fp16", ["--fp16"])])
    int8 = report["int8"]
    assert int8["exit"] == 0, int8["error"]
    assert int8["kept_float"] <= MAX_FLOAT_SHARE * (int8["candidates"] or 0), int8
