# ruff: noqa  (one-off measurement scripts for docs/foreign.md, removed in the next commit)
"""(c): `build_engine.py --onnx <model> --int8` exactly as tests/foreign/test_real_models.py runs it; held-out agreement on both CPU runtimes."""

import json, os, subprocess, sys, time
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("OUT", "/tmp/adaround"))  # models, photos, rows.jsonl
tree, name, minutes, label = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sys.path[:0] = [str(tree), str(tree / "tests"), str(tree / "tests" / "foreign")]
import cv2, numpy as np, onnx
from fixtures import real_models
import test_real_models as T

model = real_models.build(name, OUT / "models")
_, held = model.load(model.held_out)
frames = [cv2.imread(str(f)) for f in sorted(model.held_out.glob("*.png"))]
reference = (T.probabilities(model.onnx, held) > 0.5)[..., 0]
engines = OUT / "builds" / f"{label}.{name}.{minutes}"
t = time.monotonic()
run = subprocess.run(
    [
        sys.executable,
        str(tree / "scripts" / "build_engine.py"),
        "--onnx",
        str(model.onnx),
        "--name",
        name,
        "--input-format",
        "tensor-nhwc",
        "--mean",
        "0",
        "0",
        "0",
        "--std",
        "1",
        "1",
        "1",
        "--num-classes",
        "1",
        "--int8",
        "--search-minutes",
        minutes,
        "--calib-dir",
        str(model.calibration),
        "--engines-dir",
        str(engines),
        "--allow-accuracy-drop",
        "--no-progress",
    ],
    capture_output=True,
    text=True,
    cwd=tree,
    env={**os.environ, "PYTHONPATH": str(tree)},
)
engines.mkdir(parents=True, exist_ok=True)
(engines / "build.log").write_text(run.stdout + run.stderr)
assert run.returncode == 0, run.stderr[-2000:]
artifact = engines / f"{name}.int8.onnx"
sidecar = json.loads(artifact.with_name(artifact.name + ".json").read_text())
r = {
    "label": label,
    "model": name,
    "search_minutes": minutes,
    "seconds": round(time.monotonic() - t),
    **{b: T.artifact_agreement(artifact, b, frames, reference) for b in ("onnxruntime", "openvino")},
    "int8_convs": T.int8_convs(onnx.load(str(artifact)))[0],
    "kept_float": len(sidecar["details"].get("kept_float") or []),
    "build_agreement": sidecar["verification"]["rows"][0]["agreement"],
    "weight_rounding": sidecar["details"].get("weight_rounding"),
}
print("BUILD " + json.dumps(r), flush=True)
open(f"{OUT}/builds.jsonl", "a").write(json.dumps(r) + "\n")
