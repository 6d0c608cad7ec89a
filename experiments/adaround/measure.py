# ruff: noqa  (one-off measurement scripts for docs/foreign.md, removed in the next commit)
"""Issue 21 (s4): weight-only and full INT8, nearest vs learned (AdaRound) rounding, on the real selfie models."""

import json, sys, time
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("OUT", "/tmp/adaround"))  # models, photos, rows.jsonl
import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from fixtures import real_models
import torch

torch.set_num_threads(1)
from fcn_edge.quantize import qdq, rounding
from fcn_edge.quantize.statistics import collect_ranges

name = sys.argv[1]
out = OUT / name
out.mkdir(parents=True, exist_ok=True)
model = real_models.build(name, OUT / "models")
_, cal = model.load(model.calibration)
_, held = model.load(model.held_out)


def probs(path, images):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"input_1": im[None]})[0] for im in images])


ref_h, ref_c = probs(model.onnx, held) > 0.5, probs(model.onnx, cal) > 0.5


def int8_convs(path):
    m = onnx.load(str(path))
    from_dq = {o for n in m.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(n.input[0] in from_dq and n.input[1] in from_dq for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose"))


def row(label, path, **extra):
    r = {
        "model": name,
        "variant": label,
        "held_out": float(((probs(path, held) > 0.5) == ref_h).mean()),
        "calibration": float(((probs(path, cal) > 0.5) == ref_c).mean()),
        "int8_convs": int8_convs(path),
        **extra,
    }
    print("ROW " + json.dumps(r), flush=True)
    return r


prepared = out / "prepared.onnx"
qdq.prepare(model.onnx, prepared)
feeds = [{"input_1": im[None]} for im in cal]
ranges = collect_ranges(onnx.load(str(prepared)), feeds, method="percentile", progress=False)
pm = onnx.load(str(prepared))
weights = {t.name: numpy_helper.to_array(t) for t in pm.graph.initializer}
quantized = set(qdq.quantizable_nodes(pm))
convs = [n for n in pm.graph.node if n.op_type in ("Conv", "ConvTranspose") and n.name in quantized and n.input[1] in weights]


def nearest(bits):
    levels = 2 ** (bits - 1) - (bits == 8)
    replaced = {}
    for n in convs:
        w = weights[n.input[1]]
        axis = 1 if n.op_type == "ConvTranspose" else 0
        moved = np.moveaxis(w, axis, 0)
        s = np.maximum(np.abs(moved).reshape(moved.shape[0], -1).max(1), 1e-12) / levels
        shape = [1] * w.ndim
        shape[axis] = -1
        s = s.reshape(shape).astype(np.float32)
        replaced[n.input[1]] = (np.clip(np.round(w / s), -levels, levels) * s).astype(np.float32)
    return replaced


rows = [row("fp32 prepared", prepared)]
for bits, placement in ((8, "tensorrt"), (7, "onnxruntime")):
    path = out / f"weights{bits}.nearest.onnx"
    onnx.save(rounding._with_weights(pm, nearest(bits)), path)
    rows.append(row(f"weights only, {bits}-bit, nearest", path, convs_rounded=len(convs)))
    learned = out / f"weights{bits}.adaround.onnx"
    t = time.monotonic()
    done = rounding.learn_rounding(prepared, learned, feeds[: rounding.IMAGES], placement, progress=False)
    rows.append(
        row(
            f"weights only, {bits}-bit, AdaRound",
            learned,
            convs_rounded=len(done.convs),
            skipped=done.skipped,
            seconds=round(time.monotonic() - t),
        )
    )
    if bits == 7:
        plain = out / "int8.plain.onnx"
        qdq.quantize(prepared, plain, ranges, "onnxruntime")
        rows.append(row("full INT8 (ORT placement, 7-bit), nearest", plain))
        ada = out / "int8.adaround.onnx"
        qdq.quantize(learned, ada, ranges, "onnxruntime")
        rows.append(row("full INT8 (ORT placement, 7-bit), AdaRound", ada))
    else:
        plain8 = out / "int8.8bit.onnx"
        qdq.quantize(prepared, plain8, ranges, "tensorrt")
        rows.append(row("full INT8 (TensorRT placement, 8-bit), nearest", plain8))
        ada8 = out / "int8.8bit.adaround.onnx"
        qdq.quantize(learned, ada8, ranges, "tensorrt")
        rows.append(row("full INT8 (TensorRT placement, 8-bit), AdaRound", ada8))
with open(f"{OUT}/rows.jsonl", "a") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
