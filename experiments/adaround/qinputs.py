# ruff: noqa  (one-off measurement scripts for docs/foreign.md, removed in the next commit)
"""AdaRound for the full INT8 ORT placement with quantized upstream activations (X_q from the Q/DQ graph)."""

import json, sys, time
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("OUT", "/tmp/adaround"))  # models, photos, rows.jsonl
import numpy as np, onnx, torch
from onnx import numpy_helper

sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]
torch.set_num_threads(1)
from fcn_edge.quantize import qdq, rounding
from fcn_edge.quantize.statistics import Observer, collect_ranges

name, placement = sys.argv[1], sys.argv[2]
bits = qdq.WEIGHT_BITS[placement]
levels = 2 ** (bits - 1) - (bits == 8)
import measure_lib as M

model, cal, held, probs, row, out = M.setup(name)
prepared = out / "prepared.onnx"
feeds = [{"input_1": im[None]} for im in cal]
ranges = collect_ranges(onnx.load(str(prepared)), feeds, method="percentile", progress=False)
pm = onnx.load(str(prepared))
weights = {t.name: numpy_helper.to_array(t) for t in pm.graph.initializer}
quantized = set(qdq.quantizable_nodes(pm))
todo = [
    n
    for n in pm.graph.node
    if n.op_type in ("Conv", "ConvTranspose")
    and n.name in quantized
    and n.input[1] in weights
    and not rounding.unsupported(n, weights[n.input[1]])
]
fit = feeds[: rounding.IMAGES]
float_inputs = Observer(pm, [n.input[0] for n in todo], fit)
rounded = {}
t = time.monotonic()
for node in todo:
    src = out / "partial.onnx"
    onnx.save(rounding._with_weights(pm, rounded), src)
    qpath = out / "partial.q.onnx"
    qdq.quantize(src, qpath, ranges, placement)
    qm = onnx.load(str(qpath))
    qnode = next(n for n in qm.graph.node if n.name == node.name)
    xq = Observer(qm, [qnode.input[0]], fit)(qnode.input[0])
    bias = weights[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    rounded[node.input[1]], err = rounding.round_conv(node, weights[node.input[1]], bias, xq, float_inputs(node.input[0]), levels)
    print(node.name, err, round(time.monotonic() - t), flush=True)
src = out / f"weights{bits}.adaround_q.onnx"
onnx.save(rounding._with_weights(pm, rounded), src)
final = out / f"int8.{placement}.adaround_q.onnx"
qdq.quantize(src, final, ranges, placement)
M.save([row(f"full INT8 ({placement}, {bits}-bit), AdaRound on quantized inputs", final, seconds=round(time.monotonic() - t))])
