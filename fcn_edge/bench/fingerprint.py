"""Which machine a figure was measured on.

Latency is only comparable within one machine class, so every result and baseline carries
this fingerprint, and a baseline from another class is refused rather than compared.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from ..cpu_features import cpu_info

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni", "asimd", "asimddp")
LIBRARIES = ("torch", "onnxruntime", "onnx", "numpy", "opencv-python-headless", "tensorrt", "cuda-python")


def cpu_flags() -> set[str]:
    """Every feature flag of the CPU as /proc/cpuinfo names them (x86 ``flags``, Arm ``Features``); empty without it."""
    return set(cpu_info()[1])


def _gpu() -> dict[str, str] | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    name, _, driver = out.stdout.strip().splitlines()[0].partition(",")
    return {"name": name.strip(), "driver": driver.strip()}


def _versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def fingerprint() -> dict:
    model, every_flag = cpu_info()
    flags = sorted(f for f in every_flag if f in ISA_FLAGS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    gpu = _gpu()
    return {
        "machine_class": machine_class(platform.machine(), cores, flags, gpu),
        "cpu": model,
        "arch": platform.machine(),
        "cores": cores,
        "isa": flags,
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": _versions(),
    }


def machine_class(arch: str, cores: int, isa: list[str], gpu: dict | None) -> str:
    """Coarse identity: same class = latencies comparable after in-run normalisation."""
    vector = next(
        (f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "avx512f", "avx2", "asimddp", "asimd") if f in isa), "scalar"
    )
    device = gpu["name"].replace(" ", "-") if gpu else "cpu"
    return f"{arch}-{cores}c-{vector}-{device}"
