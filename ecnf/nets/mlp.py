r"""Fully connected velocity networks: the seed paper's MLP and a residual baseline."""

from __future__ import annotations

__all__ = [
    "ResNetVelocity",
    "VelocityMLP",
]

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torch import Tensor

from .activations import get_activation
from .embeddings import build_label_embedding, build_time_embedding, embed_times

if TYPE_CHECKING:
    from .config import MLPConfig, ResNetConfig


class _HiddenLayer(nn.Module):
    r"""Linear -> optional LayerNorm -> activation, with an optional residual connection."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str,
        layer_norm: bool,
        residual: bool,
    ):
        super().__init__()

        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.LayerNorm(out_features) if layer_norm else nn.Identity()
        self.activation = get_activation(activation)
        self.residual = residual and in_features == out_features

    def forward(self, h: Tensor) -> Tensor:
        y = self.activation(self.norm(self.linear(h)))
        return h + y if self.residual else y


class VelocityMLP(nn.Module):
    r"""Creates the seed paper's velocity network (eqs. 1-3).

    The time is embedded as :math:`e(t)` (eq. 1 for the linear embedding), concatenated
    with the flattened state and mapped through :math:`L` hidden layers

    .. math::
        h_0 & = [\operatorname{flatten}(x), e(t)] \\
        h_l & = \phi_l(\operatorname{LN}(W_l h_{l-1} + b_l)) \; (+ \, h_{l-1}) \\
        v(x, t) & = W_{L+1} h_L + b_{L+1}

    where the layer norm and the residual connection (between hidden layers of equal
    width, i.e. all but the first) are optional, and every layer has its own activation
    :math:`\phi_l` (so an adaptive activation learns one mix per layer). The output is
    reshaped to the shape of :math:`x`.

    References:
        | Enhanced Continuous Normalizing Flows (the seed paper of this project), eqs. 1-3.

    Arguments:
        config: The configuration, a :class:`~ecnf.nets.MLPConfig`.

    Example:
        >>> from ecnf.nets import MLPConfig
        >>> model = VelocityMLP(MLPConfig(data_shape=(1, 8, 8), width=64))
        >>> x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
        >>> model(x, t).shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(self, config: MLPConfig):
        super().__init__()

        self.config = config
        features = math.prod(config.data_shape)

        kind, dim, mean_flow = config.time_embedding, config.time_embed_dim, config.mean_flow
        self.time_embedding = build_time_embedding(kind, dim, mean_flow=mean_flow)
        if mean_flow:
            self.interval_embedding = build_time_embedding(kind, dim, mean_flow=True)
        self.label_embedding = build_label_embedding(config.num_classes, dim)
        self.layers = nn.ModuleList()

        in_features = features + config.time_embed_dim
        for _ in range(config.depth):
            layer = _HiddenLayer(
                in_features,
                config.width,
                activation=config.activation,
                layer_norm=config.layer_norm,
                residual=config.residual,
            )
            self.layers.append(layer)
            in_features = config.width

        self.output = nn.Linear(config.width, features)

    def forward(
        self, x: Tensor, t: Tensor, r: Tensor | None = None, y: Tensor | None = None
    ) -> Tensor:
        r"""
        Arguments:
            x: The states :math:`x`, with shape :math:`(B, *D)`.
            t: The times :math:`t`, with shape :math:`(B,)` or :math:`()`.
            r: For a network built with ``mean_flow=True``, the ends of the intervals
                :math:`[t, r]` (default :math:`r = t`); otherwise :py:`None`.
            y: For a network built with ``num_classes > 0``, the class labels, with shape
                :math:`(B,)` or :math:`()` (default: the null label, unconditional).

        Returns:
            The velocities :math:`v(x, t)` (average velocities :math:`u(x, t, r)`), with
            shape :math:`(B, *D)`.
        """

        e = embed_times(self, x, t, r, y)  # (B, E)
        h = torch.cat((x.flatten(1), e), dim=1)  # (B, D + E)

        for layer in self.layers:
            h = layer(h)  # (B, width)

        return self.output(h).reshape(x.shape)  # (B, *D)


class _ResidualBlock(nn.Module):
    r"""Pre-norm residual block with the time embedding injected in the middle."""

    def __init__(self, width: int, time_embed_dim: int, activation: str):
        super().__init__()

        self.norm = nn.LayerNorm(width)
        self.linear1 = nn.Linear(width, width)
        self.time_proj = nn.Linear(time_embed_dim, width)
        self.activation = get_activation(activation)
        self.linear2 = nn.Linear(width, width)

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        y = self.linear1(self.norm(h)) + self.time_proj(e)  # (B, width)
        return h + self.linear2(self.activation(y))  # (B, width)


class ResNetVelocity(nn.Module):
    r"""Creates a residual velocity network, the seed paper's ResNet-enhanced baseline.

    The flattened state is lifted to the residual stream :math:`h_0 = W_{in} x + b_{in}`,
    then each of the :math:`K` pre-norm blocks reads the time embedding :math:`e(t)`,

    .. math::
        h_k = h_{k-1} + W_{k,2} \, \phi_k\big(W_{k,1} \operatorname{LN}(h_{k-1})
            + U_k e(t) + c_k\big) + b_{k,2}

    and the output is :math:`v(x, t) = W_{out} \, \phi(\operatorname{LN}(h_K)) + b_{out}`,
    reshaped to the shape of :math:`x`.

    References:
        | Identity Mappings in Deep Residual Networks (He et al., 2016)
        | https://arxiv.org/abs/1603.05027

    Arguments:
        config: The configuration, a :class:`~ecnf.nets.ResNetConfig`.

    Example:
        >>> from ecnf.nets import ResNetConfig
        >>> model = ResNetVelocity(ResNetConfig(data_shape=(2,), width=32, num_blocks=2))
        >>> model(torch.randn(4, 2), torch.tensor(0.5)).shape
        torch.Size([4, 2])
    """

    def __init__(self, config: ResNetConfig):
        super().__init__()

        self.config = config
        features = math.prod(config.data_shape)

        kind, dim, mean_flow = config.time_embedding, config.time_embed_dim, config.mean_flow
        self.time_embedding = build_time_embedding(kind, dim, mean_flow=mean_flow)
        if mean_flow:
            self.interval_embedding = build_time_embedding(kind, dim, mean_flow=True)
        self.label_embedding = build_label_embedding(config.num_classes, dim)
        self.input = nn.Linear(features, config.width)
        self.blocks = nn.ModuleList(
            _ResidualBlock(config.width, config.time_embed_dim, config.activation)
            for _ in range(config.num_blocks)
        )
        self.output_norm = nn.LayerNorm(config.width)
        self.output_activation = get_activation(config.activation)
        self.output = nn.Linear(config.width, features)

    def forward(
        self, x: Tensor, t: Tensor, r: Tensor | None = None, y: Tensor | None = None
    ) -> Tensor:
        r"""
        Arguments:
            x: The states :math:`x`, with shape :math:`(B, *D)`.
            t: The times :math:`t`, with shape :math:`(B,)` or :math:`()`.
            r: For a network built with ``mean_flow=True``, the ends of the intervals
                :math:`[t, r]` (default :math:`r = t`); otherwise :py:`None`.
            y: For a network built with ``num_classes > 0``, the class labels, with shape
                :math:`(B,)` or :math:`()` (default: the null label, unconditional).

        Returns:
            The velocities :math:`v(x, t)` (average velocities :math:`u(x, t, r)`), with
            shape :math:`(B, *D)`.
        """

        e = embed_times(self, x, t, r, y)  # (B, E)
        h = self.input(x.flatten(1))  # (B, width)

        for block in self.blocks:
            h = block(h, e)  # (B, width)

        h = self.output_activation(self.output_norm(h))  # (B, width)
        return self.output(h).reshape(x.shape)  # (B, *D)
