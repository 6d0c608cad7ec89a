"""What the stream benchmarks (benchmarks/stream_overhead.py, stream_serve.py, recording_cost.py) share:
the model they run by default, a stand-in when it is not built, a recording to read, and a model's description."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..paths import DEFAULT_MODEL
from ..sidecar import Sidecar
from . import sources
from .sinks import VideoFileSink

__all__ = ["DEFAULT_MODEL", "describe", "stand_in_model", "write_video"]


def stand_in_model(path: Path) -> str:
    """The default architecture (edge_resnet FCN-8s, 8 classes) with random weights, exported FP32."""
    import torch

    from fcn_edge.data.synthetic import CLASSES, PALETTE
    from fcn_edge.export import export_model
    from fcn_edge.metadata import ModelMetadata
    from fcn_edge.models import ModelConfig, build_model
    from fcn_edge.spec import Preprocess

    torch.manual_seed(0)
    config = ModelConfig(num_classes=len(CLASSES))
    meta = ModelMetadata(CLASSES, PALETTE, Preprocess(), "frame", ["labels"], 32, "0" * 64, config.to_dict())
    export_model(build_model(config), meta, path, verify_sizes=((1, 64, 96),))
    return "FP32 stand-in: default architecture (edge_resnet FCN-8s, 8 classes), random weights"


def describe(model: Path) -> str:
    """The path, plus the precision and source its build sidecar records, if it has one."""
    sidecar = Sidecar.beside(model).content
    if not sidecar:
        return str(model)
    origin = sidecar.get("model", {}).get("onnx") or sidecar.get("model", {}).get("checkpoint") or "?"
    return f"{model.name} ({sidecar.get('precision', '?')}, built from {Path(origin).name})"


def write_video(path: Path, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """An mp4 of synthetic frames, as the stream records them (MPEG-4); returns the frames as decoded back (what the
    loop will see)."""
    source = sources.SyntheticSource(size, fps=0)
    source.open()
    recording = VideoFileSink(path, 30)
    for _ in range(frames):
        recording.write(source.read(None))
    recording.close()
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while (frame := capture.read()[1]) is not None:
        decoded.append(frame)
    return decoded
