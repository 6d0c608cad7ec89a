"""Loading weights by key, with errors that name the keys that do not fit."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import FcnEdgeError


def describe_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], limit: int = 6) -> str:
    """'' when ``state`` fits ``model`` exactly, else a one-line list of the keys at fault."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped)):
        if keys:
            shown = ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")
            parts.append(f"{len(keys)} {label}: {shown}")
    return "; ".join(parts)


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    mismatch = describe_mismatch(model, state)
    if mismatch:
        raise FcnEdgeError(f"{source} does not fit this architecture ({mismatch})")
    model.load_state_dict(state)


def load_pretrained_backbone(backbone: nn.Module, path: str | Path) -> None:
    """Load a torchvision-layout ImageNet checkpoint file (``fc.*`` dropped) into a backbone."""
    path = Path(path)
    if not path.is_file():
        raise FcnEdgeError(f"pretrained backbone file {path} does not exist: pass a local .pth state dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for non-checkpoint files
        raise FcnEdgeError(f"{path} is not a loadable PyTorch state dict ({type(error).__name__})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise FcnEdgeError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    load_state_strict(backbone, state, f"pretrained backbone {path}")
