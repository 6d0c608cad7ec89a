"""The one definition of input preprocessing.

Training, evaluation, calibration, export (inside the ONNX graph) and the runtime all
call :meth:`Preprocess.frames_to_tensor` or read a ``Preprocess`` back from checkpoint
or ONNX metadata. A calibration set preprocessed differently from the runtime is the
most common silent INT8 accuracy loss, so there is no second implementation.

Frames arrive as OpenCV gives them: uint8, HxWx3, BGR. The network sees float32 NCHW
in ``channel_order``, scaled to [0, 1] and normalised with ``mean``/``std``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

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

    def frames_to_tensor(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC BGR frames -> normalised float32 NCHW; traceable into ONNX."""
        x = frames.to(torch.float32)
        if self.channel_order == "RGB":
            x = x.flip(-1)
        mean = torch.tensor(self.mean, dtype=torch.float32) / self.scale
        inv_std = self.scale / torch.tensor(self.std, dtype=torch.float32)
        x = (x - mean) * inv_std
        return x.permute(0, 3, 1, 2)

    def images_to_tensor(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """A list (or batch) of HxWx3 uint8 BGR arrays of one size -> float32 NCHW."""
        batch = np.ascontiguousarray(np.stack(list(images)) if not isinstance(images, np.ndarray) else images)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise FcnEdgeError(f"expected uint8 HxWx3 BGR images, got {batch.dtype} of shape {batch.shape}")
        return self.frames_to_tensor(torch.from_numpy(batch))
