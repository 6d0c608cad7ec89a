"""CUDA behind one interface (:class:`CudaBinding`) with two interchangeable bindings.

Bindings are imported only when opened: a CPU-only install never imports CUDA.
"""

from __future__ import annotations

from ...errors import FcnEdgeError
from .binding import BINDINGS, NO_GPU_HINT, CudaBinding, CudaError, DeviceInfo, HostBuffer

__all__ = ["BINDINGS", "NO_GPU_HINT", "CudaBinding", "CudaError", "DeviceInfo", "HostBuffer", "find_gpu", "open_cuda"]


def open_cuda(binding: str = "auto", device: int = 0) -> CudaBinding:
    """The named binding on ``device``; "auto" takes cuda-python if installed, else PyCUDA."""
    if binding not in BINDINGS:
        raise FcnEdgeError(f"unknown CUDA binding {binding!r}: choose one of {', '.join(BINDINGS)}")
    if binding == "auto":
        binding = _installed_binding()
    if binding == "cuda-python":
        from .cuda_python import CudaPython

        return CudaPython(device)
    from .pycuda import PyCuda

    return PyCuda(device)


def _installed_binding() -> str:
    """cuda-python when it imports, else PyCUDA when installed."""
    import importlib.util

    from .cuda_python import import_cuda_python

    try:
        import_cuda_python()
        return "cuda-python"
    except FcnEdgeError:
        if importlib.util.find_spec("pycuda") is not None:
            return "pycuda"
    raise FcnEdgeError(
        "no CUDA Python binding is installed: pip install cuda-python "
        "(or pip install -e '.[gpu-cu12]'; '.[gpu-cu13]' on a CUDA 13 driver, >= 580)"
    )


def find_gpu() -> tuple[DeviceInfo | None, str | None]:
    """The first visible GPU, or None and why not. Quick: no context is created where cuda-python is installed."""
    from .cuda_python import find_gpu_driver, import_cuda_python

    try:
        driver, _ = import_cuda_python()
    except FcnEdgeError:
        return _find_gpu_torch()
    return find_gpu_driver(driver)


def _find_gpu_torch() -> tuple[DeviceInfo | None, str | None]:
    """Fallback when cuda-python is absent: a CUDA build of torch also knows the GPU."""
    try:
        import torch
    except ImportError:
        return None, "no CUDA GPU visible (neither cuda-python nor torch is installed: pip install cuda-python)"
    if not torch.cuda.is_available():
        return None, f"no CUDA GPU visible (torch {torch.__version__}: torch.cuda.is_available() is False)"
    props = torch.cuda.get_device_properties(0)
    identity = (props.multi_processor_count, props.total_memory >> 20)
    return DeviceInfo(0, props.name, f"{props.major}.{props.minor}", bool(props.is_integrated), *identity), None
