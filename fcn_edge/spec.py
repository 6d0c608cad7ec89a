"""The one description of input preprocessing, free of torch.

Training, evaluation, calibration, export (inside the ONNX graph) and the runtime all
build their preprocessing from this description (the torch form is
``fcn_edge.models.preprocess``) or read it back from checkpoint or ONNX metadata. A
calibration set preprocessed differently from the runtime is the most common silent INT8
accuracy loss, so there is no second definition. Runners and the compile stage import
this module on boxes that have no torch.

Frames arrive as OpenCV gives them: uint8, HxWx3, BGR. The network sees float32 NCHW
in ``channel_order``, scaled to [0, 1] and normalised with ``mean``/``std``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from .errors import FcnEdgeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    scale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise FcnEdgeError(f"channel order {self.channel_order!r} is not supported: use RGB or BGR")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise FcnEdgeError(f"mean {self.mean} and std {self.std} need three values each")
        if any(s <= 0 for s in self.std):
            raise FcnEdgeError(f"std {self.std} must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "input": "uint8 NHWC BGR", "layout": "NCHW"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocess":
        return cls(
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            channel_order=str(data.get("channel_order", "RGB")),
            scale=float(data.get("scale", 1.0 / 255.0)),
        )

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(3x3x1x1 weight, bias) mapping BGR bytes to normalised ``channel_order`` values."""
        source = [2, 1, 0] if self.channel_order == "RGB" else [0, 1, 2]
        weight = np.zeros((3, 3, 1, 1), dtype=np.float32)
        weight[range(3), source, 0, 0] = [self.scale / s for s in self.std]
        bias = np.array([-m / s for m, s in zip(self.mean, self.std)], dtype=np.float32)
        return weight, bias

    def frames_to_array(self, frames: np.ndarray) -> np.ndarray:
        """uint8 NHWC BGR frames -> float32 NCHW, the numpy twin of the graph's preprocessing.

        For models that take a normalised tensor: the compile stage feeds them on boxes
        without torch. Same ``affine()``, so the two cannot drift apart.
        """
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise FcnEdgeError(f"expected uint8 NxHxWx3 BGR frames, got {frames.dtype} of shape {frames.shape}")
        weight, bias = self.affine()
        x = frames.transpose(0, 3, 1, 2).astype(np.float32)
        return np.einsum("oc,nchw->nohw", weight[:, :, 0, 0], x, optimize=True) + bias[None, :, None, None]
