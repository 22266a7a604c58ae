r"""Activation functions, including the seed paper's adaptive (dynamically switched) one."""

__all__ = [
    "ACTIVATIONS",
    "AdaptiveActivation",
    "get_activation",
]

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice

ACTIVATIONS = ("silu", "relu", "tanh", "gelu", "adaptive")


class AdaptiveActivation(nn.Module):
    r"""Creates a learnable softmax-weighted mix of SiLU, ReLU and Tanh.

    This is the seed paper's "dynamic switching" of activations, made differentiable:

    .. math:: \phi(x) = \sum_{k=1}^3 \operatorname{softmax}(w)_k \, \phi_k(x)

    with :math:`(\phi_1, \phi_2, \phi_3) = (\operatorname{SiLU}, \operatorname{ReLU},
    \tanh)` and logits :math:`w \in \mathbb{R}^3` initialised to zero (an equal mix).
    Each instance has its own logits, so every layer learns its own mix.

    References:
        | Enhanced Continuous Normalizing Flows (the seed paper of this project).

    Example:
        >>> act = AdaptiveActivation()
        >>> act.weights
        tensor([0.3333, 0.3333, 0.3333], grad_fn=<SoftmaxBackward0>)
        >>> act(torch.zeros(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self):
        super().__init__()

        self.logits = nn.Parameter(torch.zeros(3))

    @property
    def weights(self) -> Tensor:
        r"""The mixing weights :math:`\operatorname{softmax}(w)`, with shape :math:`(3,)`."""

        return torch.softmax(self.logits, dim=0)

    def forward(self, x: Tensor) -> Tensor:
        r"""
        Arguments:
            x: The pre-activations, with any shape.

        Returns:
            The activations :math:`\phi(x)`, with the shape of :py:`x`.
        """

        w = self.weights.to(x)
        return w[0] * F.silu(x) + w[1] * F.relu(x) + w[2] * torch.tanh(x)


def get_activation(name: str) -> nn.Module:
    r"""Returns a fresh activation module by name.

    Arguments:
        name: The activation, one of :py:`"silu"`, :py:`"relu"`, :py:`"tanh"`,
            :py:`"gelu"` or :py:`"adaptive"` (see :class:`AdaptiveActivation`).

    Example:
        >>> get_activation("silu")
        SiLU()
    """

    check_choice("activation", name, ACTIVATIONS)

    if name == "silu":
        return nn.SiLU()
    elif name == "relu":
        return nn.ReLU()
    elif name == "tanh":
        return nn.Tanh()
    elif name == "gelu":
        return nn.GELU()
    else:
        return AdaptiveActivation()
