r"""Couplings of noise and data minibatches.

The independent coupling pairs :math:`x_0^i` with :math:`x_1^i` as drawn. The minibatch
optimal-transport coupling (OT-CFM; Tong et al. 2023, arXiv:2302.00482; Pooladian et al.
2023, arXiv:2304.14772) re-pairs the batch with the permutation that minimises

.. math:: \sum_i \lVert x_0^i - x_1^{\pi(i)} \rVert_2^2 .

Between two uniform empirical measures of equal size an optimal plan can always be taken to
be a permutation (Birkhoff-von Neumann), so the exact assignment solved here is the exact
discrete OT plan. Works on any tensor shape: samples are flattened to vectors.

Three solvers are offered. The default is an auction with epsilon scaling (Bertsekas 1988;
:mod:`ecnf._auction`), compiled with Numba, whose permutation costs at most ``1e-9`` times the
range of the cost matrix more than the optimum, so optimal up to float64 rounding; on
minibatches of 512 points it is several times faster than the two exact solvers, the shortest
augmenting path of SciPy's ``linear_sum_assignment`` (Crouse 2016) and the network simplex of
POT's ``ot.emd`` (Bonneel et al. 2011). Without Numba, or in the rare case where the auction's
prices do not settle within its bid budget, ``auto`` falls back to whichever of the exact two
suits the batch.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ._auction import auction_assignment
from ._checks import check_choice, check_same_shape

__all__ = [
    "COUPLINGS",
    "OT_SOLVERS",
    "couple",
    "independent_coupling",
    "ot_assignment",
    "ot_coupling",
    "pairing_cost",
    "solve_assignment",
]

COUPLINGS = ("independent", "ot")
#: Assignment solvers of :func:`ot_assignment` (``auto``: the auction, else ``exact``).
OT_SOLVERS = ("auto", "exact", "auction", "hungarian", "network_simplex")


def pairing_cost(x0: Tensor, x1: Tensor) -> Tensor:
    r"""Mean squared distance of the pairs, :math:`\frac1B\sum_i\lVert x_0^i-x_1^i\rVert^2`."""
    check_same_shape("x0", x0, "x1", x1)
    return (x0 - x1).flatten(1).pow(2).sum(1).mean()


def ot_assignment(x0: Tensor, x1: Tensor, *, solver: str = "auto") -> Tensor:
    r"""Permutation ``perm`` minimising :math:`\sum_i \lVert x_0^i - x_1^{perm[i]}\rVert^2`.

    Arguments:
        x0: shape ``(B, *dims)``.
        x1: shape ``(B, *dims)``.
        solver: ``auction`` (compiled auction, optimal to ``1e-9`` of the cost range),
            ``hungarian`` (SciPy's ``linear_sum_assignment``), ``network_simplex`` (POT's
            ``ot.emd``), ``exact``: the network simplex for batches of at least
            :data:`NETWORK_SIMPLEX_MIN_BATCH` points of at most 2 dimensions (when POT is
            installed), the Hungarian solver otherwise; or ``auto``: the auction, falling
            back to ``exact``. ``auction`` and ``network_simplex`` fall back to the
            Hungarian solver when they cannot answer.

    Returns:
        A ``LongTensor`` of shape ``(B,)`` on ``x1``'s device.

    Example:
        >>> x0 = torch.tensor([[0.0], [10.0]])
        >>> x1 = torch.tensor([[9.0], [1.0]])
        >>> ot_assignment(x0, x1).tolist()
        [1, 0]
    """
    check_same_shape("x0", x0, "x1", x1)
    check_choice("solver", solver, OT_SOLVERS)
    a, b = x0.detach().flatten(1), x1.detach().flatten(1)
    # ||a||^2 + ||b||^2 - 2 a.b in float64 on the CPU: exact enough to rank assignments.
    cost = torch.cdist(a.double(), b.double()).pow(2).cpu().numpy()
    if not np.isfinite(cost).all():
        raise ValueError("x0 and x1 must be finite to compute an OT coupling")
    cols = solve_assignment(cost, dims=a.shape[1], solver=solver)
    return torch.as_tensor(cols, device=x1.device, dtype=torch.long)


def solve_assignment(cost: np.ndarray, *, dims: int, solver: str = "auto") -> np.ndarray:
    """Columns ``cols`` of a minimum-cost perfect matching ``i -> cols[i]`` of a square cost
    matrix between samples of ``dims`` dimensions (``solver`` as in :func:`ot_assignment`).
    """
    check_choice("solver", solver, OT_SOLVERS)
    cols = None
    if solver in ("auto", "auction"):
        cols = auction_assignment(cost)
    if cols is None and solver in ("auto", "exact"):
        small = dims <= 2 and cost.shape[0] >= NETWORK_SIMPLEX_MIN_BATCH
        solver = "network_simplex" if small and _has_pot() else "hungarian"
    if cols is None and solver == "network_simplex":
        cols = _network_simplex(cost)
    if cols is None:
        _, cols = linear_sum_assignment(cost)
    return cols


#: Smallest batch for which ``exact`` prefers the network simplex on 1D and 2D samples.
NETWORK_SIMPLEX_MIN_BATCH = 256


def _has_pot() -> bool:
    try:
        import ot  # noqa: F401
    except ImportError:
        return False
    return True


def _network_simplex(cost: np.ndarray) -> np.ndarray | None:
    """The optimal permutation from POT's exact solver, or None if it did not converge.

    Between uniform marginals of equal size an optimal vertex of the transport polytope is
    a permutation matrix scaled by ``1/B``, so each row holds one non-zero entry.
    """
    import ot

    n = cost.shape[0]
    weights = np.full(n, 1.0 / n)
    plan, log = ot.emd(weights, weights, cost, numItermax=max(100_000, 50 * n * n), log=True)
    cols = plan.argmax(axis=1)
    if log.get("warning") or np.bincount(cols, minlength=n).max() != 1:
        return None
    return cols


def independent_coupling(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs as drawn: returns ``(x0, x1)`` unchanged."""
    check_same_shape("x0", x0, "x1", x1)
    return x0, x1


def ot_coupling(
    x0: Tensor, x1: Tensor, *, solver: str = "auto", labels: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Minibatch exact OT pairing: returns ``(x0, x1[perm])`` with :func:`ot_assignment`.

    With ``labels`` (the class of each ``x1``, shape ``(B,)``) the pairing is solved within
    each class: the data of class :math:`c` is re-paired, by exact OT, with the noise at the
    same places in the batch. ``perm`` then maps each class onto itself, so ``labels`` stay
    those of ``x1[perm]``, and the noise paired with each class is still an independent draw
    of the source: what a class-conditional flow, started from that source, must be
    trained on. (One OT over the whole batch would hand each class the noise nearest to it.)

    Example:
        >>> x0 = torch.tensor([[0.0], [10.0], [2.0], [8.0]])
        >>> x1 = torch.tensor([[9.0], [1.0], [8.0], [2.0]])
        >>> ot_coupling(x0, x1)[1].flatten().tolist()
        [1.0, 9.0, 2.0, 8.0]
        >>> ot_coupling(x0, x1, labels=torch.tensor([0, 0, 1, 2]))[1].flatten().tolist()
        [1.0, 9.0, 8.0, 2.0]
    """
    if labels is None:
        return x0, x1[ot_assignment(x0, x1, solver=solver)]
    check_same_shape("x0", x0, "x1", x1)
    if labels.shape != (x1.shape[0],):
        raise ValueError(f"labels must have shape ({x1.shape[0]},), got {tuple(labels.shape)}")
    perm = torch.arange(x1.shape[0], device=x1.device)
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten().to(x1.device)
        if members.numel() > 1:
            perm[members] = members[ot_assignment(x0[members], x1[members], solver=solver)]
    return x0, x1[perm]


def couple(
    x0: Tensor, x1: Tensor, coupling: str = "independent", *, labels: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Apply the coupling named ``coupling`` (one of :data:`COUPLINGS`); ``labels``, the
    classes of ``x1``, keep OT within each class (see :func:`ot_coupling`)."""
    check_choice("coupling", coupling, COUPLINGS)
    if coupling == "ot":
        return ot_coupling(x0, x1, labels=labels)
    return independent_coupling(x0, x1)
