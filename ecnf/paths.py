r"""Probability paths between noise and data.

The linear (rectified-flow / I-CFM) path joins a noise sample :math:`x_0` and a data sample
:math:`x_1`:

.. math:: x_t = (1 - t)\, x_0 + t\, x_1 + \sigma \varepsilon, \qquad u_t = x_1 - x_0,

with :math:`\varepsilon \sim \mathcal{N}(0, I)` and :math:`\sigma \ge 0` a small constant
(Tong et al. 2023, arXiv:2302.00482; Lipman et al. 2022, arXiv:2210.02747). The
conditional target velocity :math:`u_t` is what flow matching regresses on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_same_shape

__all__ = [
    "PathSample",
    "expand_t",
    "linear_path",
    "marginal_log_prob",
    "marginal_velocity",
    "posterior_mean",
    "sample_t",
]


@dataclass
class PathSample:
    """A point on the path and its target velocity.

    Attributes:
        x0: noise samples, shape ``(B, *dims)``.
        x1: data samples, shape ``(B, *dims)``.
        t: times, shape ``(B,)``.
        xt: points on the path at ``t``, shape ``(B, *dims)``.
        ut: conditional target velocity at ``xt``, shape ``(B, *dims)``.
    """

    x0: Tensor
    x1: Tensor
    t: Tensor
    xt: Tensor
    ut: Tensor


def expand_t(t: Tensor, x: Tensor) -> Tensor:
    """Reshape times of shape ``(B,)`` to ``(B, 1, ..., 1)`` so they broadcast against ``x``."""
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def sample_t(batch: int, *, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Times drawn uniformly from ``[0, 1)``, shape ``(batch,)``, on ``like``'s device/dtype."""
    return torch.rand(batch, device=like.device, dtype=like.dtype, generator=generator)


def linear_path(
    x0: Tensor,
    x1: Tensor,
    t: Tensor | None = None,
    *,
    sigma: float = 0.0,
    generator: torch.Generator | None = None,
) -> PathSample:
    r"""Sample :math:`x_t = (1 - t) x_0 + t x_1 + \sigma\varepsilon` and :math:`u_t = x_1 - x_0`.

    Arguments:
        x0: noise, shape ``(B, *dims)``.
        x1: data, shape ``(B, *dims)``.
        t: times in ``[0, 1]``, shape ``(B,)``; drawn uniformly when ``None``.
        sigma: standard deviation of the Gaussian tube around the straight line.
        generator: random generator for ``t`` and the noise.

    Example:
        >>> x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
        >>> s = linear_path(x0, x1, torch.full((4,), 0.25))
        >>> s.xt[0].tolist(), s.ut[0].tolist()
        ([0.25, 0.25], [1.0, 1.0])
    """
    check_same_shape("x0", x0, "x1", x1)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    if t is None:
        t = sample_t(x0.shape[0], like=x0, generator=generator)
    elif t.shape != (x0.shape[0],):
        raise ValueError(f"t must have shape ({x0.shape[0]},), got {tuple(t.shape)}")
    ut = x1 - x0
    xt = torch.addcmul(x0, expand_t(t, x0), ut)  # x0 + t (x1 - x0), one fused kernel
    if sigma > 0:
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        xt = torch.add(xt, noise, alpha=sigma)
    return PathSample(x0=x0, x1=x1, t=t, xt=xt, ut=ut)


# ---------------------------------------------------------------------------------------
# The marginal field of an empirical data set, in closed form
# ---------------------------------------------------------------------------------------
#
# With x0 ~ N(0, I) independent of x1, the path above gives, for each data point x1_j,
# x_t | x1_j ~ N(t x1_j, s_t^2 I) with s_t^2 = (1 - t)^2 + sigma^2. For data made of points
# x1_1..x1_M (each with weight 1/M) every marginal quantity is a softmax-weighted average over
# the points, with weights w_j(x) proportional to N(x; t x1_j, s_t^2 I).


def _marginal_inputs(x: Tensor, t: float | Tensor, data: Tensor, sigma: float):
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    if data.ndim < 2 or data.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"data must have shape (M, {', '.join(map(str, x.shape[1:]))}) like x's points, "
            f"got {tuple(data.shape)}"
        )
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a number or have shape ({x.shape[0]},), got {tuple(t.shape)}")
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError("t must lie in [0, 1]")
    var = (1 - t) ** 2 + sigma**2
    if bool((var <= 0).any()):
        raise ValueError("at t = 1 with sigma = 0 the marginal field is singular: use t < 1")
    flat_x, flat_data = x.flatten(1), data.flatten(1).to(x)
    # squared distances |x - t x1_j|^2, shape (B, M)
    d2 = (flat_x[:, None, :] - t[:, None, None] * flat_data[None]).pow(2).sum(-1)
    log_w = torch.log_softmax(-d2 / (2 * var[:, None]), dim=1)
    return t, var, flat_x, flat_data, d2, log_w


def posterior_mean(x: Tensor, t: float | Tensor, data: Tensor, *, sigma: float = 0.0) -> Tensor:
    r""":math:`\mathbb{E}[x_1 \mid x_t = x]` when the data are the points ``data``.

    The weights :math:`w_j(x) \propto \mathcal{N}(x;\, t x_1^j, s_t^2 I)`,
    :math:`s_t^2 = (1 - t)^2 + \sigma^2`, are the posterior probabilities that the path through
    ``x`` at time ``t`` ends at data point :math:`j`.

    Arguments:
        x: points, shape ``(B, *dims)``.
        t: a time in ``[0, 1]``, or one per point (shape ``(B,)``).
        data: the data set, shape ``(M, *dims)``.
        sigma: the path's ``sigma`` (see :func:`linear_path`).

    Example:
        >>> data = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
        >>> posterior_mean(torch.tensor([[0.0, 0.0]]), 0.5, data).tolist()
        [[0.0, 0.0]]
    """
    *_, flat_data, _, log_w = _marginal_inputs(x, t, data, sigma)
    return (log_w.exp() @ flat_data).reshape(x.shape)


def marginal_velocity(x: Tensor, t: float | Tensor, data: Tensor, *, sigma: float = 0.0) -> Tensor:
    r"""The marginal velocity :math:`v^\star(x, t) = \mathbb{E}[x_1 - x_0 \mid x_t = x]`.

    This is the field that flow matching's loss is minimised by, for independent pairs of
    standard normal noise and the points ``data``. Given the data point :math:`x_1^j`,
    :math:`\mathbb{E}[x_1 - x_0 \mid x_t = x, x_1^j] = x_1^j - (1 - t)(x - t x_1^j) / s_t^2`,
    which is :math:`(x_1^j - x) / (1 - t)` for ``sigma = 0``; the marginal is its average
    under the weights of :func:`posterior_mean`.

    Arguments: as :func:`posterior_mean`.

    Example:
        >>> data = torch.tensor([[2.0, 0.0]])
        >>> marginal_velocity(torch.tensor([[0.5, 0.0]]), 0.5, data).tolist()
        [[3.0, 0.0]]
    """
    t, var, flat_x, flat_data, _, log_w = _marginal_inputs(x, t, data, sigma)
    w = log_w.exp()
    mean_x1 = w @ flat_data
    v = mean_x1 - ((1 - t) / var)[:, None] * (flat_x - t[:, None] * mean_x1)
    return v.reshape(x.shape)


def marginal_log_prob(x: Tensor, t: float | Tensor, data: Tensor, *, sigma: float = 0.0) -> Tensor:
    r""":math:`\log p_t(x)`, the density of :math:`x_t`: a mixture of the Gaussians
    :math:`\mathcal{N}(t x_1^j, s_t^2 I)` with equal weights. Its gradient in ``x`` is the
    score :math:`\nabla \log p_t`.

    Arguments: as :func:`posterior_mean`. Returns shape ``(B,)``.
    """
    _, var, flat_x, flat_data, d2, _ = _marginal_inputs(x, t, data, sigma)
    dims, count = flat_x.shape[1], flat_data.shape[0]
    log_normal = -d2 / (2 * var[:, None]) - 0.5 * dims * torch.log(2 * math.pi * var)[:, None]
    return torch.logsumexp(log_normal, dim=1) - math.log(count)
