r"""Time embeddings :math:`e(t)` for velocity networks, and the time-input contract.

Every embedding maps times :math:`t \in [0, 1]` of shape :math:`(B,)` to features of
shape :math:`(B, E)`.
"""

__all__ = [
    "TIME_EMBEDDINGS",
    "FourierTimeEmbedding",
    "LinearTimeEmbedding",
    "SinusoidalTimeEmbedding",
    "build_time_embedding",
    "prepare_inputs",
]

import math

import torch
import torch.nn as nn
from torch import Tensor

from .._checks import check_choice

TIME_EMBEDDINGS = ("linear", "sinusoidal", "fourier")


def _sin_cos(angles: Tensor, dim: int) -> Tensor:
    r"""Concatenates sines and cosines of `angles` (B, dim // 2), zero-padded to (B, dim)."""

    features = torch.cat((torch.sin(angles), torch.cos(angles)), dim=-1)
    if dim % 2 == 1:
        features = nn.functional.pad(features, (0, 1))
    return features


class LinearTimeEmbedding(nn.Module):
    r"""Creates the linear time embedding of the seed paper (eq. 1).

    .. math:: e(t) = \operatorname{SiLU}(W t + b)

    with :math:`W \in \mathbb{R}^{E \times 1}` and :math:`b \in \mathbb{R}^E`.

    References:
        | Enhanced Continuous Normalizing Flows (the seed paper of this project), eq. 1.

    Arguments:
        dim: The embedding dimension :math:`E`.

    Example:
        >>> embed = LinearTimeEmbedding(16)
        >>> embed(torch.rand(8)).shape
        torch.Size([8, 16])
    """

    def __init__(self, dim: int):
        super().__init__()

        self.dim = dim
        self.linear = nn.Linear(1, dim)
        self.activation = nn.SiLU()

    def forward(self, t: Tensor) -> Tensor:
        r"""
        Arguments:
            t: The times, with shape :math:`(B,)`.

        Returns:
            The embeddings :math:`e(t)`, with shape :math:`(B, E)`.
        """

        return self.activation(self.linear(t.unsqueeze(-1)))  # (B, E)


class SinusoidalTimeEmbedding(nn.Module):
    r"""Creates a sinusoidal time embedding followed by a two-layer MLP.

    The times are first scaled by ``scale``, by default 1000, the conventional number of
    diffusion steps, so that :math:`t \in [0, 1]` spans the same range of angles as integer
    DDPM timesteps (MeanFlow networks use :data:`MEAN_FLOW_TIME_SCALE`).
    With :math:`H = \lfloor E / 2 \rfloor` frequencies
    :math:`\omega_k = P^{-k / H}` for a maximal period :math:`P`,

    .. math:: \gamma(t) = \big(\sin(1000\,\omega_k t), \cos(1000\,\omega_k t)\big)_{k < H}

    and :math:`e(t) = W_2 \operatorname{SiLU}(W_1 \gamma(t) + b_1) + b_2`. Over
    :math:`t \in [0, 1]`, the fastest feature turns through 1000 radians (about 160
    periods) and the slowest through about :math:`1000 / P` radians, as in DDPM.

    References:
        | Attention Is All You Need (Vaswani et al., 2017)
        | https://arxiv.org/abs/1706.03762

        | Denoising Diffusion Probabilistic Models (Ho et al., 2020)
        | https://arxiv.org/abs/2006.11239

    Arguments:
        dim: The embedding dimension :math:`E` (also the number of sinusoidal features).
        hidden: The hidden width of the MLP. If :py:`None`, use :py:`dim`.
        max_period: The maximal period :math:`P` of the sinusoidal features.
        scale: The factor on the times (1000 in the formula above).

    Example:
        >>> embed = SinusoidalTimeEmbedding(32)
        >>> embed(torch.rand(8)).shape
        torch.Size([8, 32])
    """

    def __init__(
        self,
        dim: int,
        hidden: int | None = None,
        max_period: float = 10000.0,
        scale: float = 1000.0,
    ):
        super().__init__()
        self.scale = scale

        hidden = dim if hidden is None else hidden
        half = dim // 2
        exponents = torch.arange(half, dtype=torch.float32) / max(half, 1)

        self.dim = dim
        self.register_buffer("frequencies", torch.exp(-math.log(max_period) * exponents))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, t: Tensor) -> Tensor:
        r"""
        Arguments:
            t: The times, with shape :math:`(B,)`.

        Returns:
            The embeddings :math:`e(t)`, with shape :math:`(B, E)`.
        """

        angles = self.scale * t.unsqueeze(-1) * self.frequencies.to(t)  # (B, E // 2)
        return self.mlp(_sin_cos(angles, self.dim))  # (B, E)


class FourierTimeEmbedding(nn.Module):
    r"""Creates a random Fourier feature time embedding followed by a two-layer MLP.

    With fixed (not trained) frequencies :math:`b_k \sim \mathcal{N}(0, \sigma^2)`,

    .. math:: \gamma(t) = \big(\sin(2 \pi b_k t), \cos(2 \pi b_k t)\big)_{k < E / 2}

    and :math:`e(t) = W_2 \operatorname{SiLU}(W_1 \gamma(t) + b_1) + b_2`. The
    frequencies are a persistent buffer, so they are saved in and restored from the
    state dict.

    References:
        | Fourier Features Let Networks Learn High Frequency Functions in Low
        | Dimensional Domains (Tancik et al., 2020)
        | https://arxiv.org/abs/2006.10739

    Arguments:
        dim: The embedding dimension :math:`E` (also the number of Fourier features).
        scale: The standard deviation :math:`\sigma` of the frequencies.

    Example:
        >>> embed = FourierTimeEmbedding(32)
        >>> embed(torch.rand(8)).shape
        torch.Size([8, 32])
    """

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()

        self.dim = dim
        self.register_buffer("frequencies", scale * torch.randn(dim // 2))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        r"""
        Arguments:
            t: The times, with shape :math:`(B,)`.

        Returns:
            The embeddings :math:`e(t)`, with shape :math:`(B, E)`.
        """

        angles = 2 * math.pi * t.unsqueeze(-1) * self.frequencies.to(t)  # (B, E // 2)
        return self.mlp(_sin_cos(angles, self.dim))  # (B, E)


#: The scale of the sinusoidal time features of MeanFlow networks (1000 for the others). The
#: MeanFlow target differentiates the network in time, and the conventional scale of 1000 makes
#: that derivative a thousand times the rate of the fastest feature: on 8x8 digits the loss
#: then grows from the first iterations, where with 20 it falls.
MEAN_FLOW_TIME_SCALE = 20.0


def build_time_embedding(kind: str, dim: int, *, mean_flow: bool = False) -> nn.Module:
    r"""Builds a time embedding by name.

    Arguments:
        kind: The embedding, one of :py:`"linear"`, :py:`"sinusoidal"` or :py:`"fourier"`.
        dim: The embedding dimension :math:`E`.
        mean_flow: For a MeanFlow network: sinusoidal features at
            :data:`MEAN_FLOW_TIME_SCALE` instead of 1000.

    Returns:
        A module mapping times :math:`(B,)` to embeddings :math:`(B, E)`.

    Example:
        >>> embed = build_time_embedding("fourier", 16)
        >>> embed(torch.rand(4)).shape
        torch.Size([4, 16])
    """

    check_choice("time_embedding", kind, TIME_EMBEDDINGS)

    if kind == "linear":
        return LinearTimeEmbedding(dim)
    elif kind == "sinusoidal":
        return SinusoidalTimeEmbedding(dim, scale=MEAN_FLOW_TIME_SCALE if mean_flow else 1000.0)
    else:
        return FourierTimeEmbedding(dim)


def prepare_inputs(x: Tensor, t: Tensor | float, data_shape: tuple[int, ...]) -> Tensor:
    r"""Checks the inputs of a velocity network and broadcasts the time to shape :math:`(B,)`.

    A 0-dimensional (or Python scalar) time is broadcast as
    :py:`t * x.new_ones(x.shape[0])`. The time is cast to the dtype of :py:`x`.

    Arguments:
        x: The states, with shape :math:`(B, *D)`.
        t: The times, with shape :math:`()` or :math:`(B,)`.
        data_shape: The expected data shape :math:`D`.

    Returns:
        The times, with shape :math:`(B,)`.

    Example:
        >>> prepare_inputs(torch.randn(3, 2), torch.tensor(0.5), (2,))
        tensor([0.5000, 0.5000, 0.5000])
    """

    data_shape = tuple(data_shape)

    if x.ndim != len(data_shape) + 1 or tuple(x.shape[1:]) != data_shape:
        raise ValueError(
            f"x must have shape (B, {', '.join(map(str, data_shape))}) for data_shape "
            f"{data_shape}, got {tuple(x.shape)}"
        )

    t = torch.as_tensor(t, device=x.device).to(dtype=x.dtype)

    if t.ndim == 0:
        t = t * x.new_ones(x.shape[0])
    elif tuple(t.shape) != (x.shape[0],):
        raise ValueError(
            f"t must have shape () or (B,) = ({x.shape[0]},) to match x, got {tuple(t.shape)}"
        )

    return t  # (B,)


def embed_times(
    module: nn.Module,
    x: Tensor,
    t: Tensor | float,
    r: Tensor | float | None,
    y: Tensor | None = None,
) -> Tensor:
    r"""The time embedding of a velocity network, with the interval of a MeanFlow network
    and the label of a class-conditional one.

    For a network built with ``mean_flow=True`` the embedding is
    :math:`e(t) + e'(r - t)`, from its ``time_embedding`` and ``interval_embedding``
    (``r`` defaults to ``t``: the instantaneous velocity). Any other network refuses an ``r``.
    A network with ``num_classes > 0`` adds its ``label_embedding`` of ``y`` (the null
    label ``num_classes`` where ``y`` is None); any other network refuses a ``y``.

    Arguments:
        module: The network; it has ``config.data_shape`` and ``time_embedding``.
        x: The states, with shape :math:`(B, *D)`.
        t: The times, with shape :math:`()` or :math:`(B,)`.
        r: The ends of the intervals (same shapes as ``t``), or :py:`None`.
        y: Integer class labels, with shape :math:`()` or :math:`(B,)`, or :py:`None`.

    Returns:
        The embedding, with shape :math:`(B, E)`.
    """

    t = prepare_inputs(x, t, module.config.data_shape)  # (B,)
    e = module.time_embedding(t)  # (B, E)
    if getattr(module.config, "mean_flow", False):
        r = t if r is None else prepare_inputs(x, r, module.config.data_shape)
        e = e + module.interval_embedding(r - t)
    elif r is not None:
        raise ValueError(
            f"this {type(module).__name__} takes one time; an average velocity over [t, r] "
            "needs a network built with mean_flow=True (trained with the meanflow loss)"
        )
    num_classes = getattr(module.config, "num_classes", 0)
    if num_classes:
        return e + module.label_embedding(prepare_labels(x, y, num_classes))
    if y is not None:
        raise ValueError(
            f"this {type(module).__name__} is unconditional and takes no labels; build it "
            "with num_classes > 0 (train --num-classes) to condition on a class"
        )
    return e


def build_label_embedding(num_classes: int, dim: int) -> nn.Embedding | None:
    """The label embedding of a conditional network: ``num_classes`` labels and the null
    label, zero at initialisation (so the network starts unconditional); None for 0."""
    if not num_classes:
        return None
    embedding = nn.Embedding(num_classes + 1, dim)
    nn.init.zeros_(embedding.weight)
    return embedding


def prepare_labels(x: Tensor, y: Tensor | int | None, num_classes: int) -> Tensor:
    """``y`` as a ``(B,)`` long tensor on ``x``'s device; None is the null label.

    Example:
        >>> prepare_labels(torch.zeros(3, 2), None, 10).tolist()
        [10, 10, 10]
        >>> prepare_labels(torch.zeros(2, 2), 4, 10).tolist()
        [4, 4]
    """
    batch = x.shape[0]
    if y is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=x.device)
    y = torch.as_tensor(y, device=x.device)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.long()
    if y.dim() == 0:
        y = y.expand(batch)
    if y.shape != (batch,):
        raise ValueError(f"labels must have shape () or ({batch},), got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}, or be the null label {num_classes}; "
            f"got values in {int(y.min())}..{int(y.max())}"
        )
    return y
