"""Dense CRF post-processing for offline use (evaluate.py, a CPU stream): mean-field, Gaussian + bilateral kernels.

The fully connected CRF of Krähenbühl & Koltun (2011), as DeepLab v1/v2 paired it with an
FCN: a smoothness kernel (position only) and an appearance kernel (position and colour) pull
labels onto the image's colour edges. It iterates on the host over every pixel, so it is
not part of any graph: it costs a few hundred ms a frame on a CPU (docs/boundaries.md).
The implementation is pydensecrf2 (the maintained build of pydensecrf, which no longer
compiles with current Cython); it is optional and imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import FcnEdgeError


@dataclass(frozen=True)
class CrfParams:
    """DeepLab v2's published defaults for PASCAL VOC (pos 3/3, bilateral w 4, xy 67, rgb 3), 5 iterations."""

    iterations: int = 5
    gaussian_sxy: float = 3.0
    gaussian_weight: float = 3.0
    bilateral_sxy: float = 67.0
    bilateral_srgb: float = 3.0
    bilateral_weight: float = 4.0


def dense_crf(image_bgr: np.ndarray, scores: np.ndarray, params: CrfParams = CrfParams()) -> np.ndarray:
    """uint8 labels H x W from a uint8 H x W x 3 image and K x H x W logits (softmax is taken here)."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError:
        raise FcnEdgeError("the dense CRF needs pydensecrf2: pip install pydensecrf2 (or drop --crf)") from None
    k, h, w = scores.shape
    shifted = np.exp(scores - scores.max(0, keepdims=True))
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(shifted / shifted.sum(0, keepdims=True))))
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_weight)
    crf.addPairwiseBilateral(
        sxy=params.bilateral_sxy,
        srgb=params.bilateral_srgb,
        rgbim=np.ascontiguousarray(image_bgr[..., ::-1]),
        compat=params.bilateral_weight,
    )
    q = np.array(crf.inference(params.iterations)).reshape(k, h, w)
    return q.argmax(0).astype(np.uint8)
