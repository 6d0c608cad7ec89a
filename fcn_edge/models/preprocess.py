"""The torch form of :class:`fcn_edge.spec.Preprocess`, traced into every exported graph."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import FcnEdgeError
from ..spec import Preprocess


def frames_to_tensor(preprocess: Preprocess, frames: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC BGR frames -> normalised float32 NCHW; traceable into ONNX.

    Cast to float first, then transpose: TensorRT's ONNX parser takes UINT8 only as a network
    input or output, so the first op on the frame must be the Cast (DESIGN.md, principle 8).
    Then one 1x1 convolution does the channel swap, scaling and normalisation: ONNX Runtime
    runs Conv on NCHW far faster than broadcast arithmetic over a trailing dimension of 3.
    """
    x = frames.to(torch.float32).permute(0, 3, 1, 2)
    weight, bias = preprocess.affine()
    return F.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias))


def images_to_tensor(preprocess: Preprocess, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """A list (or batch) of HxWx3 uint8 BGR arrays of one size -> float32 NCHW."""
    batch = np.ascontiguousarray(np.stack(list(images)) if not isinstance(images, np.ndarray) else images)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise FcnEdgeError(f"expected uint8 HxWx3 BGR images, got {batch.dtype} of shape {batch.shape}")
    return frames_to_tensor(preprocess, torch.from_numpy(batch))
