"""Decoder upsamplers: the classic learnable transposed convolution, or resize then conv.

A stride-s transposed convolution whose kernel size is not a multiple of s paints some
output pixels with more kernel taps than others, which shows as checkerboard artifacts
(Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016).
Resizing first and then convolving spreads every input pixel evenly, so it cannot.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

UPSAMPLE_MODES = ("resize_conv", "deconv")
RESIZE_MODES = ("bilinear", "nearest")


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """The per-channel bilinear interpolation kernel FCN initialises its deconvolutions with."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - torch.abs(torch.arange(kernel_size, dtype=torch.float64) - center) / factor
    kernel = (taps[:, None] * taps[None, :]).to(torch.float32)
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = kernel
    return weight


class DeconvUpsample(nn.ConvTranspose2d):
    """Transposed conv upsampling by ``factor`` (kernel 2*factor), bilinear-initialised."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__(channels, channels, 2 * factor, factor, factor // 2, bias=False)
        self.factor = factor
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(channels, 2 * factor))


class ResizeConvUpsample(nn.Module):
    """Resize by ``factor`` then a 3x3 conv, initialised to the identity so it starts as a plain resize."""

    def __init__(self, channels: int, factor: int, mode: str = "bilinear") -> None:
        super().__init__()
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {mode!r} not in {RESIZE_MODES}")
        self.factor = factor
        self.mode = mode
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[range(channels), range(channels), 1, 1] = 1.0
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None
        return self.conv(F.interpolate(x, scale_factor=self.factor, mode=self.mode, align_corners=align))


class BilinearUpsample(nn.Module):
    """A fixed bilinear resize: the final FCN upsampler, which Long et al. do not learn."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)


def make_final_upsampler(mode: str, channels: int, factor: int) -> nn.Module:
    """Fixed bilinear upsampling to the input size.

    As in the FCN paper the last, largest upsampling is not learned. In ``deconv`` mode it is
    the classic frozen bilinear ConvTranspose2d (which the export pass turns into an exact
    Resize); in ``resize_conv`` mode a plain resize, so no convolution runs at full resolution.
    """
    if mode == "deconv":
        deconv = DeconvUpsample(channels, factor)
        deconv.weight.requires_grad_(False)
        return deconv
    if mode == "resize_conv":
        return BilinearUpsample(factor)
    raise ValueError(f"upsample mode {mode!r} not in {UPSAMPLE_MODES}")


def make_upsampler(mode: str, channels: int, factor: int, resize_mode: str = "bilinear") -> nn.Module:
    if mode == "deconv":
        return DeconvUpsample(channels, factor)
    if mode == "resize_conv":
        return ResizeConvUpsample(channels, factor, resize_mode)
    raise ValueError(f"upsample mode {mode!r} not in {UPSAMPLE_MODES}")
