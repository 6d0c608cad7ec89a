"""Backbones that return named feature maps at strides 8, 16 and 32.

The ResNets keep torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1`` ...)
so a user's local ImageNet checkpoint loads by key with no download. ``edge_resnet`` is
the default: the same residual blocks, narrower and shallower, with a two-conv stem and
no max-pool, sized for a 2-core CPU or a Jetson and for INT8 (plain dense convolutions
quantize well, depthwise ones much less so). ``mobilenet_v3_small`` (:mod:`.mobilenet`) is the
depthwise, hard-swish kind edge users bring, for ``--qat``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .mobilenet import MOBILENET_SPECS, MobileNetBackbone

FEATURES = ("pool3", "pool4", "pool5")  # strides 8, 16, 32, named after the VGG FCN taps


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes))


@dataclass(frozen=True)
class BackboneSpec:
    block: type[nn.Module]
    layers: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    stem: str  # "resnet": 7x7/2 conv + 3x3/2 max-pool, "edge": two 3x3/2 convs


SPECS: dict[str, BackboneSpec] = {
    "edge_resnet": BackboneSpec(BasicBlock, (1, 2, 2, 2), (48, 96, 144, 192), "edge"),
    "resnet18": BackboneSpec(BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512), "resnet"),
    "resnet34": BackboneSpec(BasicBlock, (3, 4, 6, 3), (64, 128, 256, 512), "resnet"),
    "resnet50": BackboneSpec(Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512), "resnet"),
}


class ResNetBackbone(nn.Module):
    """ResNet trunk without the classifier; ``forward`` returns pool3/pool4/pool5 features."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        if spec.stem == "resnet":
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = 64
        else:
            stem_width = spec.widths[0] // 2
            self.conv1 = nn.Conv2d(3, stem_width, 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.Sequential(
                nn.Conv2d(stem_width, spec.widths[0], 3, 2, 1, bias=False),
                nn.BatchNorm2d(spec.widths[0]),
                nn.ReLU(inplace=True),
            )
            inplanes = spec.widths[0]
        layers = []
        for index, (blocks, width) in enumerate(zip(spec.layers, spec.widths)):
            stride = 1 if index == 0 else 2
            stage = []
            for block_index in range(blocks):
                stage.append(spec.block(inplanes, width, stride if block_index == 0 else 1))
                inplanes = width * spec.block.expansion
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.channels = {name: w * spec.block.expansion for name, w in zip(FEATURES, spec.widths[1:])}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        pool3 = self.layer2(x)
        pool4 = self.layer3(pool3)
        pool5 = self.layer4(pool4)
        return {"pool3": pool3, "pool4": pool4, "pool5": pool5}


BACKBONES = (*SPECS, *MOBILENET_SPECS)  # what --backbone takes


def build_backbone(name: str) -> nn.Module:
    from ..errors import FcnEdgeError

    if name in MOBILENET_SPECS:
        return MobileNetBackbone(MOBILENET_SPECS[name], FEATURES)
    if name not in SPECS:
        raise FcnEdgeError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    return ResNetBackbone(SPECS[name])
