r"""A convolutional U-Net velocity network for images, after DDPM and I-CFM."""

from __future__ import annotations

__all__ = [
    "UNet",
]

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .embeddings import (
    MEAN_FLOW_TIME_SCALE,
    SinusoidalTimeEmbedding,
    build_label_embedding,
    embed_times,
)

if TYPE_CHECKING:
    from .config import UNetConfig

# Residual branches and the output convolution start small (not zero), so that the network
# is close to the identity at initialisation while every parameter still gets a gradient.
_SMALL_INIT = 0.1


def _norm(channels: int) -> nn.GroupNorm:
    r"""Group norm with :math:`\gcd(32, C)` groups, which always divides :math:`C`."""

    return nn.GroupNorm(math.gcd(32, channels), channels)


def _shrink(module: nn.Module, scale: float = _SMALL_INIT) -> nn.Module:
    r"""Scales the weights of a freshly initialised layer down by :py:`scale`."""

    with torch.no_grad():
        module.weight.mul_(scale)
    return module


class _ResBlock(nn.Module):
    r"""GroupNorm-SiLU-conv twice, with a time scale-shift before the second conv."""

    def __init__(self, in_channels: int, out_channels: int, time_embed_dim: int, dropout: float):
        super().__init__()

        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_embed_dim, 2 * out_channels))
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _shrink(nn.Conv2d(out_channels, out_channels, 3, padding=1))

        if in_channels == out_channels:
            self.skip = nn.Identity()
        else:
            self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C', H, W)
        scale, shift = self.time_proj(e)[..., None, None].chunk(2, dim=1)  # (B, C', 1, 1)
        h = self.norm2(h) * (1 + scale) + shift  # (B, C', H, W)
        h = self.conv2(self.dropout(F.silu(h)))  # (B, C', H, W)
        return self.skip(x) + h  # (B, C', H, W)


class _Attention(nn.Module):
    r"""Multi-head self-attention over pixels, pre-norm and residual."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()

        self.num_heads = num_heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _shrink(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape

        qkv = self.qkv(self.norm(x))  # (B, 3C, H, W)
        qkv = qkv.reshape(B, 3, self.num_heads, C // self.num_heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # (B, heads, HW, C / heads)

        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C / heads)
        h = h.transpose(-1, -2).reshape(B, C, H, W)  # (B, C, H, W)

        return x + self.proj(h)  # (B, C, H, W)


class _Block(nn.Module):
    r"""A residual block, optionally followed by self-attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_embed_dim: int,
        dropout: float,
        num_heads: int | None,
    ):
        super().__init__()

        self.res = _ResBlock(in_channels, out_channels, time_embed_dim, dropout)
        self.attn = nn.Identity() if num_heads is None else _Attention(out_channels, num_heads)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        return self.attn(self.res(x, e))


class _Upsample(nn.Module):
    r"""Nearest-neighbour upsampling to an exact size, then a 3 x 3 conv."""

    def __init__(self, channels: int):
        super().__init__()

        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class _Level(nn.Module):
    r"""The blocks of one resolution level, and the resampling that follows them."""

    def __init__(self, blocks: list[_Block], resample: nn.Module | None):
        super().__init__()

        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class UNet(nn.Module):
    r"""Creates a U-Net velocity network for images of shape :math:`(C, H, W)`.

    The time goes through a sinusoidal embedding and an MLP
    (:class:`~ecnf.nets.SinusoidalTimeEmbedding`). The image goes down through
    :py:`len(channel_mult)` levels of residual blocks (GroupNorm, SiLU, 3 x 3 conv, with
    the time embedding as a scale and shift of the second norm, dropout) and optional
    multi-head self-attention, halved in resolution between levels by stride-2 convs;
    through a middle block (residual, optional attention, residual); and back up through
    the same levels, with skip connections concatenated at every block and nearest
    upsampling to the exact size of the matching skip (so odd sizes such as
    28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28 work). A final GroupNorm, SiLU and conv return
    :math:`C` channels.

    Level :math:`l` works at resolution :math:`\lceil H / 2^l \rceil` with
    :py:`channels * channel_mult[l]` channels. Residual branches and the final conv are
    initialised with weights scaled by 0.1 (rather than zero, as in DDPM), so that every
    parameter receives a gradient from the first step.

    References:
        | Denoising Diffusion Probabilistic Models (Ho et al., 2020)
        | https://arxiv.org/abs/2006.11239

        | Improved Denoising Diffusion Probabilistic Models (Nichol et al., 2021)
        | https://arxiv.org/abs/2102.09672

        | Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal
        | Transport (Tong et al., 2023)
        | https://arxiv.org/abs/2302.00482

    Arguments:
        config: The configuration, a :class:`~ecnf.nets.UNetConfig`.

    Example:
        >>> from ecnf.nets import UNetConfig
        >>> model = UNet(UNetConfig(data_shape=(1, 8, 8), channels=8, num_heads=2))
        >>> model(torch.randn(2, 1, 8, 8), torch.rand(2)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, config: UNetConfig):
        super().__init__()

        self.config = config

        in_channels = config.data_shape[0]
        ch = config.channels
        emb = 4 * ch if config.time_embed_dim is None else config.time_embed_dim
        last = len(config.channel_mult) - 1

        def block(c_in: int, c_out: int, attention: bool) -> _Block:
            heads = config.num_heads if attention else None
            return _Block(c_in, c_out, emb, config.dropout, heads)

        if config.mean_flow:  # smoother time features: the MeanFlow target differentiates in t
            self.time_embedding = SinusoidalTimeEmbedding(emb, scale=MEAN_FLOW_TIME_SCALE)
            self.interval_embedding = SinusoidalTimeEmbedding(emb, scale=MEAN_FLOW_TIME_SCALE)
        else:
            self.time_embedding = SinusoidalTimeEmbedding(emb)
        self.label_embedding = build_label_embedding(config.num_classes, emb)
        self.input = nn.Conv2d(in_channels, ch, 3, padding=1)

        # Down
        skips = [ch]
        cur = ch
        self.down = nn.ModuleList()

        for level, mult in enumerate(config.channel_mult):
            attention = level in config.attention_levels
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(block(cur, ch * mult, attention))
                cur = ch * mult
                skips.append(cur)

            if level < last:
                downsample = nn.Conv2d(cur, cur, 3, stride=2, padding=1)
                skips.append(cur)
            else:
                downsample = None

            self.down.append(_Level(blocks, downsample))

        # Middle
        self.mid = nn.ModuleList([block(cur, cur, config.mid_attention), block(cur, cur, False)])

        # Up
        self.up = nn.ModuleList()

        for level, mult in reversed(list(enumerate(config.channel_mult))):
            attention = level in config.attention_levels
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(block(cur + skips.pop(), ch * mult, attention))
                cur = ch * mult

            upsample = _Upsample(cur) if level > 0 else None
            self.up.append(_Level(blocks, upsample))

        # Output
        self.output = nn.Sequential(
            _norm(cur),
            nn.SiLU(),
            _shrink(nn.Conv2d(cur, in_channels, 3, padding=1)),
        )

    def forward(
        self, x: Tensor, t: Tensor, r: Tensor | None = None, y: Tensor | None = None
    ) -> Tensor:
        r"""
        Arguments:
            x: The images :math:`x`, with shape :math:`(B, C, H, W)`.
            t: The times :math:`t`, with shape :math:`(B,)` or :math:`()`.
            r: For a network built with ``mean_flow=True``, the ends of the intervals
                :math:`[t, r]` (default :math:`r = t`); otherwise :py:`None`.
            y: For a network built with ``num_classes > 0``, the class labels, with shape
                :math:`(B,)` or :math:`()` (default: the null label, unconditional).

        Returns:
            The velocities :math:`v(x, t)` (average velocities :math:`u(x, t, r)`), with
            shape :math:`(B, C, H, W)`.
        """

        e = embed_times(self, x, t, r, y)  # (B, E)

        h = self.input(x)  # (B, ch, H, W)
        skips = [h]

        for level in self.down:
            for block in level.blocks:
                h = block(h, e)  # (B, ch * mult, H_l, W_l)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)  # (B, ch * mult, H_{l+1}, W_{l+1})
                skips.append(h)

        for block in self.mid:
            h = block(h, e)  # (B, ch * mult[-1], H_L, W_L)

        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat((h, skips.pop()), dim=1), e)  # (B, ch * mult, H_l, W_l)
            if level.resample is not None:
                h = level.resample(h, skips[-1].shape[-2:])  # (B, ch * mult, H_{l-1}, W_{l-1})

        return self.output(h)  # (B, C, H, W)
