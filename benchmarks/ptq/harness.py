"""Measurement scripts behind docs/foreign.md's PTQ table: run from this folder with the venv, e.g.
``PYTHONPATH=../.. python calib.py selfie selfie_landscape`` or ``python search.py selfie percentile 0.98``.
Models are built into /tmp/rm (tests/fixtures/real_models.py), work files go to /tmp/ptq/<model>/."""
import sys, time, json
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]; sys.path[:0] = [str(ROOT / 'tests'), str(ROOT)]
import numpy as np, onnx
from fixtures import real_models
from fcn_edge.quantize import qdq
from fcn_edge.quantize.statistics import collect_ranges

CONVS = ("Conv", "ConvTranspose")

def int8_convs(model):
    from_dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in model.graph.node if n.op_type in CONVS]
    return sum(n.input[0] in from_dq and n.input[1] in from_dq for n in convs)

class Case:
    def __init__(self, name, work=Path('/tmp/ptq')):
        work.mkdir(parents=True, exist_ok=True)
        self.model = real_models.build(name, Path('/tmp/rm'))
        self.dir = work / name; self.dir.mkdir(parents=True, exist_ok=True)
        _, cal = self.model.load(self.model.calibration)
        _, held = self.model.load(self.model.held_out)
        self.cal, self.held = cal, held
        self.feeds = [{"input_1": i[None]} for i in cal]
        self.prepared = self.dir / 'prepared.onnx'
        if not self.prepared.exists():
            qdq.prepare(self.model.onnx, self.prepared)
        self.ref = real_models.run_onnx(self.model.onnx, held)
        self.n = 0
    def agree(self, path):
        r = real_models.run_onnx(path, self.held)
        a, b = self.ref > 0.5, r > 0.5
        return float((a == b).mean()), float((a & b).sum() / max((a | b).sum(), 1))
    def ranges(self, prepared, method):
        return collect_ranges(onnx.load(str(prepared)), self.feeds, method=method, progress=False)
    def quant(self, prepared, ranges, excluded=(), placement='onnxruntime', path=None):
        self.n += 1
        path = path or self.dir / f'q{self.n}.onnx'
        qdq.quantize(prepared, path, ranges, placement, list(excluded))
        return path
    def report(self, path):
        ag, iou = self.agree(path)
        return dict(agreement=round(ag*100, 2), iou=round(iou, 3), int8_convs=int8_convs(onnx.load(str(path))))
