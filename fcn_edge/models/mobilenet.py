"""A MobileNetV3-style backbone: inverted residuals of depthwise separable convs, hard-swish, squeeze-excitation.

The kind of model edge users bring (Howard et al. 2019, "Searching for MobileNetV3"), here as
a backbone of the project's own FCN so it can be trained, fine-tuned with quantization
(``scripts/train.py --qat``) and built like the ResNets. Depthwise convs and hard-swish are
what post-training INT8 handles worst: one scale per tensor for activations that span
0..100 with a median near 0.5. Every conv is a ``ConvUnit`` (conv, BN, activation), so the
deployed graph's Conv (BN folded) has one torch module to answer for it.

The layout is configuration as data: a stem, then one :class:`BlockSpec` per inverted
residual, and the features are the outputs of the last block at strides 8, 16 and 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "hswish": nn.Hardswish, "none": nn.Identity}


@dataclass(frozen=True)
class BlockSpec:
    kernel: int
    expanded: int
    out: int
    se: bool
    activation: str  # a key of ACTIVATIONS
    stride: int


@dataclass(frozen=True)
class MobileNetSpec:
    stem: int
    blocks: tuple[BlockSpec, ...]


def _divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: a multiple of ``divisor``, never 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvUnit(nn.Sequential):
    """Conv, BatchNorm, activation: one Conv node once the export folds the BatchNorm."""

    def __init__(self, inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1, activation: str = "relu") -> None:
        super().__init__(
            nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            ACTIVATIONS[activation](),
        )


class SqueezeExcitation(nn.Module):
    """Channel weights from the pooled features: pool, 1x1 down + ReLU, 1x1 up + hard-sigmoid, scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = _divisible(channels / 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """1x1 expand, kxk depthwise, optional SE, linear 1x1 project; the input added back when shapes match."""

    def __init__(self, inp: int, spec: BlockSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if spec.expanded != inp:
            layers.append(ConvUnit(inp, spec.expanded, 1, activation=spec.activation))
        layers.append(ConvUnit(spec.expanded, spec.expanded, spec.kernel, spec.stride, spec.expanded, spec.activation))
        if spec.se:
            layers.append(SqueezeExcitation(spec.expanded))
        layers.append(ConvUnit(spec.expanded, spec.out, 1, activation="none"))
        self.block = nn.Sequential(*layers)
        self.residual = spec.stride == 1 and inp == spec.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


B = BlockSpec
MOBILENET_SPECS: dict[str, MobileNetSpec] = {
    # MobileNetV3-Small's layout (Howard et al. 2019, table 2) up to its last block
    "mobilenet_v3_small": MobileNetSpec(16, (
        B(3, 16, 16, True, "relu", 2),
        B(3, 72, 24, False, "relu", 2), B(3, 88, 24, False, "relu", 1),
        B(5, 96, 40, True, "hswish", 2), B(5, 240, 40, True, "hswish", 1), B(5, 240, 40, True, "hswish", 1),
        B(5, 120, 48, True, "hswish", 1), B(5, 144, 48, True, "hswish", 1),
        B(5, 288, 96, True, "hswish", 2), B(5, 576, 96, True, "hswish", 1), B(5, 576, 96, True, "hswish", 1),
    )),
}  # fmt: skip


class MobileNetBackbone(nn.Module):
    """Stem and inverted residuals; ``forward`` returns pool3/pool4/pool5 features (strides 8, 16, 32)."""

    def __init__(self, spec: MobileNetSpec, features: tuple[str, str, str]) -> None:
        super().__init__()
        self.stem = ConvUnit(3, spec.stem, 3, 2, activation="hswish")
        blocks, taps, channels = [], {}, spec.stem
        stride = 2
        for index, block in enumerate(spec.blocks):
            blocks.append(InvertedResidual(channels, block))
            channels, stride = block.out, stride * block.stride
            if stride in (8, 16, 32):
                taps[stride] = (index, channels)  # the last block at each stride
        missing = {8, 16, 32} - set(taps)
        if missing:
            raise ValueError(f"a MobileNet spec must reach strides 8, 16 and 32; it misses {sorted(missing)}")
        self.blocks = nn.Sequential(*blocks)
        self.taps = {taps[s][0]: name for s, name in zip((8, 16, 32), features)}
        self.channels = {name: taps[s][1] for s, name in zip((8, 16, 32), features)}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        features = {}
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.taps:
                features[self.taps[index]] = x
        return features
