"""Project-wide file facts with no heavy imports.

The build's up-to-date check must answer in well under a second, so what it needs (the
default places, the image types, the file digest) lives here, away from the modules that
import torch.

The default folders are relative to the working folder, in every entry point, like
``runs/``: an installed package has no repository folder to anchor them to, and a user
expects ``engines/`` to mean the one they are looking at. Run the commands from the
project folder, or pass the flag (--checkpoint, --calib-dir, --engines-dir, --model).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DEFAULT_CHECKPOINT = Path("checkpoints") / "default.pt"
CALIBRATION_DIR = Path("calibration")
ENGINES_DIR = Path("engines")
DEFAULT_MODEL = ENGINES_DIR / "default.int8.onnx"  # what the stream runs: fcn-edge build --int8 writes it
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
