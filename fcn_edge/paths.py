"""Project-wide file facts with no heavy imports.

The build's up-to-date check must answer in well under a second, so what it needs (the
default checkpoint's place, the image types, the file digest) lives here, away from the
modules that import torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "default.pt"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
