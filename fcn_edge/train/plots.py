"""Pictures of a run a person can look at: loss and mIoU per epoch, and predictions beside ground truth.

``results.png`` is drawn with matplotlib (the train extra has it); the prediction sheet with
OpenCV alone, so its colours are exactly the classes' palette. Both written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from ..atomic import atomic_path, write_bytes_atomic
from ..models.preprocess import images_to_tensor
from ..spec import Preprocess

IGNORE_COLOUR = (255, 255, 255)  # RGB of the ignore label (255) in the sheet
SHEET_ROWS = 4
SHEET_HEIGHT = 160  # px per row


def plot_history(history: Sequence[dict[str, Any]], path: Path, score_name: str = "val") -> Path:
    """Training loss and ``score_name`` mIoU per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [int(h["epoch"]) + 1 for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set(title="training loss", xlabel="epoch")
    right.plot(epochs, [h["miou"] for h in history], marker="o", color="tab:green")
    right.set(title=f"{score_name} mIoU", xlabel="epoch", ylim=(0, 1))
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


@torch.no_grad()
def prediction_sheet(model: torch.nn.Module, dataset, preprocess: Preprocess, palette: Sequence[Sequence[int]], path: Path,
                     rows: int = SHEET_ROWS) -> Path:  # fmt: skip
    """Image | ground truth | prediction for ``rows`` evenly spaced samples of ``dataset``, one PNG."""
    model.eval()
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)[:, ::-1]  # RGB -> BGR
    lut[255] = IGNORE_COLOUR[::-1]
    picks = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, min(rows, len(dataset))).round()})
    lines = []
    for index in picks:
        image, mask = dataset[index]
        labels = model(images_to_tensor(preprocess, image))[0].argmax(0).numpy().astype(np.uint8)
        tiles = [image, lut[mask], lut[labels]]
        scale = SHEET_HEIGHT / image.shape[0]
        size = (max(1, round(image.shape[1] * scale)), SHEET_HEIGHT)
        tiles = [cv2.resize(t, size, interpolation=cv2.INTER_AREA if i == 0 else cv2.INTER_NEAREST) for i, t in enumerate(tiles)]
        lines.append(np.hstack(tiles))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 2), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    header = np.full((24, width, 3), 255, np.uint8)
    third = lines[0].shape[1] // 3
    for column, title in enumerate(("image", "ground truth", "prediction")):
        cv2.putText(header, title, (column * third + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", np.vstack([header, *lines]))
    write_bytes_atomic(path, png.tobytes())
    return path
