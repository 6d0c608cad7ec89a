"""Several cameras through one runner: the newest frames of the streams run in batches ("parts"), one per runner stream.

::

    capture thread (per stream) ─▶ its pending frames ─┐
    capture thread (per stream) ─▶ its pending frames ─┼─▶ main thread: parts in flight ─▶ drawing thread
    capture thread (per stream) ─▶ its pending frames ─┘   runner.start(KxHxWx3) / wait()   (per stream)

Every stream (a "feed") keeps what a single stream keeps in pipeline.py, on its own: its frame
pool, drop policy, sinks, stats and reconnects. Only the runner is shared, so the model and its
buffers are loaded once and a batch of frames runs in one call.

The runner's streams (OpenVINO's throughput streams, ONNX Runtime's sessions: ``runner.inflight``;
the command line asks for one per thread) each run a part: the oldest frame of up to
ceil(active streams / runner streams) camera streams, of one frame size. Parts are pipelined: the
moment the oldest part's labels are back, its streams' next frames start while the other parts
still run, so no runner stream idles at a barrier waiting for the slowest part of a step (the
runner alone, 4 frames at 640x480 on 2 cores: 8-9% more frames a second than a barrier per step;
in the loop on those 2 cores the decoding used that idle time, so the gain is where decoding
has cores of its own, docs/stream.md). A runner with one stream (TensorRT, ``--inflight 1``)
runs one part at a time: every ready stream's frame, one batch per frame size.

Only the first part waits, up to ``START_WAIT``, for every stream's first frame; nothing waits
for a stream without a new frame, a stream has at most one frame running, and parts take
streams round-robin, so a bursty stream gets no more turns than the others (fairness). A live
stream keeps only its newest frame: under overload it drops its own oldest frame (counted in its
stats), never another stream's. A file stream is read at the model's pace and loses nothing. A
dead camera reconnects on its own capture thread (pipeline.read_reconnecting) while the others
go on; a stream that ends (end of its file, lost after its reconnects) ends alone with one line.

Frames of different sizes are batched by size (no resizing, so labels need no mapping back; the
cost is one smaller batch per extra size, measured in benchmarks/multi_stream.py). A part is no
larger than the runner takes (``runner.max_batch``: a model fixed at batch 1, a TensorRT
profile's max). Each stream decodes into its own pool of ``runner.frame_buffer`` slots
(TensorRT: page-locked, or mapped on Jetson), so one frame alone runs in place; a batch is
gathered (one copy of each frame) in ``runner.batch_buffer`` on a one-stream runner, else in a
buffer per part in flight.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Callable, NamedTuple, Sequence

import cv2
import numpy as np

from ..errors import FcnEdgeError
from ..runner import Runner
from .overlay import Overlay
from .pipeline import (
    CAPTURE_JOIN,
    FILE_QUEUE,
    OVERLAY_QUEUE,
    POLL,
    StreamOptions,
    into_runner_memory,
    log_line,
    read_reconnecting,
)
from .sinks import Sink
from .sources import Source
from .stats import END_OF_INPUT, MAX_FRAMES, SOURCE_LOST, STAGES, STOPPED, StageStats, StatusLine, StreamStats

START_WAIT = 2.0  # s the first step waits for every stream's first frame: the runner warms up on the full batch
FEED_POOL = FILE_QUEUE + OVERLAY_QUEUE + 3  # 1 being read + pending + 1 in inference + drawing queue + 1 drawn
LABEL_POOL = OVERLAY_QUEUE + 2


class Feed:
    """One stream of a multi-stream run: its source, sinks and stats, its capture and drawing threads."""

    def __init__(self, index: int, name: str, source: Source, sinks: Sequence[Sink], options: StreamOptions,
                 wake: threading.Condition, log: Callable[[str], None], runner: Runner) -> None:  # fmt: skip
        self.index, self.name, self.source, self.sinks, self.runner = index, name, source, list(sinks), runner
        self.options, self.wake, self.log = options, wake, log
        self.stats = StreamStats()
        self.stats.stages["latency"] = StageStats()  # captured -> written: what a viewer of this stream waits
        self.stats.info.update(id=index, name=name, source=source.description)
        self.pending: deque[tuple[np.ndarray, float]] = deque()  # (frame, when captured), guarded by ``wake``
        self.depth = 1 if source.live else FILE_QUEUE  # a live stream keeps only its newest frame
        self.started = 0  # frames taken into a batch (main thread)
        self.capture_done = False  # guarded by ``wake``
        self.lost = False
        self.halt = threading.Event()
        self.errors: list[BaseException] = []
        self._free: queue.Queue = queue.Queue()
        for _ in range(FEED_POOL):
            self._free.put(None)  # allocated by the first read at the source's size
        self._free_labels: queue.Queue = queue.Queue()
        for _ in range(LABEL_POOL):
            self._free_labels.put(np.empty(0, np.uint8))
        self.drawing_queue: queue.Queue = queue.Queue(maxsize=OVERLAY_QUEUE)
        self._capture = threading.Thread(target=self._guard, args=(self._read_frames,), name=f"capture-{name}", daemon=True)
        self._drawing = threading.Thread(target=self._guard, args=(self._draw,), name=f"overlay-{name}", daemon=True)

    def start(self, overlay: Overlay) -> None:
        self.overlay = overlay.copy()  # its buffers are this stream's: the drawing threads run at once
        for sink in self.sinks:
            sink.start(self.stats, self.overlay)
        self._capture.start()
        self._drawing.start()

    # --- main thread -----------------------------------------------------------------------

    def ready(self) -> bool:
        """A frame waits and the drawing queue has room for it (called holding ``wake``)."""
        return bool(self.pending) and not self.drawing_queue.full() and not self.reached_max() and not self.errors

    def reached_max(self) -> bool:
        return self.options.max_frames is not None and self.started >= self.options.max_frames

    def finished(self) -> bool:
        """Nothing more will come (called holding ``wake``)."""
        return bool(self.errors) or self.reached_max() or (self.capture_done and not self.pending)

    def take(self) -> tuple[np.ndarray, float]:
        """The oldest pending frame (called holding ``wake``); ``frame_started`` for its stats."""
        self.started += 1
        self.stats.frame_started()
        return self.pending.popleft()

    def hand_over(self, frame: np.ndarray, labels: np.ndarray, captured: float, infer_start: float, infer_end: float) -> None:
        """Pass one inferred frame to the drawing thread (room was checked when it was taken)."""
        self.stats.stages["capture"].add(infer_start - captured)
        self.stats.stages["infer"].add(infer_end - infer_start)
        kept = self._keep(labels) if self.sinks else None
        self.drawing_queue.put_nowait((frame, kept, captured))

    def _keep(self, labels: np.ndarray) -> np.ndarray:
        kept = self._free_labels.get()
        if kept.shape != labels.shape:
            kept = np.empty_like(labels)
        np.copyto(kept, labels)
        return kept

    def close(self) -> list[BaseException]:
        """Stop the threads, drain the drawing queue into the sinks, close them; the errors met on the way."""
        self.halt.set()
        while self._drawing.is_alive():
            try:
                self.drawing_queue.put(None, timeout=POLL)
                break
            except queue.Full:
                continue
        self._drawing.join()
        self._capture.join(timeout=CAPTURE_JOIN)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as error:
                self.errors.append(error)
        return self.errors

    # --- capture thread --------------------------------------------------------------------

    def _read_frames(self) -> None:
        try:
            while not self.halt.is_set():
                try:
                    buffer = self._free.get(timeout=POLL)
                except queue.Empty:
                    continue
                try:
                    frame, lost = read_reconnecting(self.source, buffer, self.options, self.stats, self.halt, self.log)
                except FcnEdgeError as error:  # a bad file mid-input ends this stream, not the others
                    self.log(f"stream {self.name}: {error}")
                    self.stats.end_reason = f"input error: {error}"
                    return
                if frame is None:
                    self.lost = lost
                    self.stats.end_reason = SOURCE_LOST if lost else (STOPPED if self.halt.is_set() else END_OF_INPUT)
                    return
                if frame is not buffer:  # the first frame, or a new size: a slot of runner memory joins the pool
                    frame = into_runner_memory(self.runner, frame, buffer)
                with self.wake:
                    if len(self.pending) >= self.depth and self.source.live:  # overload: drop our own oldest frame
                        self._free.put(self.pending.popleft()[0])
                        self.stats.dropped += 1
                    self.pending.append((frame, time.perf_counter()))
                    self.wake.notify_all()
                    while not self.source.live and len(self.pending) >= self.depth and not self.halt.is_set():
                        self.wake.wait(POLL)  # a file waits for the model: every frame is processed
        finally:
            with self.wake:
                self.capture_done = True
                self.wake.notify_all()
            self.source.close()

    # --- drawing thread --------------------------------------------------------------------

    def _draw(self) -> None:
        while True:
            item = self.drawing_queue.get()
            if item is None:
                return
            frame, labels, captured = item
            start = time.perf_counter()
            image = frame
            if len(self.sinks) == 1:
                image = self.sinks[0].draw(frame, labels, self.overlay)
            elif self.sinks:
                image = self.overlay.render(frame, labels, out=frame)
            drawn = time.perf_counter()
            for sink in self.sinks:
                sink.write(image)
            done = time.perf_counter()
            self.stats.stages["overlay"].add(drawn - start)
            self.stats.stages["write"].add(done - drawn)
            self.stats.stages["latency"].add(done - captured)
            self.stats.frame_done()
            self._free.put(frame)
            if labels is not None:
                self._free_labels.put(labels)
            with self.wake:
                self.wake.notify_all()  # room in the drawing queue: this stream may be ready again
            if any(sink.stop_requested for sink in self.sinks):
                self.halt.set()

    def _guard(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as error:  # ends this stream; run() raises it once every stream is closed
            self.errors.append(error)
            self.halt.set()
            with self.wake:
                self.wake.notify_all()


class Part(NamedTuple):
    """Frames running in one runner call; ``labels`` is set when it ran synchronously."""

    taken: list[tuple[Feed, np.ndarray, float]]
    start: float
    labels: np.ndarray | None


class MultiStream:
    """One run over several opened sources and one active runner; ``run()`` closes every source and sink and returns
    the stats of each stream."""

    def __init__(
        self, feeds: Sequence[tuple[str, Source, Sequence[Sink]]], runner: Runner, overlay: Overlay,
        options: StreamOptions | None = None, stop: threading.Event | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.runner, self.overlay = runner, overlay
        self.options = options or StreamOptions()
        self.stop = stop or threading.Event()
        self.log = log or log_line
        self.wake = threading.Condition()
        self.feeds = [Feed(i, name, source, sinks, self.options, self.wake, self.log, runner)
                      for i, (name, source, sinks) in enumerate(feeds)]  # fmt: skip
        for feed in self.feeds:
            feed.stats.info.update(runner=runner.name)
        self.batches = 0  # parts run (runner calls)
        self._next = 0  # the feed a part looks at first: round-robin
        self._running_feeds: set[int] = set()  # feeds with a frame in a running part, guarded by ``wake``
        self._part_buffers: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}  # (slot, shape) -> batch buffer
        self.batch_frames = 0  # frames they ran
        self.first_start: float | None = None
        self.last_done: float | None = None

    def run(self) -> list[StreamStats]:
        opencv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # each stream's host stages have their own threads (pipeline.py)
        status = StatusLine([(feed.name, feed.stats) for feed in self.feeds], self.options.status_interval)
        errors: list[BaseException] = []
        reason = STOPPED
        try:
            for feed in self.feeds:
                feed.start(self.overlay)
            reason = self._infer_loop(status)
        finally:
            for feed in self.feeds:
                errors += feed.close()
                feed.stats.end_reason = MAX_FRAMES if feed.reached_max() else feed.stats.end_reason or reason
            status.close()
            self.last_done = max((f.stats.last_done for f in self.feeds if f.stats.last_done), default=None)
            cv2.setNumThreads(opencv_threads)
        if errors:
            raise errors[0]
        return [feed.stats for feed in self.feeds]

    def _infer_loop(self, status: StatusLine) -> str:
        ended: set[int] = set()
        running: deque[Part] = deque()
        with self.wake:  # a runner that compiles per batch size (OpenVINO) compiles the common one first
            self.wake.wait_for(lambda: all(f.pending or f.finished() for f in self.feeds) or self.stop.is_set(), START_WAIT)
        while not self.stop.is_set():
            with self.wake:
                self._note_ended(ended)
                if len(ended) == len(self.feeds) and not running:
                    return END_OF_INPUT
                taken = self._take_part(len(self.feeds) - len(ended)) if len(running) < self.runner.inflight else []
                if taken:
                    self.wake.notify_all()  # file captures waiting for room
                elif not running:
                    self.wake.wait(POLL)
                    continue
            if taken:
                running.append(self._start(taken))
                if len(running) < self.runner.inflight:
                    continue  # a free runner stream: start another part before waiting for the oldest
            self._finish(running.popleft())
            status.update()
        while running:  # stopped: the frames already running are drawn and recorded, not lost
            self._finish(running.popleft())
        return STOPPED

    def _note_ended(self, ended: set[int]) -> None:
        """One line per stream that has ended while others go on; its capture stops (--max-frames)."""
        for feed in self.feeds:
            if feed.index not in ended and feed.finished():
                ended.add(feed.index)
                feed.halt.set()
                if len(ended) < len(self.feeds):  # the last one's end is the summary's
                    why = MAX_FRAMES if feed.reached_max() else feed.stats.end_reason or "error"
                    self.log(f"stream {feed.name} ended ({why}); {len(self.feeds) - len(ended)} still running")

    def _take_part(self, active: int) -> list[tuple[Feed, np.ndarray, float]]:
        """The next part (called holding ``wake``): the oldest frame of up to a runner stream's share of the active
        streams, of one frame size, from streams with nothing running, taken round-robin."""
        share = max(1, -(-active // self.runner.inflight))
        most = min(share, self.runner.max_batch or share)
        order = self.feeds[self._next :] + self.feeds[: self._next]
        ready = [feed for feed in order if feed.index not in self._running_feeds and feed.ready()]
        if not ready:
            return []
        shape = ready[0].pending[0][0].shape
        chosen = [feed for feed in ready if feed.pending[0][0].shape == shape][:most]
        self._next = (chosen[-1].index + 1) % len(self.feeds)
        self._running_feeds.update(feed.index for feed in chosen)
        return [(feed, *feed.take()) for feed in chosen]

    def _start(self, taken: list[tuple[Feed, np.ndarray, float]]) -> Part:
        """Begin a part on the runner: one frame in place, several gathered in a batch buffer of its own. A runner
        with one stream runs it now (its labels are read before anything else runs)."""
        if self.first_start is None:
            self.first_start = time.perf_counter()
        frame = taken[0][1]
        if len(taken) > 1:
            shape = (len(taken), *frame.shape)
            if self.runner.inflight == 1:
                frame = self.runner.batch_buffer(shape)
            else:  # each part in flight reads its own buffer until its labels are back
                key = (self.batches % self.runner.inflight, shape)
                frame = self._part_buffers.get(key)
                if frame is None:
                    frame = self._part_buffers[key] = self.runner.frame_buffer(shape)
            for slot, (_, image, _) in zip(frame, taken):
                np.copyto(slot, image)
        self.batches += 1
        self.batch_frames += len(taken)
        start = time.perf_counter()
        if self.runner.inflight == 1:
            return Part(taken, start, self.runner.infer(frame))
        self.runner.start(frame)
        return Part(taken, start, None)

    def _finish(self, part: Part) -> None:
        """Hand each frame of the oldest part over to its stream's drawing thread."""
        labels = self.runner.wait() if part.labels is None else part.labels
        end = time.perf_counter()
        for index, (feed, frame, captured) in enumerate(part.taken):
            feed.hand_over(frame, labels[index] if labels.ndim == 3 else labels, captured, part.start, end)
        with self.wake:
            self._running_feeds.difference_update(feed.index for feed, _, _ in part.taken)

    def summary(self) -> str:
        """One row per stream, then the aggregate."""
        stats = [feed.stats for feed in self.feeds]
        frames = sum(s.frames for s in stats)
        seconds = (self.last_done - self.first_start) if self.first_start and self.last_done else 0.0
        mean_batch = self.batch_frames / self.batches if self.batches else 0.0
        labels = ("waited", "infer", "overlay", "write", "latency")  # waited: captured -> its batch started
        header = (
            f"{'stream':<16}{'frames':>7}{'fps':>7}{'drop':>6}{'recon':>6}"
            + "".join(f"{label:>14}" for label in labels)
            + "  ended"
        )
        lines = [
            f"{len(stats)} streams, {frames} frames in {seconds:.1f} s ({frames / seconds if seconds else 0:.2f} fps "
            f"together); {self.batches} batches of {mean_batch:.2f} frames on average",
            header + "  (stages: p50/p95 ms)",
        ]
        for feed, s in zip(self.feeds, stats):
            cells = "".join(f"{s.stages[name].percentile(50):>7.1f}/{s.stages[name].percentile(95):<6.1f}"
                            for name in [*STAGES, "latency"])  # fmt: skip
            lines.append(f"{feed.name[:15]:<16}{s.frames:>7}{s.fps:>7.2f}{s.dropped:>6}{s.reconnects:>6}{cells}  {s.end_reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        seconds = (self.last_done - self.first_start) if self.first_start and self.last_done else 0.0
        frames = sum(feed.stats.frames for feed in self.feeds)
        return {
            "streams": [feed.stats.to_dict() for feed in self.feeds],
            "frames": frames, "seconds": seconds, "fps": frames / seconds if seconds else 0.0,
            "batches": self.batches, "mean_batch": self.batch_frames / self.batches if self.batches else 0.0,
            "runner": self.runner.name,
        }  # fmt: skip
