"""A frame through each kind of memory the TensorRT runner uses, byte for byte: the doctor's CUDA path.

Page-locked memory with async copies (desktop GPUs) and mapped memory the GPU reads and
writes in place (Jetson's zero-copy path; on a desktop GPU it works the same, over PCIe).
Any CUDA failure surfaces as :class:`CudaError` naming the call; a wrong byte as a
mismatch here. Everything allocated is freed before the binding is closed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import open_cuda

SHAPE = (480, 640, 3)


def round_trips(binding: str) -> dict[str, Any]:
    """Copy a random frame host -> device -> host (pinned) and through mapped memory; what was measured."""
    cuda = open_cuda(binding)
    frame = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    nbytes = frame.nbytes
    owned: list[Any] = []
    stream = start = end = device = None
    try:
        source, target = cuda.pinned(nbytes), cuda.pinned(nbytes)
        mapped_in, mapped_out = cuda.mapped(nbytes), cuda.mapped(nbytes)
        owned += [source, target, mapped_in, mapped_out]
        device, stream, start, end = cuda.malloc(nbytes), cuda.stream(), cuda.event(), cuda.event()
        source.view(np.uint8, SHAPE)[:] = frame
        cuda.record(start, stream)
        cuda.copy_htod(device, source, nbytes, stream)
        cuda.copy_dtoh(target, device, nbytes, stream)
        cuda.record(end, stream)
        pinned_ms = cuda.elapsed_ms(start, end)
        mapped_in.view(np.uint8, SHAPE)[:] = frame
        cuda.copy_dtod(device, mapped_in.device_ptr, nbytes, stream)  # the GPU reads host memory in place
        cuda.copy_dtod(mapped_out.device_ptr, device, nbytes, stream)  # and writes host memory in place
        cuda.synchronize(stream)
        pinned_ok = bool(np.array_equal(target.view(np.uint8, SHAPE), frame))
        mapped_ok = bool(np.array_equal(mapped_out.view(np.uint8, SHAPE), frame))
        return {
            "device": cuda.device.name, "integrated": cuda.device.integrated, "pinned_exact": pinned_ok,
            "mapped_exact": mapped_ok, "pinned_round_trip_gb_s": round(2 * nbytes / max(pinned_ms, 1e-6) / 1e6, 2),
            "ok": pinned_ok and mapped_ok,
        }  # fmt: skip
    finally:
        for event in (start, end):
            if event is not None:
                cuda.destroy_event(event)
        if stream is not None:
            cuda.destroy_stream(stream)
        if device is not None:
            cuda.free(device)
        for buffer in owned:
            buffer.free()
        cuda.close()
