"""FCN-32s/16s/8s (Long, Shelhamer & Darrell, 2015) over a feature-map backbone.

The classifier is fully convolutional (3x3 conv + 1x1 conv instead of dense layers), the
pool4/pool3 skips are scored with 1x1 convs and fused by addition (the 2x upsamplers before
each fusion are learned; the final one is fixed bilinear, as in the paper), and the logits come
back at the input's resolution: inputs that are not a multiple of the output stride are
padded (bottom/right) and the logits cropped back, so any height and width work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import FcnEdgeError
from .backbones import BACKBONES, build_backbone
from .upsample import RESIZE_MODES, UPSAMPLE_MODES, make_final_upsampler, make_upsampler

HEADS = {"fcn32s": (), "fcn16s": ("pool4",), "fcn8s": ("pool4", "pool3")}
OUTPUT_STRIDE = 32


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int
    backbone: str = "edge_resnet"
    head: str = "fcn8s"
    upsample: str = "resize_conv"
    resize_mode: str = "bilinear"
    classifier_width: int = 128
    dropout: float = 0.1

    def __post_init__(self) -> None:
        checks = (
            ("backbone", self.backbone, BACKBONES),
            ("head", self.head, tuple(HEADS)),
            ("upsample", self.upsample, UPSAMPLE_MODES),
            ("resize mode", self.resize_mode, RESIZE_MODES),
        )
        for label, value, choices in checks:
            if value not in choices:
                raise FcnEdgeError(f"unknown {label} {value!r}: choose one of {', '.join(choices)}")
        if self.num_classes < 2:
            raise FcnEdgeError(f"num_classes must be at least 2, got {self.num_classes}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class FCN(nn.Module):
    """Takes normalised float NCHW, returns logits N x num_classes x H x W."""

    output_stride = OUTPUT_STRIDE

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k = config.num_classes
        self.backbone = build_backbone(config.backbone)
        channels = self.backbone.channels
        self.classifier = nn.Sequential(
            nn.Conv2d(channels["pool5"], config.classifier_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(config.classifier_width),
            nn.ReLU(inplace=True),
            nn.Dropout2d(config.dropout),
            nn.Conv2d(config.classifier_width, k, 1),
        )
        skips = HEADS[config.head]
        self.skip_scores = nn.ModuleDict({name: nn.Conv2d(channels[name], k, 1) for name in skips})
        for score in self.skip_scores.values():  # FCN zero-initialises skip scores
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        self.skip_upsamplers = nn.ModuleList(make_upsampler(config.upsample, k, 2, config.resize_mode) for _ in skips)
        final_factor = OUTPUT_STRIDE // 2 ** len(skips)
        self.final_upsampler = make_final_upsampler(config.upsample, k, final_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return self.forward_padded(x)[:, :, :height, :width]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` padded bottom/right to a multiple of the output stride.

        Cropping is left to the caller so a deployed graph can crop its uint8 labels
        instead of the float logits (32x less memory traffic at full resolution).
        """
        height, width = x.shape[-2:]
        pad_h = (OUTPUT_STRIDE - height % OUTPUT_STRIDE) % OUTPUT_STRIDE
        pad_w = (OUTPUT_STRIDE - width % OUTPUT_STRIDE) % OUTPUT_STRIDE
        x = F.pad(x, (0, pad_w, 0, pad_h))
        features = self.backbone(x)
        score = self.classifier(features["pool5"])
        for (name, skip_score), upsampler in zip(self.skip_scores.items(), self.skip_upsamplers):
            score = upsampler(score) + skip_score(features[name])
        return self.final_upsampler(score)


def build_model(config: ModelConfig) -> FCN:
    return FCN(config)
