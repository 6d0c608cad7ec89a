"""Per-stage latency, throughput and event counts for the stream loop, in constant memory.

Each stage keeps a ring of its recent samples (for the live status line) and a log-spaced
histogram of every sample (for the exit summary: p50/p95 within 2%), so a week-long run
uses the same memory as a minute-long one. Every counter has exactly one writing thread;
readers (the status line) may see a value one frame old, which is fine for a display.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Sequence, TextIO

import numpy as np

STAGES = {"capture": "capture wait", "infer": "infer", "overlay": "overlay", "write": "write"}
MIN_MS, BIN_RATIO, BINS = 1e-3, 1.02, 1200  # covers 1 us .. ~20 s
RECENT = 256
END_OF_INPUT, SOURCE_LOST, STOPPED, MAX_FRAMES = "end of input", "source lost", "stopped", "max frames"  # end reasons


class StageStats:
    """Latency samples of one stage, in milliseconds."""

    def __init__(self) -> None:
        self._recent = np.zeros(RECENT)
        self._histogram = np.zeros(BINS, np.int64)
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def add(self, seconds: float) -> None:
        ms = seconds * 1e3
        self._recent[self.count % RECENT] = ms
        self._histogram[min(BINS - 1, max(0, int(math.log(max(ms, MIN_MS) / MIN_MS) / math.log(BIN_RATIO))))] += 1
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def recent(self) -> tuple[float, float]:
        """(p50, p95) of the last samples; zeros before the first."""
        n = min(self.count, RECENT)
        if not n:
            return 0.0, 0.0
        p50, p95 = np.percentile(self._recent[:n], (50, 95))
        return float(p50), float(p95)

    def percentile(self, q: float) -> float:
        """Whole-run percentile from the histogram: the geometric centre of the bin it falls in."""
        if not self.count:
            return 0.0
        index = int(np.searchsorted(np.cumsum(self._histogram), q / 100 * self.count))
        return min(MIN_MS * BIN_RATIO ** (index + 0.5), self.max_ms)

    def to_dict(self) -> dict[str, float]:
        mean = self.total_ms / self.count if self.count else 0.0
        return {"count": self.count, "p50_ms": self.percentile(50), "p95_ms": self.percentile(95), "mean_ms": mean,
                "max_ms": self.max_ms}  # fmt: skip


class StreamStats:
    """What the loop reports: frames, fps, drops, reconnects and the four stages."""

    def __init__(self) -> None:
        self.stages = {name: StageStats() for name in STAGES}
        self.frames = 0  # written by the sink thread
        self.dropped = 0  # stale live frames replaced by newer ones (capture thread)
        self.reconnect_attempts = 0  # (capture thread)
        self.reconnects = 0  # attempts that got frames again (capture thread)
        self.first_start: float | None = None  # first frame handed to the runner
        self.last_done: float | None = None  # last frame through the sinks
        self.end_reason = ""
        self.info: dict[str, Any] = {}  # source, model, backend: for the JSON file

    def frame_started(self) -> None:
        if self.first_start is None:
            self.first_start = time.perf_counter()

    def frame_done(self) -> None:
        self.frames += 1
        self.last_done = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.first_start is None or self.last_done is None:
            return 0.0
        return self.last_done - self.first_start

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def status_line(self, fps: float) -> str:
        parts = [f"{fps:5.1f} fps"]
        for name, label in STAGES.items():
            p50, p95 = self.stages[name].recent()
            parts.append(f"{label} {p50:.1f}/{p95:.1f} ms")
        parts.append(f"dropped {self.dropped}")
        if self.reconnect_attempts:
            parts.append(f"reconnects {self.reconnects}/{self.reconnect_attempts}")
        return " | ".join(parts)

    def summary(self) -> str:
        reconnects = f"{self.reconnects} of {self.reconnect_attempts} reconnect attempts succeeded; "
        lines = [
            f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} fps); {self.dropped} stale frames dropped; "
            f"{reconnects if self.reconnect_attempts else ''}ended: {self.end_reason}",
            f"{'stage':<14}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'max ms':>9}",
        ]
        for name, label in STAGES.items():
            d = self.stages[name].to_dict()
            lines.append(f"{label:<14}{d['p50_ms']:>9.2f}{d['p95_ms']:>9.2f}{d['mean_ms']:>9.2f}{d['max_ms']:>9.2f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info,
            "frames": self.frames, "seconds": self.seconds, "fps": self.fps, "dropped": self.dropped,
            "reconnect_attempts": self.reconnect_attempts, "reconnects": self.reconnects, "end_reason": self.end_reason,
            "stages_ms": {name: stage.to_dict() for name, stage in self.stages.items()},
            "monotonic_s": [self.first_start, self.last_done],  # first start, last done: comparable across processes
        }  # fmt: skip


class StatusLine:
    """Rewrites one stderr line (a terminal) at most every ``interval`` s; logs get a line every 10x that.

    One stream shows its full status line; several show each stream's fps and drops on the one line."""

    def __init__(self, streams: Sequence[tuple[str, StreamStats]], interval: float = 0.5, stream: TextIO | None = None) -> None:
        self.streams = list(streams)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if self.tty else interval * 10
        self._last_time = time.perf_counter()
        self._last_frames = [0] * len(self.streams)
        self._shown = False

    def update(self) -> None:
        now = time.perf_counter()
        if self.interval <= 0 or now - self._last_time < self.interval:
            return
        rates = [(stats.frames - last) / (now - self._last_time) for (_, stats), last in zip(self.streams, self._last_frames)]
        self._last_time, self._last_frames = now, [stats.frames for _, stats in self.streams]
        if len(self.streams) == 1:
            line = self.streams[0][1].status_line(rates[0])
        else:
            line = " | ".join(f"{name} {fps:.1f} fps, {stats.dropped} dropped" for (name, stats), fps in zip(self.streams, rates))
        self.stream.write(f"\r\x1b[2K{line}" if self.tty else line + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the rewritten line so the summary starts on its own."""
        if self._shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
