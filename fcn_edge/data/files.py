"""Reading dataset files and checking them, so every dataset fails the same helpful way.

A wrong path, a corrupt file or a mask with labels the dataset does not know are user
mistakes: they raise :class:`FcnEdgeError` naming the file and what to do, at the moment
the sample is loaded (a training run should not die with an IndexError deep in the loss).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import FcnEdgeError

IGNORE_INDEX = 255


def require_dir(path: Path, what: str) -> Path:
    """``path`` must be a folder; ``what`` describes the expected layout for the message."""
    if not path.is_dir():
        raise FcnEdgeError(f"folder {path} not found: expected {what}")
    return path


def _decode(path: Path, flags: int) -> np.ndarray:
    # np.fromfile + imdecode instead of cv2.imread: works for non-ASCII paths and lets an
    # empty or missing file be told apart from a corrupt one.
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError as error:
        raise FcnEdgeError(f"cannot read {path}: {error.strerror or error}") from None
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise FcnEdgeError(f"cannot decode {path}: the file is empty, corrupt or not an image; replace or remove it")
    return image


def read_image(path: Path) -> np.ndarray:
    """An HxWx3 uint8 BGR image (grayscale and alpha images are converted)."""
    image = _decode(path, cv2.IMREAD_COLOR)
    if image.dtype != np.uint8:
        raise FcnEdgeError(f"{path} has {image.dtype} pixels: convert it to 8-bit")
    return image


def read_label_png(path: Path) -> np.ndarray:
    """A mask file as stored: HxW single channel, or HxWx3 BGR for colour/palette PNGs."""
    mask = _decode(path, cv2.IMREAD_UNCHANGED)
    if mask.dtype != np.uint8:
        raise FcnEdgeError(f"mask {path} has {mask.dtype} pixels: masks must be 8-bit class ids")
    if mask.ndim == 3 and mask.shape[2] == 4:
        mask = mask[..., :3]
    return mask


def read_index_mask(path: Path) -> np.ndarray:
    """A single-channel class-id mask; a 3-channel file whose channels agree is accepted."""
    mask = read_label_png(path)
    if mask.ndim == 3:
        if not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2])):
            raise FcnEdgeError(
                f"mask {path} is a colour image: save masks as single-channel PNGs of class ids (0..N-1, 255 = ignore)"
            )
        mask = mask[..., 0]
    return np.ascontiguousarray(mask)


def check_mask(mask: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """Raise if ``mask`` holds ids other than 0..num_classes-1 and 255; returns it."""
    allowed = np.zeros(256, bool)
    allowed[:num_classes] = True
    allowed[IGNORE_INDEX] = True
    bad = ~allowed[mask]
    if bad.any():
        values = ", ".join(str(v) for v in np.unique(mask[bad])[:20])
        raise FcnEdgeError(
            f"mask {path} has label values {values} outside the {num_classes} classes "
            f"(allowed 0..{num_classes - 1} and {IGNORE_INDEX} = ignore): fix the mask or the class list"
        )
    return mask


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise FcnEdgeError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its mask {mask_path} is "
            f"{mask.shape[1]}x{mask.shape[0]}: they must be the same size"
        )
