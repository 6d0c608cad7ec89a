"""The stream loop: capture, inference and overlay/sinks in three threads that overlap.

::

    capture thread ──frames──▶ main thread: runner.infer ──(frame, labels)──▶ overlay thread: blend, sinks
          ▲                                                                         │
          └──────────────── free frame buffers (a fixed pool) ◀─────────────────────┘

Frames live in a fixed pool of buffers that circulate: the source decodes into a free
one, the runner reads it in place, the overlay is blended into it (a lone recording
blends into its own YUV buffer instead), the sinks encode it, and it goes back to the
pool. Labels are copied once out of the runner's reused output buffer into a small pool
of their own (one byte per pixel), when a sink will draw them. Nothing is allocated per
frame unless the frame size changes. While the main thread runs frame k, the capture
thread is reading k+1 and the overlay thread is finishing k-1. A runner that runs several
frames at once (``runner.inflight``, OpenVINO with one stream per frame) gets that many
started before the main thread waits for the oldest, so frames leave in input order.

Drop policy. A live source (camera, network stream, synthetic) runs at its own rate: the
hand-off to inference holds one frame and a newer frame replaces an unread one (counted
as dropped), so latency never grows when the model is slower than the camera. A file
(video, images) has no clock of its own: the hand-off is a short queue whose ``put``
blocks, so every frame is processed at the model's pace and an output video has exactly
the input's frames. Between inference and the overlay thread the queue is short and
blocking for both kinds, so a slow sink slows inference rather than piling up frames.

Stopping. ``stop`` (set by a signal handler, a closed window or the caller) ends the loop
after the frames in flight; frames already inferred still reach the sinks; sinks are
closed (the mp4 is finalised) on every path out. An unreadable file mid-input (a corrupt
image) ends the input there: the frames before it are processed, then its error is raised.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from ..errors import FcnEdgeError
from ..runner import Runner
from .overlay import Overlay
from .sinks import Sink
from .sources import NETWORK_TIMEOUT_MS, Source
from .stats import END_OF_INPUT, MAX_FRAMES, SOURCE_LOST, STOPPED, StatusLine, StreamStats

FILE_QUEUE = 2  # frames decoded ahead of inference for file sources
OVERLAY_QUEUE = 2  # inferred frames waiting for the overlay thread
# Buffers in flight at most: 1 being read + FILE_QUEUE waiting + runner.inflight in inference + OVERLAY_QUEUE + 1 drawn.
FRAME_POOL = FILE_QUEUE + OVERLAY_QUEUE + 2
LABEL_POOL = OVERLAY_QUEUE + 2
POLL = 0.05  # s: how often blocked threads look at the stop flags
CAPTURE_JOIN = NETWORK_TIMEOUT_MS / 1000 + 1  # s: a camera read returns within a frame, a network read times out


def frames_in_flight_for_files(threads: int) -> int:
    """Frames a file keeps in inference by default: one OpenVINO stream per thread, plus one waiting to start the
    moment any stream is free (only throughput counts for a file; docs/stream.md)."""
    return threads + 1


@dataclass
class StreamOptions:
    max_frames: int | None = None
    reconnect: int = 3  # tries after a live source stops delivering
    reconnect_delay: float = 0.5  # s before the first try; doubles per try
    status_interval: float = 0.5  # s between status lines on a terminal; 0: none


def log_line(message: str) -> None:
    """A message on stderr, clearing a status line a terminal may be showing."""
    print(("\r\x1b[2K" if sys.stderr.isatty() else "") + message, file=sys.stderr, flush=True)


class Stream:
    """One run of the loop over an opened source and an active runner; ``run()`` closes the source and sinks
    and returns the stats."""

    def __init__(
        self, source: Source, runner: Runner, overlay: Overlay, sinks: Sequence[Sink],
        options: StreamOptions | None = None, stop: threading.Event | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.source, self.runner, self.overlay, self.sinks = source, runner, overlay, list(sinks)
        self.options = options or StreamOptions()
        self.stop = stop or threading.Event()
        self.log = log or log_line
        self.stats = StreamStats()
        self.stats.info.update(source=source.description, runner=runner.name)  # a live view shows them during the run
        self._halt = threading.Event()  # tells the worker threads to finish
        self._free_frames: queue.Queue = queue.Queue()
        for _ in range(FRAME_POOL + runner.inflight):
            self._free_frames.put(None)  # allocated by the first read at the source's size
        self._free_labels: queue.Queue = queue.Queue()
        for _ in range(LABEL_POOL):
            self._free_labels.put(np.empty(0, np.uint8))
        self._frames: queue.Queue = queue.Queue(maxsize=1 if source.live else FILE_QUEUE)
        self._inferred: queue.Queue = queue.Queue(maxsize=OVERLAY_QUEUE)
        self._capture_done = threading.Event()
        self._source_lost = False
        self._errors: list[BaseException] = []
        self._input_error: FcnEdgeError | None = None  # a bad file mid-input: raised once the frames before it are done

    def run(self) -> StreamStats:
        capture = threading.Thread(target=self._guard, args=(self._capture,), name="capture", daemon=True)
        drawing = threading.Thread(target=self._guard, args=(self._draw,), name="overlay", daemon=True)
        status = StatusLine([("", self.stats)], self.options.status_interval)
        for sink in self.sinks:
            sink.start(self.stats, self.overlay)
        # Each host stage has its own thread; OpenCV's pool on top took the cores from inference (docs/stream.md,
        # "Where the host time goes").
        opencv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        capture.start()
        drawing.start()
        reason = STOPPED
        try:
            reason = self._infer_loop(drawing, status)
        finally:
            self._halt.set()
            self._put(self._inferred, None, drawing)  # the overlay thread drains what is queued, then ends
            drawing.join()
            capture.join(timeout=CAPTURE_JOIN)  # it closes the source; a stuck driver must not hang the exit
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as error:  # the other sinks still close; the first error is raised below
                    self._errors.append(error)
            status.close()
            self.stats.end_reason = reason
            cv2.setNumThreads(opencv_threads)
        if self._errors:
            raise self._errors[0]
        if self._input_error:
            raise self._input_error
        return self.stats

    # --- main thread: inference ------------------------------------------------------------

    def _infer_loop(self, drawing: threading.Thread, status: StatusLine) -> str:
        """Start frames (up to ``runner.inflight`` at once) and pass each one's labels on, oldest first; frames
        already started when the loop ends still reach the sinks."""
        running: deque[tuple[np.ndarray, float]] = deque()  # (frame, when it was started)
        started, reason = 0, None
        while True:
            reason = reason or self._end_reason(started)
            if reason is None:
                wait_start = time.perf_counter()
                # with a frame running, start another only if one is ready: never hold finished labels for the camera
                frame = self._ready_frame() if running else self._next_frame()
                if frame is None and not running:
                    reason = self._end_reason(started) or (SOURCE_LOST if self._source_lost else END_OF_INPUT)
                elif frame is not None:
                    infer_start = time.perf_counter()
                    self.stats.stages["capture"].add(infer_start - wait_start)
                    self.stats.frame_started()
                    self.runner.start(frame)
                    running.append((frame, infer_start))
                    started += 1
                    if len(running) < self.runner.inflight:
                        continue
            if not running:
                return reason
            frame, infer_start = running.popleft()
            labels = self.runner.wait()
            kept = self._keep(labels) if self.sinks else None  # headless: nothing draws them
            self.stats.stages["infer"].add(time.perf_counter() - infer_start)
            if not self._put(self._inferred, (frame, kept), drawing):
                while running:  # the overlay thread is gone: finish what runs, then stop
                    running.popleft()
                    self.runner.wait()
                return STOPPED
            status.update()

    def _keep(self, labels: np.ndarray) -> np.ndarray:
        """A copy of the runner's reused output buffer, in a label buffer of the pool."""
        kept = self._free_labels.get()
        if kept.shape != labels.shape or kept.dtype != labels.dtype:
            kept = np.empty_like(labels)  # a new frame size: this pool slot follows it
        np.copyto(kept, labels)
        return kept

    def _end_reason(self, started: int) -> str | None:
        """Why no further frame should start (an error, a stop, --max-frames), or None."""
        if self._errors or self.stop.is_set():
            return STOPPED
        if self.options.max_frames is not None and started >= self.options.max_frames:
            return MAX_FRAMES
        return None

    def _next_frame(self) -> np.ndarray | None:
        """The next captured frame; None once capture has ended (or a stop was asked for)."""
        while not self.stop.is_set():
            try:
                return self._frames.get(timeout=POLL)
            except queue.Empty:
                if self._capture_done.is_set() and self._frames.empty():
                    return None
        return None

    def _ready_frame(self) -> np.ndarray | None:
        """A captured frame if one is waiting, else None at once."""
        try:
            return self._frames.get_nowait()
        except queue.Empty:
            return None

    def _put(self, target: queue.Queue, item: object, consumer: threading.Thread) -> bool:
        """Blocking put that gives up (False) if the consuming thread has died."""
        while consumer.is_alive():
            try:
                target.put(item, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    # --- capture thread --------------------------------------------------------------------

    def _capture(self) -> None:
        try:
            while not self._halt.is_set():
                try:
                    buffer = self._free_frames.get(timeout=POLL)
                except queue.Empty:
                    continue
                try:
                    frame = self._read(buffer)
                except FcnEdgeError as error:  # ends the input here, like the end of a file
                    self._input_error = error
                    return
                if frame is None:
                    return
                if frame is not buffer:  # the first frame, or a new size: give the pool a slot of runner memory
                    frame = into_runner_memory(self.runner, frame, buffer)
                if self.source.live:
                    self._offer_newest(frame)
                else:
                    while not self._halt.is_set():
                        try:
                            self._frames.put(frame, timeout=POLL)
                            break
                        except queue.Full:
                            continue
        finally:
            self._capture_done.set()
            self.source.close()

    def _offer_newest(self, frame: np.ndarray) -> None:
        """Hand over ``frame``, replacing an unread older one (only this thread puts, so one retry suffices)."""
        try:
            self._frames.put_nowait(frame)
            return
        except queue.Full:
            pass
        try:
            self._free_frames.put(self._frames.get_nowait())
            self.stats.dropped += 1
        except queue.Empty:
            pass  # inference took it meanwhile
        self._frames.put_nowait(frame)

    def _read(self, buffer: np.ndarray | None) -> np.ndarray | None:
        frame, lost = read_reconnecting(self.source, buffer, self.options, self.stats, self._halt, self.log)
        self._source_lost = self._source_lost or lost
        return frame

    # --- overlay thread --------------------------------------------------------------------

    def _draw(self) -> None:
        while True:
            item = self._inferred.get()
            if item is None:
                return
            frame, labels = item
            start = time.perf_counter()
            # headless with no output draws nothing: nobody would see it (the stats are all that is asked for)
            image = frame
            if len(self.sinks) == 1:  # a lone sink draws in the form it writes (a recording: YUV 4:2:0)
                image = self.sinks[0].draw(frame, labels, self.overlay)
            elif self.sinks:
                image = self.overlay.render(frame, labels, out=frame)
            drawn = time.perf_counter()
            for sink in self.sinks:
                sink.write(image)
            self.stats.stages["overlay"].add(drawn - start)
            self.stats.stages["write"].add(time.perf_counter() - drawn)
            self.stats.frame_done()
            self._free_frames.put(frame)
            if labels is not None:
                self._free_labels.put(labels)
            if any(sink.stop_requested for sink in self.sinks):
                self.stop.set()

    def _guard(self, work: Callable[[], None]) -> None:
        """Run a thread's work; an exception ends the stream and is re-raised by ``run``."""
        try:
            work()
        except BaseException as error:
            self._errors.append(error)
            self.stop.set()


def into_runner_memory(runner: Runner, frame: np.ndarray, old: np.ndarray | None) -> np.ndarray:
    """Copy ``frame`` into a new :meth:`Runner.frame_buffer` (TensorRT: page-locked, or mapped on Jetson); it joins
    the capture's pool and later frames are decoded straight into it, so the host copies nothing per frame on any
    backend. ``old``, the previous size's slot (from the free pool: nobody holds it), is given back."""
    if old is not None:
        runner.release_frame_buffer(old)
    slot = runner.frame_buffer(frame.shape)
    np.copyto(slot, frame)
    return slot


def read_reconnecting(
    source: Source, buffer: np.ndarray | None, options: StreamOptions, stats: StreamStats, halt: threading.Event,
    log: Callable[[str], None],
) -> tuple[np.ndarray | None, bool]:  # fmt: skip
    """(a frame from ``source``, False), reconnecting a live one with doubling backoff when it stops; (None, True) when
    reconnecting failed (the source is lost), (None, False) at the end of a file or when ``halt`` is set."""
    frame = source.read(buffer)
    if frame is not None or not source.live:
        return frame, False
    for attempt in range(options.reconnect):
        delay = options.reconnect_delay * 2**attempt
        log(
            f"{source.description} stopped delivering frames: reconnecting in {delay:g} s "
            f"(attempt {attempt + 1} of {options.reconnect})"
        )
        stats.reconnect_attempts += 1
        if halt.wait(delay):
            return None, False
        source.close()
        try:
            source.open()
        except Exception as error:  # FcnEdgeError from open, or a backend's own error
            log(f"reconnect failed: {error}")
            continue
        frame = source.read(buffer)
        if frame is not None:
            stats.reconnects += 1
            log(f"{source.description} reconnected")
            return frame, False
    log(f"{source.description} lost after {options.reconnect} reconnect attempts")
    return None, True
