"""Every available backend x precision at every size, timed interleaved with the machine's ceiling.

PyTorch eager FP32 is the reference a user would otherwise run; ONNX Runtime FP32 and
INT8 run everywhere; OpenVINO FP32, BF16 and INT8 join where the [openvino] extra is
installed; CUDA and TensorRT where a GPU is present. All backends take the same uint8
camera frame and return labels, so the figures are end to end. Each row's achieved rate is
also given as a share of the machine's peak for its precision (:mod:`.peak`), and its labels'
agreement with the FP32 row's over held-out synthetic scenes rendered at that size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from ..checkpoint import Checkpoint
from ..data.synthetic import HELDOUT_SEED, render_scene
from ..export.onnx import DeployedModel
from ..backends import open_runner
from ..capabilities import float_ops, precisions
from . import ceiling
from .flops import conv_gflops
from .latency import LatencyStats, interleaved
from .peak import Kernel

REFERENCE = "ref:ort-matmul-fp32"  # what every latency is normalised by (same threads, same run)
AGREEMENT_REFERENCES = ("ort-fp32-reference", "ort-fp32")  # the first present: whose labels every row's are compared with
AGREEMENT_SCENES = 8  # held-out synthetic scenes rendered at each size (never trained or calibrated on)


@dataclass
class Backend:
    name: str  # e.g. "ort-int8"
    precision: str
    ceiling: str  # which reference workload is this backend's ceiling
    open: Callable[[], Callable[[np.ndarray], object]]


@dataclass
class SizeResult:
    size: tuple[int, int]  # (H, W)
    gflops: float
    stats: dict[str, LatencyStats]  # backends and the "ref:" workloads
    ceilings: dict[str, str] = field(default_factory=dict)  # backend -> its ceiling workload
    memory_mb: dict[str, float] = field(default_factory=dict)
    precisions: dict[str, str] = field(default_factory=dict)  # backend -> fp32 | bf16 | int8 ...
    agreement: dict[str, float] = field(default_factory=dict)  # backend -> share of pixels with the FP32 row's label
    peak: dict[str, float] = field(default_factory=dict)  # precision -> the micro-kernel's GOP/s in the same rounds (.peak)

    def normalised(self) -> dict[str, float]:
        ref = self.stats[REFERENCE].median_ms
        return {
            f"{name}@{self.size[1]}x{self.size[0]}": s.median_ms / ref
            for name, s in self.stats.items()
            if not name.startswith("ref:")
        }

    def rows(self) -> list[dict]:
        refs = {name: ceiling.matmul_flops() / s.median_ms / 1e6 for name, s in self.stats.items() if name.startswith("ref:")}
        rows = []
        for name, s in self.stats.items():
            if name.startswith("ref:"):
                continue
            achieved = self.gflops / (s.median_ms / 1000.0)
            ceiling_name = self.ceilings.get(name)
            peak = self.peak.get(self.precisions.get(name, ""))
            rows.append({
                "backend": name, "precision": self.precisions.get(name), "size": f"{self.size[1]}x{self.size[0]}", **s.to_dict(),
                "gflops": self.gflops, "achieved_gflop_s": achieved,
                "ceiling_gflop_s": refs.get(ceiling_name), "ceiling_share": achieved / refs[ceiling_name] if ceiling_name in refs else None,
                "peak_gop_s": peak, "peak_share": achieved / peak if peak else None,
                "agreement_vs_fp32": self.agreement.get(name), "memory_mb": self.memory_mb.get(name),
            })  # fmt: skip
        return rows


def sample_frame(height: int, width: int) -> np.ndarray:
    """A synthetic scene at the asked size: real-looking content, same for every backend."""
    image, _ = render_scene(np.random.default_rng(7), (256, 256))
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR))


def pytorch_backend(checkpoint: Checkpoint, threads: int, device: str = "cpu") -> Backend:
    def open_() -> Callable[[np.ndarray], object]:
        torch.set_num_threads(threads)
        model = DeployedModel(checkpoint.build(), checkpoint.preprocess, "frame").to(device).eval()

        def infer(frame: np.ndarray) -> object:
            with torch.inference_mode():
                labels = model(torch.from_numpy(frame[None]).to(device))[1]
                return labels.cpu() if device != "cpu" else labels

        return infer

    name = "pytorch-fp32" if device == "cpu" else "pytorch-cuda-fp32"
    return Backend(name, "fp32", "ref:torch-matmul", open_)


def runner_backend(name: str, precision: str, path: Path, **options) -> Backend:
    def open_() -> Callable[[np.ndarray], object]:
        runner = open_runner(path, check_inputs=False, **options).activate()
        return runner.infer

    return Backend(name, precision, "ref:ort-matmul-int8" if precision == "int8" else "ref:ort-matmul-fp32", open_)


def openvino_backend(name: str, precision: str, path: Path, threads: int) -> Backend:
    """OpenVINO running ``path`` (FP32 or Q/DQ INT8 .onnx); ``precision`` bf16 runs an FP32 file in BF16."""

    def open_() -> Callable[[np.ndarray], object]:
        from ..backends import openvino

        runner = openvino.make_runner(path, threads=threads, precision=float_ops("openvino", precision), check_inputs=False)
        return runner.activate().infer

    return Backend(name, precision, "ref:ort-matmul-int8" if precision == "int8" else "ref:ort-matmul-fp32", open_)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_size(
    backends: list[Backend],
    model: torch.nn.Module,
    height: int,
    width: int,
    threads: int,
    rounds: int = 7,
    per_round: int = 3,
    quiet: bool = False,
    kernels: dict[str, Kernel] | None = None,
) -> SizeResult:
    """Open every backend (recording the memory it took and its labels), then time all of them interleaved.

    ``quiet``: figures from the rounds in which the reference matrix product ran at or below its median
    (the quieter half of a shared machine's rounds; :func:`.latency.interleaved`). ``kernels``: the peak
    micro-kernels (:func:`.peak.kernels`), timed in the same rounds.
    """
    frame = sample_frame(height, width)
    scenes = [render_scene(np.random.default_rng(HELDOUT_SEED + i), (height, width))[0] for i in range(AGREEMENT_SCENES)]
    workloads: dict[str, Callable[[], object]] = {
        REFERENCE: ceiling.ort_matmul(threads=threads),
        "ref:ort-matmul-int8": ceiling.ort_matmul(threads=threads, int8=True),
        "ref:torch-matmul": ceiling.torch_matmul(),
        **{f"ref:peak-{precision}": kernel.run for precision, kernel in (kernels or {}).items()},
    }
    memory, labels = {}, {}
    for backend in backends:
        before = _rss_mb()
        infer = backend.open()
        infer(frame)
        memory[backend.name] = _rss_mb() - before
        labels[backend.name] = np.stack([np.array(infer(scene)).reshape(height, width) for scene in scenes])  # copies
        workloads[backend.name] = lambda infer=infer: infer(frame)
    torch.set_num_threads(threads)
    stats = interleaved(workloads, rounds=rounds, per_round=per_round, quiet_by=REFERENCE if quiet else None)
    reference = next((labels[name] for name in AGREEMENT_REFERENCES if name in labels), None)
    agreement = {name: float((lab == reference).mean()) for name, lab in labels.items()} if reference is not None else {}
    peak = {p: k.ops / (stats[f"ref:peak-{p}"].median_ms / 1000) / 1e9 for p, k in (kernels or {}).items()}
    return SizeResult((height, width), conv_gflops(model, height, width), stats, {b.name: b.ceiling for b in backends}, memory,
                      {b.name: b.precision for b in backends}, agreement, peak)  # fmt: skip


def backends_for(checkpoint: Checkpoint, fp32_onnx: Path, int8_onnx: Path, threads: int) -> list[Backend]:
    """PyTorch eager and ONNX Runtime FP32/INT8 everywhere; OpenVINO where installed; CUDA PyTorch where a GPU is visible."""
    backends = [
        pytorch_backend(checkpoint, threads),
        runner_backend("ort-fp32", "fp32", fp32_onnx, threads=threads, backend="onnxruntime"),
        runner_backend("ort-int8", "int8", int8_onnx, threads=threads, backend="onnxruntime"),
    ]
    if find_spec("openvino") is not None:
        from ..backends.openvino import probe

        bf16_cpu = probe().bf16
        for precision in precisions("openvino"):
            if precision != "bf16" or bf16_cpu:
                model = int8_onnx if precision == "int8" else fp32_onnx  # BF16: the FP32 file, float ops in BF16
                backends.append(openvino_backend(f"openvino-{precision}", precision, model, threads))
    if torch.cuda.is_available():
        backends.append(pytorch_backend(checkpoint, threads, device="cuda"))
    for engine in sorted(int8_onnx.parent.glob(f"{fp32_onnx.stem.split('.')[0]}.*.engine")):
        precision = engine.suffixes[-2].lstrip(".")
        backends.append(runner_backend(f"tensorrt-{precision}", precision, engine))
    return backends


def reference_backends(fp32_onnx: Path | None, int8_onnx: Path | None, threads: int) -> list[Backend]:
    """Older artifacts timed on ONNX Runtime in the same run, so that a change is measured as a ratio (never baselined)."""
    backends = []
    if fp32_onnx is not None:
        backends.append(runner_backend("ort-fp32-reference", "fp32", fp32_onnx, threads=threads, backend="onnxruntime"))
    if int8_onnx is not None:
        backends.append(runner_backend("ort-int8-reference", "int8", int8_onnx, threads=threads, backend="onnxruntime"))
    return backends
