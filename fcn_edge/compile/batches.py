"""The batch sizes an artifact is verified and timed at (``fcn-edge build --batch-sizes 1 4``).

Several cameras run through one model as one batch (fcn_edge/stream/multi.py). A batch must give
each frame the labels that frame gets alone, and it pays only if a frame costs less in a batch,
which on a CPU with few cores it may not. So for each size the build runs the verification images
as batches through the runner the stream opens, compares every frame's labels with the labels it
gets alone, and times one frame per batch size round-robin at the latency size (as
:mod:`.timing` times precisions). The sidecar's ``verification.batches`` records one row per size.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from typing import Callable, Sequence

import numpy as np

from ..bench.latency import round_robin
from ..errors import FcnEdgeError
from ..runner import Runner
from . import timing

MAX_FRAMES = 16  # verification frames batched per size: enough to see a disagreement, seconds per size


def verify(open_runner: Callable[[], Runner], frames: Sequence[np.ndarray], latency_frame: np.ndarray,
           sizes: Sequence[int]) -> list[dict]:  # fmt: skip
    """One row per batch size: labels equal to the frame's alone (fraction of pixels) and per-frame latency (ms).

    ``open_runner`` gives a fresh inactive runner of the artifact (one per size, as the stream holds one for its
    batch); ``frames`` are the verification images, of which the most common size is batched.
    """
    shape = Counter(f.shape for f in frames).most_common(1)[0][0]
    same = [f for f in frames if f.shape == shape][:MAX_FRAMES]
    with ExitStack() as stack:
        runners = {size: stack.enter_context(open_runner()) for size in sizes}
        most = runners[sizes[0]].max_batch
        if most is not None and max(sizes) > most:
            raise FcnEdgeError(
                f"--batch-sizes {max(sizes)}: the model takes at most {most} frame(s) at once: export it with a dynamic "
                "batch (TensorRT: give --max-shape that batch), or build with smaller --batch-sizes"
            )
        alone = [runners[sizes[0]].infer(frame[None])[0].copy() for frame in same]
        agreement = {size: _agreement(runners[size], same, alone, size) for size in sizes}
        workloads = {size: _workload(runners[size], np.stack([latency_frame] * size)) for size in sizes}
        rounds = round_robin(workloads, timing.ROUNDS, timing.PER_ROUND, timing.WARMUP)
    rows = []
    for size in sizes:
        per_frame = timing.Spread.of([float(np.median(r[size])) / size for r in rounds])
        rows.append({
            "batch": size, "agreement_with_alone": agreement[size], "frames_compared": len(same),
            "ms_per_frame": per_frame.median, "ms_per_frame_iqr": [per_frame.low, per_frame.high],
        })  # fmt: skip
    return rows


def _agreement(runner: Runner, frames: Sequence[np.ndarray], alone: Sequence[np.ndarray], size: int) -> float:
    """Fraction of pixels whose label in a batch of ``size`` equals its label alone; a short last batch is filled with
    the first frames again (the stream's batches are always full-size buffers)."""
    equal = total = 0
    for start in range(0, len(frames), size):
        chunk = list(frames[start : start + size])
        real = len(chunk)
        chunk += [frames[i % len(frames)] for i in range(size - real)]
        labels = runner.infer(np.stack(chunk))
        for index in range(real):
            equal += int(np.count_nonzero(labels[index] == alone[start + index]))
            total += labels[index].size
    return equal / total


def _workload(runner: Runner, batch: np.ndarray) -> Callable[[], object]:
    return lambda: runner.infer(batch)


def table(rows: Sequence[dict]) -> str:
    """The build's short table of the batch sizes."""
    alone = rows[0]["ms_per_frame"]
    lines = ["| batch | labels equal to alone | ms a frame | vs batch 1 |", "| --: | --: | --: | --: |"]
    lines += [
        f"| {r['batch']} | {r['agreement_with_alone']:.4%} | {r['ms_per_frame']:.1f} | {r['ms_per_frame'] / alone:.2f}x |"
        for r in rows
    ]
    return "\n".join(lines)
