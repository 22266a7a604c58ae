r"""Velocity networks :math:`v_\theta(x, t)` and their building blocks.

Every network follows one contract: :py:`forward(x, t) -> v` with :py:`x` of shape
:math:`(B, *D)`, :py:`t` of shape :math:`(B,)` (or a scalar, broadcast to the batch) and
:py:`v` of the shape of :py:`x`. Each network keeps its configuration as :py:`config`.
"""

__all__ = [
    "ACTIVATIONS",
    "TIME_EMBEDDINGS",
    "AdaptiveActivation",
    "FourierTimeEmbedding",
    "LinearTimeEmbedding",
    "MLPConfig",
    "ModelConfig",
    "ResNetConfig",
    "ResNetVelocity",
    "SinusoidalTimeEmbedding",
    "TorchCFMUNet",
    "TorchCFMUNetConfig",
    "UNet",
    "UNetConfig",
    "VelocityMLP",
    "build_model",
    "build_time_embedding",
    "config_from_dict",
    "config_to_dict",
    "get_activation",
    "prepare_inputs",
]

from .activations import ACTIVATIONS, AdaptiveActivation, get_activation
from .config import (
    MLPConfig,
    ModelConfig,
    ResNetConfig,
    UNetConfig,
    build_model,
    config_from_dict,
    config_to_dict,
)
from .embeddings import (
    TIME_EMBEDDINGS,
    FourierTimeEmbedding,
    LinearTimeEmbedding,
    SinusoidalTimeEmbedding,
    build_time_embedding,
    prepare_inputs,
)
from .mlp import ResNetVelocity, VelocityMLP
from .torchcfm import TorchCFMUNet, TorchCFMUNetConfig
from .unet import UNet
