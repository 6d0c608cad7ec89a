"""TensorRT's calibration cache text format, for TensorRT versions that calibrate implicitly.

TensorRT 8.x-10.x (JetPack 5 and 6) can build an INT8 engine from the FP32 ONNX plus a
calibration cache instead of a Q/DQ model. The cache is plain text::

    TRT-<version>-EntropyCalibration2
    <tensor name>: <8 hex digits>

one line per tensor, where the hex digits are the big-endian IEEE-754 float32 bits of the
tensor's scale, ``amax / 127``. TensorRT compares ``<version>`` with its own
(``major*1000 + minor*100 + patch`` before 10, ``major*10000 + minor*100 + patch`` from 10)
and recalibrates on a mismatch, so the build writes the version it targets.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Mapping

from ...atomic import write_text_atomic
from ...errors import FcnEdgeError

ALGORITHM = "EntropyCalibration2"
DEFAULT_TRT_VERSION = "10.3.0"  # JetPack 6.1/6.2


def version_number(version: str) -> int:
    """'8.6.1' -> 8601, '10.3.0' -> 100300, as TensorRT's NV_TENSORRT_VERSION spells it."""
    try:
        major, minor, patch = (int(part) for part in (version.split(".") + ["0", "0"])[:3])
    except ValueError:
        raise FcnEdgeError(f"TensorRT version {version!r} is not of the form MAJOR.MINOR.PATCH") from None
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def scale_to_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def format_cache(scales: Mapping[str, float], trt_version: str = DEFAULT_TRT_VERSION) -> str:
    """The cache text for per-tensor ``scales`` (amax / 127), in the order given."""
    lines = [f"TRT-{version_number(trt_version)}-{ALGORITHM}"]
    lines += [f"{name}: {scale_to_hex(float(scale))}" for name, scale in scales.items()]
    return "\n".join(lines) + "\n"


def write_cache(path: str | Path, amax: Mapping[str, float], trt_version: str = DEFAULT_TRT_VERSION) -> Path:
    """Write the cache for per-tensor absolute ranges ``amax`` atomically."""
    write_text_atomic(path, format_cache({name: value / 127.0 for name, value in amax.items()}, trt_version))
    return Path(path)


def parse_cache(text: str, source: str = "calibration cache") -> tuple[int, dict[str, float]]:
    """``(version number, {tensor name: scale})`` from cache text."""
    lines = text.splitlines()
    header = lines[0].split("-") if lines else []
    if len(header) != 3 or header[0] != "TRT" or not header[1].isdigit():
        raise FcnEdgeError(f"{source} does not start with 'TRT-<version>-<algorithm>': it is not a TensorRT calibration cache")
    scales = {}
    for number, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(": ")
        if not sep or len(value) != 8:
            raise FcnEdgeError(f"{source} line {number} is not '<tensor>: <8 hex digits>': {line[:60]!r}")
        try:
            scales[name] = hex_to_scale(value)
        except ValueError:
            raise FcnEdgeError(f"{source} line {number} has {value!r}, not 8 hex digits") from None
    return int(header[1]), scales
