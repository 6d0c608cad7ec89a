"""Checkerboard score: how much of a map's fine detail repeats with the upsampling stride.

A stride-s transposed convolution whose kernel size is not a multiple of s makes output
pixels of different phase (position modulo s) the sums of different numbers of kernel
taps, so its output carries a pattern of period s on top of the content: the checkerboard
artifacts of Odena, Dumoulin & Olah, "Deconvolution and Checkerboard Artifacts", Distill,
2016 (https://distill.pub/2016/deconv-checkerboard/). Resize-then-convolve treats every
output pixel alike and has none. This module turns that into one number, so a decoder
or a converted checkpoint can be compared before it is exported.

Definition (docs/checkerboard.md has the derivation and measurements). For each channel
of each output map y and the stride s:

1. high-pass: r = y - T_s * y, where T_s is the separable triangle filter of 2s - 1 taps
   (a box of s convolved with itself). Its response has double zeros at every
   frequency k/s, so r keeps all of y's energy at the stride's aliasing frequencies,
   while a locally linear trend is removed exactly.
2. drop a margin of s pixels at each side (zero-padding effects are not periodic), cut
   the rest into tiles of L = ``tiles`` * s pixels anchored at the stride grid.
3. in every tile, group pixels by phase (y mod s, x mod s): with m_p the phase means
   and m the tile mean, the lattice energy is sum_p n_p (m_p - m)^2 and the total energy
   sum (r - m)^2. The map's share is lattice / total, summed over its tiles: the
   fraction of local fine-detail variance explained by the pixel's phase (an ANOVA eta^2).
4. the score is the mean share over all channels and images (maps with no fine detail
   at all are skipped): 0 = no stride structure, 1 = a pure stride-periodic pattern.

It is invariant to scaling and offsetting each map, and for structureless detail (white
noise) it is about (s^2 - 1) / (L^2 - 1), 1/64 with the default 8 tiles per stride.
Tiles keep it local: a deconv's pattern is proportional to its input, so its sign
follows the content and would cancel in a global (whole-map) phase mean or DFT bin.

The reference decoders below are the experiment that calibrates the score: Odena et
al.'s comparison of a stride-2 kernel-3 transposed conv with resize + 3x3 conv.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import FcnEdgeError

TILES = 8  # tile side in strides: smaller is more local, larger lowers the chance level 1/TILES^2
REFERENCE_KINDS = ("deconv", "nearest", "bilinear")
REFERENCE_STRIDE = 4  # two stride-2 stages: periods 2 and 4 both divide 4


def high_pass(maps: torch.Tensor, stride: int) -> torch.Tensor:
    """``maps - triangle(maps)`` with the (2s - 1)-tap triangle; keeps the stride's aliasing frequencies intact."""
    channels = maps.shape[1]
    taps = torch.cat([torch.arange(1, stride + 1), torch.arange(stride - 1, 0, -1)]).to(maps.dtype)
    taps = taps / taps.sum()
    pad = stride - 1  # the score's margin of ``stride`` drops every pixel this padding reaches
    smooth = F.pad(maps, (pad, pad, pad, pad), mode="replicate")
    smooth = F.conv2d(smooth, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    smooth = F.conv2d(smooth, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return maps - smooth


def phase_shares(maps: torch.Tensor, stride: int, tiles: int = TILES) -> torch.Tensor:
    """Per (image, channel): the share of tile-local high-pass energy explained by the phase; NaN if none."""
    if maps.ndim != 4:
        raise ValueError(f"expected N x C x H x W maps, got shape {tuple(maps.shape)}")
    side = tiles * stride
    height, width = maps.shape[-2] - 2 * stride, maps.shape[-1] - 2 * stride
    if min(height, width) < side:
        need = side + 2 * stride
        raise FcnEdgeError(
            f"maps of {maps.shape[-2]}x{maps.shape[-1]} are too small to score stride {stride} with "
            f"{tiles}-stride tiles: use inputs of at least {need}x{need} px or fewer tiles"
        )
    residual = high_pass(maps.double(), stride)[..., stride:-stride, stride:-stride]
    rows, cols = height // side, width // side
    n, c = residual.shape[:2]
    # n, c, tile row, k, phase y, tile column, k, phase x
    tiled = residual[..., : rows * side, : cols * side].reshape(n, c, rows, tiles, stride, cols, tiles, stride)
    tile_mean = tiled.mean(dim=(3, 4, 6, 7), keepdim=True)
    phase_mean = tiled.mean(dim=(3, 6), keepdim=True)
    lattice = ((phase_mean - tile_mean) ** 2).sum(dim=(2, 3, 4, 5, 6, 7)) * tiles**2
    total = ((tiled - tile_mean) ** 2).sum(dim=(2, 3, 4, 5, 6, 7))
    scale = (maps.double() ** 2).sum(dim=(2, 3))
    return torch.where(total > 1e-12 * scale, lattice / total, torch.full_like(total, float("nan")))


def checkerboard_score(maps: torch.Tensor | Sequence[torch.Tensor], stride: int, tiles: int = TILES) -> float:
    """Mean phase share over every channel of every map (N x C x H x W, or a list of such batches)."""
    batches = [maps] if isinstance(maps, torch.Tensor) else list(maps)
    shares = torch.cat([phase_shares(batch.detach(), stride, tiles).flatten() for batch in batches])
    shares = shares[~shares.isnan()]
    return float(shares.mean()) if len(shares) else 0.0


def _stage(kind: str, cin: int, cout: int) -> nn.Module:
    if kind == "deconv":  # kernel 3 is not a multiple of stride 2: uneven overlap
        return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
    if kind in ("nearest", "bilinear"):
        return nn.Sequential(nn.Upsample(scale_factor=2, mode=kind), nn.Conv2d(cin, cout, 3, padding=1))
    raise ValueError(f"decoder kind {kind!r} not in {REFERENCE_KINDS}")


def reference_model(kind: str, out_channels: int, seed: int) -> nn.Sequential:
    """Encoder (two stride-2 convs) + a two-stage x4 decoder of ``kind``, default PyTorch init.

    The encoder is drawn from ``seed`` first, so every kind gets the same encoder.
    """
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
    decoder = nn.Sequential(_stage(kind, 32, 16), nn.ReLU(), _stage(kind, 16, out_channels))
    return nn.Sequential(encoder, decoder)


def train_reference(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], lr: float = 2e-3) -> float:
    """Train for per-pixel classification (cross-entropy, Adam), one pass over ``batches``; returns the last loss.

    Segmentation, not reconstruction: the loss only asks for the right label, so like in an
    FCN nothing pushes the logits to be free of patterns that do not flip a label.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for images, labels in batches:
        loss = F.cross_entropy(model(images), labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()
