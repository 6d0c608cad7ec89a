"""Memory soak: 5,000 headless frames through the whole loop must not grow resident memory.

Run with ``python -m pytest -m soak tests/soak/test_stream_soak.py`` (about a minute on
2 cores). RSS is read from /proc/self/status by a sink on the overlay thread, once after
warm-up and once at the last frame, so the loop, the runner, the pools and the stats
are all measured while they run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fcn_edge.data.synthetic import CLASSES, PALETTE
from fcn_edge.backends import open_runner
from fcn_edge.stream.overlay import Overlay
from fcn_edge.stream.pipeline import Stream, StreamOptions
from fcn_edge.stream.sinks import Sink
from fcn_edge.stream.sources import SyntheticSource

pytestmark = pytest.mark.soak

FRAMES, WARMUP, LIMIT_MB = 5000, 500, 20


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class RssProbe(Sink):
    def __init__(self):
        self.count, self.samples = 0, {}

    def write(self, image):
        self.count += 1
        if self.count in (WARMUP, FRAMES):
            self.samples[self.count] = rss_mb()

    def close(self):
        pass


def test_5000_headless_frames_grow_rss_by_less_than_20_mb(frame_model):
    source = SyntheticSource((160, 120), fps=500)  # live and faster than the model: the drop path runs too
    source.open()
    probe = RssProbe()
    runner = open_runner(frame_model, check_inputs=False)
    with runner:
        stream = Stream(
            source,
            runner,
            Overlay(PALETTE, 0.5, CLASSES, legend=True),
            [probe],
            StreamOptions(max_frames=FRAMES, status_interval=0),
        )
        stats = stream.run()
    growth = probe.samples[FRAMES] - probe.samples[WARMUP]
    print(
        f"RSS after {WARMUP} frames {probe.samples[WARMUP]:.1f} MB, after {FRAMES} {probe.samples[FRAMES]:.1f} MB "
        f"(+{growth:.1f} MB); {stats.fps:.1f} fps, {stats.dropped} dropped"
    )
    assert stats.frames == FRAMES
    assert growth < LIMIT_MB
