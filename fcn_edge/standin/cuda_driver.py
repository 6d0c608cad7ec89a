"""Stand-in for cuda-python's ``cuda.bindings.driver``: the device queries fcn_edge makes before it opens a context."""

from __future__ import annotations

import enum

from .device import GPU


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_NOT_INITIALIZED = 3
    CUDA_ERROR_INVALID_DEVICE = 101


class CUdevice_attribute(enum.IntEnum):  # noqa: N801 - cuda-python's names
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
    CU_DEVICE_ATTRIBUTE_INTEGRATED = 18
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


_initialized = False


def cuInit(flags: int) -> tuple:  # noqa: N802
    global _initialized
    _initialized = True
    return (CUresult.CUDA_SUCCESS,)


def _ready(device: int = 0) -> CUresult:
    if not _initialized:
        return CUresult.CUDA_ERROR_NOT_INITIALIZED
    return CUresult.CUDA_SUCCESS if device == 0 else CUresult.CUDA_ERROR_INVALID_DEVICE


def cuDeviceGetCount() -> tuple:  # noqa: N802
    return _ready(), 1 if _initialized else 0


def cuDeviceGet(ordinal: int) -> tuple:  # noqa: N802
    return _ready(ordinal), ordinal


def cuDeviceGetName(length: int, device: int) -> tuple:  # noqa: N802
    return _ready(device), GPU.device.name.encode()[: length - 1].ljust(length, b"\0")


def cuDeviceTotalMem(device: int) -> tuple:  # noqa: N802
    return _ready(device), GPU.device.memory_bytes


def cuDeviceGetAttribute(attribute: CUdevice_attribute, device: int) -> tuple:  # noqa: N802
    gpu = GPU.device
    values = {
        CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: gpu.compute_capability[0],
        CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: gpu.compute_capability[1],
        CUdevice_attribute.CU_DEVICE_ATTRIBUTE_INTEGRATED: int(gpu.integrated),
        CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: gpu.sm_count,
    }
    return _ready(device), values[attribute]
