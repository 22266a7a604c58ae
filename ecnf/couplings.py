r"""Couplings of noise and data minibatches.

The independent coupling pairs :math:`x_0^i` with :math:`x_1^i` as drawn. The minibatch
optimal-transport coupling (OT-CFM; Tong et al. 2023, arXiv:2302.00482; Pooladian et al.
2023, arXiv:2304.14772) re-pairs the batch with the permutation that minimises

.. math:: \sum_i \lVert x_0^i - x_1^{\pi(i)} \rVert_2^2 .

Between two uniform empirical measures of equal size an optimal plan can always be taken to
be a permutation (Birkhoff-von Neumann), so the exact assignment solved here is the exact
discrete OT plan. Works on any tensor shape: samples are flattened to vectors.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ._checks import check_choice, check_same_shape

__all__ = [
    "COUPLINGS",
    "couple",
    "independent_coupling",
    "ot_assignment",
    "ot_coupling",
    "pairing_cost",
]

COUPLINGS = ("independent", "ot")


def pairing_cost(x0: Tensor, x1: Tensor) -> Tensor:
    r"""Mean squared distance of the pairs, :math:`\frac1B\sum_i\lVert x_0^i-x_1^i\rVert^2`."""
    check_same_shape("x0", x0, "x1", x1)
    return (x0 - x1).flatten(1).pow(2).sum(1).mean()


def ot_assignment(x0: Tensor, x1: Tensor) -> Tensor:
    r"""Permutation ``perm`` minimising :math:`\sum_i \lVert x_0^i - x_1^{perm[i]}\rVert^2`.

    Arguments:
        x0: shape ``(B, *dims)``.
        x1: shape ``(B, *dims)``.

    Returns:
        A ``LongTensor`` of shape ``(B,)`` on ``x1``'s device.

    Example:
        >>> x0 = torch.tensor([[0.0], [10.0]])
        >>> x1 = torch.tensor([[9.0], [1.0]])
        >>> ot_assignment(x0, x1).tolist()
        [1, 0]
    """
    check_same_shape("x0", x0, "x1", x1)
    a, b = x0.detach().flatten(1), x1.detach().flatten(1)
    # ||a||^2 + ||b||^2 - 2 a.b in float64 on the CPU: exact enough to rank assignments.
    cost = torch.cdist(a.double(), b.double()).pow(2).cpu().numpy()
    if not np.isfinite(cost).all():
        raise ValueError("x0 and x1 must be finite to compute an OT coupling")
    _, cols = linear_sum_assignment(cost)
    return torch.as_tensor(cols, device=x1.device, dtype=torch.long)


def independent_coupling(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs as drawn: returns ``(x0, x1)`` unchanged."""
    check_same_shape("x0", x0, "x1", x1)
    return x0, x1


def ot_coupling(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Minibatch exact OT pairing: returns ``(x0, x1[perm])`` with :func:`ot_assignment`."""
    return x0, x1[ot_assignment(x0, x1)]


def couple(x0: Tensor, x1: Tensor, coupling: str = "independent") -> tuple[Tensor, Tensor]:
    """Apply the coupling named ``coupling`` (one of :data:`COUPLINGS`)."""
    check_choice("coupling", coupling, COUPLINGS)
    if coupling == "ot":
        return ot_coupling(x0, x1)
    return independent_coupling(x0, x1)
