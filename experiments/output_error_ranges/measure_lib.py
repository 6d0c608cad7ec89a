# ruff: noqa  (one-off measurement script for docs/foreign.md, removed in the next commit)
import json, sys
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("OUT", "/tmp/adaround"))  # models, photos, rows.jsonl
import numpy as np, onnx, onnxruntime as ort

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from fixtures import real_models


def setup(name):
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
        return sum(
            n.input[0] in from_dq and n.input[1] in from_dq for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose")
        )

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

    return model, cal, held, probs, row, out


def save(rows):
    with open(f"{OUT}/rows.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
