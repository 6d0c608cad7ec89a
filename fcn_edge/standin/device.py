"""The stand-in GPU: host memory playing device memory, and streams that do their work when synchronized.

Memory is numpy memory at page-aligned addresses, as cudaMalloc and cudaHostAlloc return;
every access names the address and the bytes it touches, and anything that is not a live
allocation of the right kind is an error (CUDA: cudaErrorIllegalAddress /
cudaErrorInvalidValue), so a buffer used after it was freed or reallocated fails here as
it can on a GPU. Work queued on a stream (copies, engine runs) runs on synchronize, in
order, as on a GPU, so a host that reads results before synchronizing reads stale bytes.

Which GPU it plays is :data:`DEVICE_ENV` (default ``desktop``); the Jetson-like devices
are integrated (mapped host memory is device memory) and the AGX one has two DLA cores.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

DEVICE_ENV = "FCN_EDGE_STANDIN_DEVICE"
PAGE = 4096


@dataclass(frozen=True)
class Device:
    name: str
    compute_capability: tuple[int, int]
    sm_count: int
    memory_bytes: int
    integrated: bool
    dla_cores: int


DEVICES = {
    "desktop": Device("NVIDIA H100 80GB HBM3 (stand-in)", (9, 0), 132, 80 * 2**30, False, 0),
    "orin-agx": Device("Orin (stand-in)", (8, 7), 16, 64 * 2**30, True, 2),  # Jetson AGX Orin 64GB: 2 DLA cores
    "orin-nano": Device("Orin (stand-in)", (8, 7), 8, 8 * 2**30, True, 0),  # Orin Nano 8GB: same name and compute, no DLA
}


def current() -> Device:
    """The device :data:`DEVICE_ENV` names."""
    name = os.environ.get(DEVICE_ENV, "desktop")
    if name not in DEVICES:
        raise ValueError(f"{DEVICE_ENV}={name!r} is not one of {', '.join(DEVICES)}")
    return DEVICES[name]


class DeviceFault(Exception):
    """What a GPU reports as an error code; each binding turns it into its own error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Memory:
    """Every live allocation: address -> (bytes, kind), kind "device", "pinned" or "mapped"."""

    def __init__(self) -> None:
        self.blocks: dict[int, tuple[np.ndarray, str]] = {}
        self._lock = threading.Lock()

    def allocate(self, nbytes: int, kind: str) -> int:
        if nbytes <= 0:
            raise DeviceFault("cudaErrorInvalidValue", f"an allocation of {nbytes} bytes")
        if kind == "device" and nbytes + self.device_bytes() > current().memory_bytes:
            raise DeviceFault("cudaErrorMemoryAllocation", f"{nbytes} bytes do not fit in the device's memory")
        raw = np.zeros(nbytes + PAGE, np.uint8)
        start = (-raw.ctypes.data) % PAGE
        block = raw[start : start + nbytes]
        with self._lock:
            self.blocks[int(block.ctypes.data)] = (block, kind)
        return int(block.ctypes.data)

    def device_bytes(self) -> int:
        return sum(block.nbytes for block, kind in list(self.blocks.values()) if kind == "device")

    def release(self, address: int, kinds: tuple[str, ...]) -> None:
        with self._lock:
            found = self.blocks.get(int(address))
            if found is None or found[1] not in kinds:
                raise DeviceFault("cudaErrorInvalidValue", f"{address:#x} is not a live {' or '.join(kinds)} allocation")
            del self.blocks[int(address)]

    def array(self, address: int) -> np.ndarray:
        """The whole block that starts at ``address`` (host buffers are handed out this way)."""
        return self.blocks[int(address)][0]

    def view(self, address: int, nbytes: int, kinds: tuple[str, ...]) -> np.ndarray:
        """``nbytes`` at ``address`` inside one live allocation of one of ``kinds``."""
        address = int(address)
        with self._lock:
            for start, (block, kind) in self.blocks.items():
                if start <= address < start + block.nbytes:
                    if address + nbytes > start + block.nbytes:
                        raise DeviceFault("cudaErrorIllegalAddress", f"{nbytes} bytes at {address:#x} run past its allocation")
                    if kind not in kinds:
                        raise DeviceFault("cudaErrorInvalidValue", f"{address:#x} is {kind} memory, not {' or '.join(kinds)}")
                    return block[address - start : address - start + nbytes]
        raise DeviceFault("cudaErrorIllegalAddress", f"{nbytes} bytes at {address:#x} are not a live allocation")


DEVICE_SIDE = ("device", "mapped")  # what kernels and device-side copies may touch
HOST_SIDE = ("pinned", "mapped")


class Stream:
    """Queued work, run in order on synchronize; an error is reported by that synchronize."""

    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.queue: list[Callable[[], None]] = []

    def enqueue(self, work: Callable[[], None]) -> None:
        self.queue.append(work)

    def synchronize(self) -> None:
        work, self.queue = self.queue, []
        for item in work:
            item()


class Gpu:
    """The process's one stand-in GPU: its memory, streams and event clock."""

    def __init__(self) -> None:
        self.memory = Memory()
        self.streams: dict[int, Stream] = {}
        self._handles = itertools.count(0x5000)

    @property
    def device(self) -> Device:
        return current()

    def new_stream(self) -> Stream:
        stream = Stream(next(self._handles))
        self.streams[stream.handle] = stream
        return stream

    def stream(self, handle: int) -> Stream:
        stream = self.streams.get(int(handle))
        if stream is None:
            raise DeviceFault("cudaErrorInvalidResourceHandle", f"stream {int(handle):#x} was destroyed or never created")
        return stream

    def destroy_stream(self, handle: int) -> None:
        self.stream(handle).synchronize()
        del self.streams[int(handle)]

    def copy(self, dst: int, dst_kinds: tuple[str, ...], src: int, src_kinds: tuple[str, ...], nbytes: int, handle: int) -> None:
        """Check both ends now (as cudaMemcpyAsync does) and copy when the stream runs."""
        self.memory.view(dst, nbytes, dst_kinds)
        self.memory.view(src, nbytes, src_kinds)

        def run() -> None:
            self.memory.view(dst, nbytes, dst_kinds)[:] = self.memory.view(src, nbytes, src_kinds)

        self.stream(handle).enqueue(run)

    @staticmethod
    def now_ms() -> float:
        return time.perf_counter() * 1000.0


GPU = Gpu()
