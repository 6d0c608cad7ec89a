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
from torch.nn import functional as F

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
        """uint8 NHWC BGR frames -> normalised float32 NCHW; traceable into ONNX.

        Transpose first (on bytes, 4x cheaper than on floats), then one 1x1 convolution does
        the channel swap, scaling and normalisation: ONNX Runtime runs Conv on NCHW far faster
        than broadcast arithmetic over a trailing dimension of 3.
        """
        x = frames.permute(0, 3, 1, 2).to(torch.float32)
        weight, bias = self.affine()
        return F.conv2d(x, weight, bias)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(3x3x1x1 weight, bias) mapping BGR bytes to normalised ``channel_order`` values."""
        source = [2, 1, 0] if self.channel_order == "RGB" else [0, 1, 2]
        gain = torch.tensor([self.scale / s for s in self.std], dtype=torch.float32)
        weight = torch.zeros(3, 3, 1, 1)
        weight[range(3), source, 0, 0] = gain
        bias = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], dtype=torch.float32)
        return weight, bias

    def images_to_tensor(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """A list (or batch) of HxWx3 uint8 BGR arrays of one size -> float32 NCHW."""
        batch = np.ascontiguousarray(np.stack(list(images)) if not isinstance(images, np.ndarray) else images)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise FcnEdgeError(f"expected uint8 HxWx3 BGR images, got {batch.dtype} of shape {batch.shape}")
        return self.frames_to_tensor(torch.from_numpy(batch))
