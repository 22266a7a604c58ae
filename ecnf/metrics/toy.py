r"""Sample-quality metrics for 2D data: exact Wasserstein-2 and kernel MMD.

Both compare generated samples with fresh samples of the target; the same metric between two
independent batches of real data is the floor a perfect model would reach at that sample
size, and should be reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_finite
from ..couplings import solve_assignment

__all__ = ["mmd2", "wasserstein2"]


def wasserstein2(x: Tensor, y: Tensor) -> float:
    r"""Exact Wasserstein-2 distance between two equal-size empirical measures.

    .. math:: W_2 = \Big(\min_\pi \frac1n \sum_i \lVert x_i - y_{\pi(i)} \rVert^2\Big)^{1/2}

    With uniform weights and equal sizes an optimal plan is a permutation, so the exact
    assignment (``solver="exact"`` of :func:`ecnf.couplings.solve_assignment`, not the
    faster auction that training uses) gives the exact discrete optimum (the value POT's
    ``emd2`` returns).

    Example:
        >>> x = torch.randn(100, 2)
        >>> round(wasserstein2(x, x + torch.tensor([3.0, 4.0])), 6)
        5.0
    """
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    check_finite("x", x)
    check_finite("y", y)
    a, b = x.flatten(1).double(), y.flatten(1).double()
    cost = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").pow(2).cpu().numpy()
    cols = solve_assignment(cost, dims=a.shape[1], solver="exact")
    return float(cost[np.arange(len(cols)), cols].mean() ** 0.5)


def mmd2(x: Tensor, y: Tensor, bandwidths: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    r"""Unbiased squared maximum mean discrepancy with a sum of Gaussian kernels.

    .. math:: k(a, b) = \sum_s \exp\!\big(-\lVert a - b\rVert^2 / (2 s^2)\big)

    (Gretton et al. 2012, JMLR 13). Can be slightly negative when the measures agree.
    """
    check_finite("x", x)
    check_finite("y", y)
    x, y = x.flatten(1).double(), y.flatten(1).double()
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("mmd2 needs at least 2 samples on each side")

    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * s * s)) for s in bandwidths)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())
