"""Checkpoints: weights plus everything a later stage needs (config, classes, palette, preprocessing).

Saved atomically and loaded with ``weights_only=True``: a checkpoint is data, never code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .errors import FcnEdgeError
from .metadata import classes_problem
from .models import FCN, ModelConfig, build_model
from .models.weights import load_state_strict
from .paths import file_sha256
from .spec import Preprocess

FORMAT = "fcn_edge.checkpoint/1"
REQUIRED_KEYS = ("config", "state_dict", "classes", "palette", "preprocess")  # "training" is optional


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    classes: list[str]
    palette: list[tuple[int, int, int]]
    preprocess: Preprocess
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def build(self) -> FCN:
        """The model in eval mode with these weights."""
        model = build_model(self.config)
        load_state_strict(model, self.state_dict, f"checkpoint {self.path or ''}".strip())
        return model.eval()

    def sha256(self) -> str:
        if self.path is None:
            raise ValueError("checkpoint has no file")
        return file_sha256(self.path)


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    config: ModelConfig,
    classes: list[str],
    palette: list[tuple[int, int, int]],
    preprocess: Preprocess,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write atomically: a crash mid-save leaves the previous file, never half of a new one."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "config": config.to_dict(),
        "state_dict": state,
        "classes": list(classes),
        "palette": [list(map(int, c)) for c in palette],
        "preprocess": preprocess.to_dict(),
        "training": training or {},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FcnEdgeError(f"checkpoint {path} does not exist: train one with fcn-edge train or pass --checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for files that are not checkpoints
        raise FcnEdgeError(f"{path} is not an fcn_edge checkpoint (torch.load failed: {type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FcnEdgeError(f"{path} is not an fcn_edge checkpoint (no '{FORMAT}' format tag): pass one written by fcn-edge train")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise FcnEdgeError(
            f"checkpoint {path} has no {', '.join(map(repr, missing))} (incomplete): write it again with fcn-edge train"
        )
    problem = classes_problem(payload["classes"], payload["palette"])  # a palette value of 300 fails here, not in export
    state = payload["state_dict"]
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        problem = problem or "state_dict must map names to tensors"
    if not all(isinstance(payload.get(key, {}), dict) for key in ("config", "preprocess", "training")):
        problem = problem or "config, preprocess and training must be dicts"
    if problem:
        raise FcnEdgeError(f"checkpoint {path} is damaged ({problem}): write it again with fcn-edge train")
    # float32 whatever was stored: the shipped default keeps float16 weights to halve its size
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        config, preprocess = ModelConfig.from_dict(payload["config"]), Preprocess.from_dict(payload["preprocess"])
    except (TypeError, ValueError, KeyError) as error:
        raise FcnEdgeError(
            f"checkpoint {path} has an unreadable config or preprocess ({error}): write it again with fcn-edge train"
        ) from None
    return Checkpoint(
        config=config,
        state_dict=state,
        classes=list(payload["classes"]),
        palette=[tuple(c) for c in payload["palette"]],
        preprocess=preprocess,
        training=dict(payload.get("training", {})),
        path=path,
    )
