"""Model cost in GFLOPs (2 x multiply-accumulates of the convolutions), counted with forward hooks."""

from __future__ import annotations

import torch
from torch import nn


def conv_gflops(model: nn.Module, height: int, width: int) -> float:
    macs = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.weight.shape[2] * module.weight.shape[3]
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel is spread over the kernel
            macs += inputs[0].numel() * kernel * module.out_channels // module.groups
        else:
            macs += output.numel() * kernel * module.in_channels // module.groups

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, height, width))
    finally:
        for hook in hooks:
            hook.remove()
    return 2.0 * macs / 1e9
