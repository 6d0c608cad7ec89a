"""The instruction set a CPU artifact's figures hold on: recorded where it is verified, checked where it runs.

ONNX Runtime's and OpenVINO's x86 INT8 kernels take another path with VNNI (VPDPBUSD: int32
sums) than without (VPMADDUBSW: saturating int16 pair sums), so an INT8 artifact verified on one
can label differently on the other (docs/foreign.md); BF16 needs AVX512_BF16 or AMX. The build
records the widest of :data:`LEVELS` the CPU has, the stream says one line where it runs on
another. Torch-free: the flags come from /proc/cpuinfo (Linux); elsewhere the level is unknown.
"""

from __future__ import annotations

import platform

# (level, /proc/cpuinfo flag), widest first: x86 INT8 paths, then Arm's (dot product, plain NEON)
LEVELS = (
    ("amx_int8", "amx_int8"), ("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni"), ("avx512", "avx512bw"),
    ("avx2", "avx2"), ("sse4_1", "sse4_1"), ("neon_dotprod", "asimddp"), ("neon", "asimd"),
)  # fmt: skip
UNKNOWN = "unknown"


def cpu_info() -> tuple[str, list[str]]:
    """(model name, feature flags) from /proc/cpuinfo (x86 ``flags``, Arm ``Features``); the platform's name and no flags without it."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model, flags


def instruction_set(flags: set[str] | None = None) -> str:
    """The widest of :data:`LEVELS` in ``flags`` (default: this CPU's), else ``unknown``."""
    flags = set(cpu_info()[1]) if flags is None else flags
    return next((level for level, flag in LEVELS if flag in flags), UNKNOWN)


def mismatch(verified_on: object, here: str | None = None) -> str | None:
    """The stream's one line when the artifact was verified on another instruction set than this CPU's; None when the same or unknown."""
    here = instruction_set() if here is None else here
    if not isinstance(verified_on, str) or UNKNOWN in (verified_on, here) or verified_on == here:
        return None
    return (f"verified on a CPU with {verified_on}, running on one with {here}: its INT8/BF16 kernels differ, so labels may "
            f"differ from the build's figures (rebuild it here with --force to re-verify)")  # fmt: skip
