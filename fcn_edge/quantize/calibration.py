"""The calibration set: a folder of the user's own images, read as the camera would deliver them.

Any .jpg/.jpeg/.png/.bmp in the folder (not its subfolders) counts, in sorted name order.
Every ``HOLDOUT_EVERY``-th file (the 5th, 10th, ...) is held out: never used to choose
scales, only to check the built artifact. Images are resized to one calibration size and
kept as raw uint8 BGR frames; the model's own preprocessing (inside a frame-input graph, or
:class:`fcn_edge.preprocess.Preprocess` for a tensor-input one) turns them into inputs, so
calibration sees exactly what the runtime feeds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import FcnEdgeError
from ..media import IMAGE_SUFFIXES, image_files
from ..paths import CALIBRATION_DIR

# fcn_edge.data.folder's list (a test keeps them equal); importing fcn_edge.data loads torch,
# which would cost the up-to-date check seconds.
HOLDOUT_EVERY = 5
CALIBRATION_SEED = 2_000_000  # default set's scenes: disjoint from training (0..) and held-out (1_000_000..) seeds
DEFAULT_SIZE = (256, 512)  # (H, W) the calibration frames are resized to
DEFAULT_DIR = CALIBRATION_DIR


@dataclass(frozen=True)
class CalibrationSet:
    folder: Path
    calibrate: list[Path]
    holdout: list[Path]

    @property
    def files(self) -> list[Path]:
        return sorted(self.calibrate + self.holdout)

    def sha256(self) -> str:
        """Hash of the sorted file names and their bytes: the sidecar's record of what was used."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.name.encode("utf-8") + b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()


def find_calibration_set(folder: str | Path) -> CalibrationSet:
    """The images in ``folder``, split into calibration and hold-out; errors for a missing or empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FcnEdgeError(f"calibration folder {folder} does not exist: pass --calib-dir with a folder of .jpg/.png images")
    files = image_files(folder, "--calib-dir")
    if len(files) < 2:
        raise FcnEdgeError(
            f"calibration folder {folder} has {len(files)} images ({', '.join(IMAGE_SUFFIXES)}): "
            "add at least 2 (a few dozen camera frames is typical), see calibration/README.md"
        )
    holdout = [p for i, p in enumerate(files) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    return CalibrationSet(folder, [p for p in files if p not in holdout], holdout)


def load_frames(
    paths: list[Path], size: tuple[int, int] = DEFAULT_SIZE, desc: str = "load images", progress: bool = True
) -> list[np.ndarray]:
    """uint8 HxWx3 BGR frames resized to ``size`` (H, W); an unreadable file raises naming it."""
    from ..data.files import read_image  # the project's one image reader

    height, width = size
    frames = []
    for path in tqdm(paths, desc=desc, leave=False, disable=not progress):
        image = read_image(path)
        if image.shape[:2] != (height, width):
            shrinking = image.shape[0] > height or image.shape[1] > width
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        frames.append(image)
    return frames
