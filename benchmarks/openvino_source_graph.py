"""Why OpenVINO runs FP32 and BF16 from the source graph: the same model before and after ONNX Runtime's preparation.

``qdq.prepare`` (ONNX Runtime's quantization pre-processing: shape inference, basic optimisations)
rewrites HardSwish into HardSigmoid x Mul for ONNX Runtime's kernels. This exports a small
MobileNetV3-like segmenter (hard-swish stem, inverted residual blocks, labels out), prepares it,
and times both files through OpenVINO's runner at FP32, interleaved, as the build does.

    python benchmarks/openvino_source_graph.py            # 1024x512, 2 threads, 10 rounds of 3 frames
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from fcn_edge.backends import openvino
from fcn_edge.bench.latency import round_robin
from fcn_edge.compile.timing import Spread, ratio
from fcn_edge.quantize import qdq


def block(cin: int, cout: int, stride: int) -> nn.Sequential:
    hidden = cin * 4
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish(),
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish(),
        nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
    )  # fmt: skip


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.body = nn.Sequential(block(16, 24, 2), block(24, 40, 2), block(40, 40, 1), block(40, 80, 2), block(80, 80, 1))
        self.head = nn.Conv2d(80, 8, 1)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        x = frame.permute(0, 3, 1, 2).float() / 255.0
        scores = nn.functional.interpolate(self.head(self.body(self.stem(x))), scale_factor=16, mode="bilinear")
        return scores.argmax(1).to(torch.uint8)


def main(folder: Path) -> None:
    source, prepared = folder / "source.onnx", folder / "prepared.onnx"
    torch.onnx.export(Net().eval(), (torch.zeros(1, 256, 512, 3, dtype=torch.uint8),), str(source), input_names=["frame"],
                      output_names=["labels"], dynamic_axes={"frame": {0: "n", 1: "h", 2: "w"}}, dynamo=False, opset_version=17)  # fmt: skip
    qdq.prepare(source, prepared)
    for path in (source, prepared):
        ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
        print(f"{path.name}: " + ", ".join(f"{op} {ops[op]}" for op in ("HardSwish", "HardSigmoid", "Mul")))
    frame = np.random.default_rng(0).integers(0, 256, (512, 1024, 3), dtype=np.uint8)
    runners = {p.stem: openvino.make_runner(p, threads=2, cache_dir=folder / "cache").activate() for p in (source, prepared)}
    rounds = round_robin({name: (lambda r=r: r.infer(frame)) for name, r in runners.items()}, rounds=10, per_round=3, warmup=3)
    medians = {name: [float(np.median(r[name])) for r in rounds] for name in runners}
    for name, values in medians.items():
        print(f"OpenVINO FP32, {name}: {Spread.of(values).describe(1)} ms")
    print(f"prepared / source, per round: {ratio(medians['prepared'], medians['source']).describe()}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp))
