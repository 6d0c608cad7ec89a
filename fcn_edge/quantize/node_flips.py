"""How many labels each quantized node changes on its own: one Q/DQ model per node, run end to end.

The one-pass ranking (:mod:`.layer_error`) scores each node's local output noise, which on trained
depthwise/hard-swish models does not predict what the labels do (docs/foreign.md: Spearman -0.28
against the real gain of keeping each node in float, on MediaPipe's selfie segmenter). Quantizing
one node alone and counting the labels that change against FP32 measures the effect itself, at
the cost of one model evaluation per node: the search (:mod:`fcn_edge.compile.mixed`) spends at
most a share of its time here and keeps the one-pass ranking when that does not suffice.
These per-node models are the search's own evaluations, not artifacts: plain ONNX Runtime
sessions run them, and every model the build keeps is verified through the stream's runner.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from ..backends.onnxruntime.session import apply_thread_policy
from . import qdq
from .statistics import TensorRanges


def labels(path: Path, feeds: Sequence[dict[str, np.ndarray]], threads: int = 2) -> list[np.ndarray]:
    """The labels of ``path`` on each feed: its first output (the graphs a build quantizes end in labels), or the
    ArgMax over channels of [N,K,H,W] float scores."""
    options = apply_thread_policy(ort.SessionOptions())
    options.intra_op_num_threads, options.log_severity_level = threads, 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    found = [session.run(None, feed)[0] for feed in feeds]
    return [v.argmax(1) if v.ndim == 4 and np.issubdtype(v.dtype, np.floating) else v for v in found]


def node_flips(
    prepared: Path,
    ranges: TensorRanges,
    candidates: Sequence[str],
    feeds: Sequence[dict[str, np.ndarray]],
    folder: Path,
    seconds: float,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, float] | None:
    """Per candidate, the share of labels on ``feeds`` that differ from FP32 with only that node quantized
    (ONNX Runtime placement); None when measuring them all would take longer than ``seconds`` (estimated after the first)."""
    started = clock()
    reference = labels(prepared, feeds)
    flips: dict[str, float] = {}
    path = folder / "int8.one_node.onnx"
    for index, node in enumerate(tqdm(candidates, desc="rank nodes: one quantized at a time", leave=False, disable=not progress)):
        qdq.quantize(prepared, path, ranges, "onnxruntime", [c for c in candidates if c != node])
        changed = [float(np.mean(a != b)) for a, b in zip(labels(path, feeds), reference)]
        flips[node] = float(np.mean(changed))
        spent = clock() - started
        if spent / (index + 1) * len(candidates) > seconds:
            path.unlink(missing_ok=True)
            return None
    path.unlink(missing_ok=True)
    return flips
