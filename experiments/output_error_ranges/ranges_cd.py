# ruff: noqa  (one-off measurement script for docs/foreign.md, removed in the next commit)
"""Issue 21 item 3: activation clip ranges chosen by the model's output error (coordinate descent, one pass, graph order)."""

import json, sys, time
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper

sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]
from fcn_edge.quantize import qdq
from fcn_edge.quantize.statistics import collect_ranges
import measure_lib as M

name = sys.argv[1]
FACTORS = [float(f) for f in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0.6, 0.8, 1.25, 1.6]
model, cal, held, probs, row, out = M.setup(name)
prepared = out / "prepared.onnx"
qdq.prepare(model.onnx, prepared)
feeds = [{"input_1": im[None]} for im in cal]
ranges = collect_ranges(onnx.load(str(prepared)), feeds, method="percentile", progress=False)
if os.environ.get("UPPER_BOUND"):
    cal = held  # the descent fitted on the held-out photos themselves: an upper bound, not a method
plain = out / "int8.plain.onnx"
qdq.quantize(prepared, plain, ranges, "onnxruntime")
qm = onnx.load(str(plain))
inits = {t.name: t for t in qm.graph.initializer}
scales = []  # activation scale initializers in graph order
for n in qm.graph.node:
    if n.op_type == "QuantizeLinear" and n.input[0] not in inits and n.input[1] not in scales:
        scales.append(n.input[1])
base = {s: numpy_helper.to_array(inits[s]).copy() for s in scales}
p_fp = probs(model.onnx, cal)
weight = 4 * p_fp * (1 - p_fp)  # near the 0.5 boundary
opts = ort.SessionOptions()
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
opts.intra_op_num_threads = 2


def loss(current):
    for s, v in current.items():
        inits[s].CopyFrom(numpy_helper.from_array(v.astype(np.float32), s))
    sess = ort.InferenceSession(qm.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    p = np.concatenate([sess.run(None, {"input_1": im[None]})[0] for im in cal])
    flips = float(((p > 0.5) != (p_fp > 0.5)).mean())
    return flips + float((weight * (p - p_fp) ** 2).mean()), flips


current = dict(base)
best, flips0 = loss(current)
print("start", best, flips0, len(scales), "tensors", flush=True)
t = time.monotonic()
changed = {}
for s in scales:
    for f in FACTORS:
        trial = {**current, s: base[s] * f}
        l, fl = loss(trial)
        if l < best:
            best, current, changed[s] = l, trial, f
    print(s, changed.get(s, 1.0), round(best, 5), round(time.monotonic() - t), flush=True)
loss(current)
final = out / "int8.ranges_cd.onnx"
onnx.save(qm, final)
M.save(
    [
        row(
            f"full INT8 (ORT placement, 7-bit), activation ranges by output error{' fitted on the held-out photos' if os.environ.get('UPPER_BOUND') else ''} (x{FACTORS})",
            final,
            changed=len(changed),
            tensors=len(scales),
            seconds=round(time.monotonic() - t),
        )
    ]
)
