r"""Probability paths between noise and data.

The linear (rectified-flow / I-CFM) path joins a noise sample :math:`x_0` and a data sample
:math:`x_1`:

.. math:: x_t = (1 - t)\, x_0 + t\, x_1 + \sigma \varepsilon, \qquad u_t = x_1 - x_0,

with :math:`\varepsilon \sim \mathcal{N}(0, I)` and :math:`\sigma \ge 0` a small constant
(Tong et al. 2023, arXiv:2302.00482; Lipman et al. 2022, arXiv:2210.02747). The
conditional target velocity :math:`u_t` is what flow matching regresses on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_same_shape

__all__ = ["PathSample", "expand_t", "linear_path", "sample_t"]


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
