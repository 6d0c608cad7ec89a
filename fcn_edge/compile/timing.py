"""The build's latencies, and the rule that decides on them: measured so that the same file gives the same answer.

Every candidate a decision compares (the precision on each CPU runtime that runs it, and the
FP32 artifact on each) is opened through the runner the stream will open (:mod:`fcn_edge.backends`'
``make_runner``, at the stream's thread count) and timed round-robin in one run, ``ROUNDS`` rounds
of ``PER_ROUND`` frames each, so a burst of load from a neighbour hits every candidate of a round
alike. A model the stream cannot run (a float tensor input, scores rather than labels out) is timed
through a session with the runner's settings instead.

Figures are medians of the per-round medians. A ratio is taken round by round (candidate over
reference in the same round) and its spread is the interquartile range of those per-round ratios.
The rule (:func:`verdict`): a candidate is *faster* only when even the upper quartile of its ratios
is below 1, *slower* only when even the lower quartile is above 1, and otherwise *within noise*.
A lower precision costs accuracy, so it is chosen only when it is faster; a runtime other than the
first (ONNX Runtime, always installed) runs an artifact only when it is faster than the first.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from ..backends.onnxruntime import session
from ..bench.latency import round_robin
from ..data.synthetic import HELDOUT_SEED, render_scene
from . import cpu
from .source import SourceModel

ROUNDS = 8
PER_ROUND = 3
WARMUP = 2
FASTER, SLOWER, WITHIN_NOISE = "faster", "slower", "within noise"


@dataclass(frozen=True)
class Spread:
    """A median and the interquartile range around it (ms, or a ratio)."""

    median: float
    low: float  # 25th percentile
    high: float  # 75th percentile

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        low, median, high = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
        return cls(float(median), float(low), float(high))

    def describe(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} (IQR {self.low:.{digits}f}-{self.high:.{digits}f})"


def verdict(ratio: Spread) -> str:
    """FASTER when the ratio's upper quartile is below 1, SLOWER when its lower quartile is above 1, else WITHIN_NOISE."""
    if ratio.high < 1:
        return FASTER
    if ratio.low > 1:
        return SLOWER
    return WITHIN_NOISE


def ratio(candidate: Sequence[float], reference: Sequence[float]) -> Spread:
    """Per-round ratios of two workloads timed in the same rounds (per-round medians, in round order)."""
    return Spread.of(np.asarray(candidate) / np.asarray(reference))


def first_faster(rounds: dict[str, list[float]]) -> str:
    """The runtime that runs an artifact: the first named unless another is FASTER than it (then the quickest of those)."""
    first, *others = rounds
    faster = [name for name in others if verdict(ratio(rounds[name], rounds[first])) == FASTER]
    return min(faster, key=lambda name: np.median(rounds[name])) if faster else first


def stream_runs(model: Path) -> bool:
    """Whether the stream's runners take ``model``: uint8 [N,H,W,3] frames in, a uint8 [N,H,W] labels output."""
    graph = onnx.load(str(model), load_external_data=False).graph
    inputs = [v for v in graph.input if v.name not in {t.name for t in graph.initializer}]
    frames = inputs[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    labels = any(
        o.type.tensor_type.elem_type == onnx.TensorProto.UINT8 and len(o.type.tensor_type.shape.dim) == 3 for o in graph.output
    )
    return frames and labels


def latency_frame(size: tuple[int, int]) -> np.ndarray:
    """The held-out scene every latency of a build is timed on, so that precisions, runtimes and batch sizes see one frame."""
    return render_scene(np.random.default_rng(HELDOUT_SEED), size)[0]


@dataclass(frozen=True)
class Candidate:
    model: Path
    backend: str  # "onnxruntime" | "openvino"
    precision: str  # how float ops run: "bf16" on OpenVINO, else as the file says


def measure(candidates: dict[str, Candidate], source: SourceModel, size: tuple[int, int], threads: int,
            cache_dir: Path) -> tuple[dict[str, list[float]], str]:  # fmt: skip
    """Per-round median latency (ms) of every candidate, timed round-robin, and what ran them ("runner" or "session")."""
    frame = latency_frame(size)
    through = "runner" if all(stream_runs(c.model) for c in candidates.values()) else "session"
    with ExitStack() as stack:
        workloads = {
            name: _runner(c, threads, cache_dir, frame, stack) if through == "runner" else _session(c, threads, source.feed([frame]))
            for name, c in candidates.items()
        }  # fmt: skip
        rounds = round_robin(workloads, ROUNDS, PER_ROUND, WARMUP)
    return {name: [float(np.median(r[name])) for r in rounds] for name in candidates}, through


def _runner(candidate: Candidate, threads: int, cache_dir: Path, frame: np.ndarray, stack: ExitStack) -> Callable[[], object]:
    """The runner ``open_runner`` gives the stream for this file, precision and thread count."""
    runner = stack.enter_context(cpu.runner(candidate.backend, candidate.precision, candidate.model, threads, cache_dir))
    return lambda: runner.infer(frame)


def _session(candidate: Candidate, threads: int, feed: dict[str, np.ndarray]) -> Callable[[], object]:
    """An ONNX Runtime session with the runner's settings, for a model whose input or output the runners do not take
    (the build tries no other runtime on it: :class:`.steps.Build`)."""
    if candidate.backend != "onnxruntime":
        raise ValueError(f"{candidate.model} is not a frame model: only ONNX Runtime times it, not {candidate.backend}")
    sess = session(candidate.model, threads)
    return lambda: sess.run(None, feed)
