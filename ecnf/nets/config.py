r"""Network configurations (dataclasses) and the functions that build and serialise them.

A configuration is enough to rebuild its network: :func:`config_to_dict` gives a JSON-ready
dictionary (with the architecture name under :py:`"arch"`), :func:`config_from_dict` reads
it back and :func:`build_model` instantiates the network.
"""

__all__ = [
    "MLPConfig",
    "ModelConfig",
    "ResNetConfig",
    "UNetConfig",
    "build_model",
    "config_from_dict",
    "config_to_dict",
]

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn as nn

from .._checks import check_choice, check_positive_int
from .activations import ACTIVATIONS
from .embeddings import TIME_EMBEDDINGS
from .mlp import ResNetVelocity, VelocityMLP
from .torchcfm import TorchCFMUNet, TorchCFMUNetConfig
from .unet import UNet


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_shape(name: str, value: Any) -> tuple[int, ...]:
    r"""Returns :py:`value` as a non-empty tuple of positive integers (lists are accepted)."""

    shape = tuple(value) if isinstance(value, list | tuple) else value
    if (
        not isinstance(shape, tuple)
        or len(shape) == 0
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise ValueError(f"{name} must be a non-empty tuple of positive integers, got {value!r}")
    return shape


@dataclass
class MLPConfig:
    r"""Configuration of :class:`~ecnf.nets.VelocityMLP`, the seed paper's network.

    Arguments:
        data_shape: The shape :math:`D` of one sample, e.g. :py:`(2,)` or
            :py:`(1, 28, 28)` (images are flattened).
        width: The width of every hidden layer.
        depth: The number of hidden layers.
        activation: The activation, one of :data:`~ecnf.nets.ACTIVATIONS`.
        time_embedding: The time embedding, one of :py:`"linear"` (the paper's eq. 1),
            :py:`"sinusoidal"` or :py:`"fourier"`.
        time_embed_dim: The dimension :math:`E` of the time embedding.
        layer_norm: Whether to apply a layer norm after every hidden linear layer.
        residual: Whether to add residual connections between equal-width hidden layers.
        mean_flow: Whether the network also takes the end :math:`r` of a time interval and
            returns the average velocity over :math:`[t, r]` (MeanFlow; a second time
            embedding, of :math:`r - t`). With :math:`r = t` it is an instantaneous velocity.
        num_classes: The number of class labels the network is conditioned on (0: none). A
            conditional network takes labels ``y`` in ``0 .. num_classes - 1``, or the null
            label ``num_classes`` (also what ``y=None`` means), through a learned embedding
            added to the time embedding; it starts at zero, so training begins from an
            unconditional network.

    Example:
        >>> MLPConfig(data_shape=[2], width=64).data_shape
        (2,)
    """

    arch: ClassVar[str] = "mlp"

    data_shape: tuple[int, ...] = (2,)
    width: int = 256
    depth: int = 3
    activation: str = "silu"
    time_embedding: str = "linear"
    time_embed_dim: int = 64
    layer_norm: bool = False
    residual: bool = False
    mean_flow: bool = False
    num_classes: int = 0

    def __post_init__(self):
        self.data_shape = _check_shape("data_shape", self.data_shape)
        _check_bool("mean_flow", self.mean_flow)
        check_positive_int("num_classes", self.num_classes, minimum=0)
        check_positive_int("width", self.width)
        check_positive_int("depth", self.depth)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("time_embedding", self.time_embedding, TIME_EMBEDDINGS)
        check_positive_int("time_embed_dim", self.time_embed_dim)
        _check_bool("layer_norm", self.layer_norm)
        _check_bool("residual", self.residual)


@dataclass
class ResNetConfig:
    r"""Configuration of :class:`~ecnf.nets.ResNetVelocity`, the ResNet-enhanced baseline.

    Arguments:
        data_shape: The shape :math:`D` of one sample (images are flattened).
        width: The width of the residual stream.
        num_blocks: The number of residual blocks.
        activation: The activation, one of :data:`~ecnf.nets.ACTIVATIONS`.
        time_embedding: The time embedding, one of :py:`"linear"`, :py:`"sinusoidal"` or
            :py:`"fourier"`.
        time_embed_dim: The dimension :math:`E` of the time embedding.
        mean_flow: Whether the network also takes the end :math:`r` of a time interval (see
            :class:`MLPConfig`).
        num_classes: The number of class labels (0: unconditional; see :class:`MLPConfig`).

    Example:
        >>> ResNetConfig(num_blocks=2).arch
        'resnet'
    """

    arch: ClassVar[str] = "resnet"

    data_shape: tuple[int, ...] = (2,)
    width: int = 256
    num_blocks: int = 4
    activation: str = "silu"
    time_embedding: str = "sinusoidal"
    time_embed_dim: int = 64
    mean_flow: bool = False
    num_classes: int = 0

    def __post_init__(self):
        self.data_shape = _check_shape("data_shape", self.data_shape)
        _check_bool("mean_flow", self.mean_flow)
        check_positive_int("num_classes", self.num_classes, minimum=0)
        check_positive_int("width", self.width)
        check_positive_int("num_blocks", self.num_blocks)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("time_embedding", self.time_embedding, TIME_EMBEDDINGS)
        check_positive_int("time_embed_dim", self.time_embed_dim)


@dataclass
class UNetConfig:
    r"""Configuration of :class:`~ecnf.nets.UNet`, a convolutional velocity network.

    The defaults train on a CPU for 28 x 28 images. For CIFAR-10, the usual DDPM / I-CFM
    size is :py:`channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2`, with
    attention at level 1 (16 x 16) and :py:`dropout=0.1`.

    Arguments:
        data_shape: The image shape :math:`(C, H, W)`.
        channels: The number of channels at full resolution.
        channel_mult: The channel multiplier of each level; level :math:`l` works at
            resolution :math:`\lceil H / 2^l \rceil`.
        num_res_blocks: The number of residual blocks per level on the way down (one more
            on the way up).
        attention_levels: The levels with self-attention after every residual block
            (0 is full resolution, 1 half resolution, ...).
        mid_attention: Whether to apply self-attention in the middle (lowest) block.
        num_heads: The number of attention heads; must divide the channels of every
            attention level.
        dropout: The dropout probability inside residual blocks, in :math:`[0, 1)`.
        time_embed_dim: The dimension :math:`E` of the time embedding. If :py:`None`,
            use :py:`4 * channels`.
        mean_flow: Whether the network also takes the end :math:`r` of a time interval (see
            :class:`MLPConfig`).
        num_classes: The number of class labels (0: unconditional; see :class:`MLPConfig`).

    Example:
        >>> UNetConfig(data_shape=(3, 32, 32), channel_mult=[1, 2]).channel_mult
        (1, 2)
    """

    arch: ClassVar[str] = "unet"

    data_shape: tuple[int, ...] = (1, 28, 28)
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (1,)
    mid_attention: bool = True
    num_heads: int = 4
    dropout: float = 0.0
    time_embed_dim: int | None = None
    mean_flow: bool = False
    num_classes: int = 0

    def __post_init__(self):
        self.data_shape = _check_shape("data_shape", self.data_shape)
        _check_bool("mean_flow", self.mean_flow)
        check_positive_int("num_classes", self.num_classes, minimum=0)
        if len(self.data_shape) != 3:
            raise ValueError(
                f"data_shape must be an image shape (C, H, W), got {self.data_shape!r}"
            )

        check_positive_int("channels", self.channels)

        self.channel_mult = mult = _check_shape("channel_mult", self.channel_mult)

        check_positive_int("num_res_blocks", self.num_res_blocks)

        levels = self.attention_levels
        levels = tuple(levels) if isinstance(levels, list | tuple) else levels
        if not isinstance(levels, tuple) or not all(
            isinstance(level, int) and not isinstance(level, bool) and 0 <= level < len(mult)
            for level in levels
        ):
            raise ValueError(
                f"attention_levels must be a tuple of level indices in "
                f"[0, {len(mult) - 1}], got {self.attention_levels!r}"
            )
        self.attention_levels = levels

        _check_bool("mid_attention", self.mid_attention)
        check_positive_int("num_heads", self.num_heads)

        attended = [self.channels * mult[level] for level in levels]
        if self.mid_attention:
            attended.append(self.channels * mult[-1])
        for ch in attended:
            if ch % self.num_heads != 0:
                raise ValueError(
                    f"num_heads must divide the channels of every attention level, got "
                    f"num_heads={self.num_heads} for {ch} channels"
                )

        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, int | float)
            or not 0 <= self.dropout < 1
        ):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)

        if self.time_embed_dim is not None:
            check_positive_int("time_embed_dim", self.time_embed_dim)


ModelConfig = MLPConfig | ResNetConfig | UNetConfig | TorchCFMUNetConfig

_CONFIGS: dict[str, type[ModelConfig]] = {
    MLPConfig.arch: MLPConfig,
    ResNetConfig.arch: ResNetConfig,
    UNetConfig.arch: UNetConfig,
    TorchCFMUNetConfig.arch: TorchCFMUNetConfig,  # imported checkpoints (ecnf.importers)
}

_MODELS: dict[type[ModelConfig], type[nn.Module]] = {
    MLPConfig: VelocityMLP,
    ResNetConfig: ResNetVelocity,
    UNetConfig: UNet,
    TorchCFMUNetConfig: TorchCFMUNet,
}


def build_model(config: ModelConfig) -> nn.Module:
    r"""Builds the velocity network described by a configuration.

    Arguments:
        config: A :class:`MLPConfig`, :class:`ResNetConfig` or :class:`UNetConfig`.

    Returns:
        The network, which keeps :py:`config` as its :py:`config` attribute.

    Example:
        >>> import torch
        >>> model = build_model(MLPConfig(data_shape=(2,), width=32))
        >>> model(torch.randn(5, 2), torch.rand(5)).shape
        torch.Size([5, 2])
    """

    model = _MODELS.get(type(config))
    if model is None:
        raise ValueError(
            f"config must be one of {tuple(c.__name__ for c in _MODELS)}, "
            f"got {type(config).__name__}"
        )
    return model(config)


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    r"""Converts a configuration to a JSON-serialisable dictionary.

    Tuples become lists and the architecture name is stored under :py:`"arch"`, so that
    :py:`json.loads(json.dumps(d)) == d`.

    Arguments:
        config: A :class:`MLPConfig`, :class:`ResNetConfig` or :class:`UNetConfig`.

    Example:
        >>> config_to_dict(ResNetConfig(width=8, num_blocks=1))["arch"]
        'resnet'
    """

    if type(config) not in _MODELS:
        raise ValueError(
            f"config must be one of {tuple(c.__name__ for c in _MODELS)}, "
            f"got {type(config).__name__}"
        )

    d: dict[str, Any] = {"arch": config.arch}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        d[field.name] = list(value) if isinstance(value, tuple) else value
    return d


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    r"""Rebuilds a configuration from :func:`config_to_dict`'s output.

    Arguments:
        d: A dictionary with an :py:`"arch"` key (:py:`"mlp"`, :py:`"resnet"` or
            :py:`"unet"`) and fields of the corresponding configuration.

    Example:
        >>> config_from_dict({"arch": "mlp", "data_shape": [2], "width": 16})
        MLPConfig(data_shape=(2,), width=16, depth=3, activation='silu', time_embedding='linear', time_embed_dim=64, layer_norm=False, residual=False, mean_flow=False, num_classes=0)
    """  # noqa: E501

    d = dict(d)
    arch = d.pop("arch", None)

    check_choice("arch", arch, tuple(_CONFIGS))

    cls = _CONFIGS[arch]
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)

    if unknown:
        raise ValueError(
            f"unknown keys {unknown} for arch {arch!r}; allowed keys are {sorted(names)}"
        )

    return cls(**d)
