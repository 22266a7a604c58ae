r"""Linear assignment by the auction algorithm with epsilon scaling, compiled with Numba.

Bertsekas's auction (Ann. Oper. Res. 14, 1988) treats the columns of a cost matrix as
objects with prices :math:`p_j`. An unassigned row ``i`` bids for the column minimising
:math:`c_{ij} + p_j`, raising its price by the gap to the second best plus :math:`\varepsilon`,
and takes it from its previous holder. When every row holds a column, each holds one within
:math:`\varepsilon` of its best (:math:`\varepsilon`-complementary slackness), so the
assignment costs at most :math:`n\varepsilon` more than the optimum. Solving a sequence of
auctions with shrinking :math:`\varepsilon` and kept prices (Bertsekas and Eckstein 1988)
keeps the number of bids small.

Here the last :math:`\varepsilon` is ``tol * (cost range) / n``, so the assignment's total
cost is within ``tol`` times the range of the (row- and column-reduced) cost matrix of the
optimum: with the default ``tol = 1e-9`` it is optimal up to float64 rounding of typical
minibatch costs. Each bid scans one row, so a bid costs :math:`O(n)` and the whole solve
depends on how many bids the prices need; on minibatches of 2D points it is several times
faster than SciPy's shortest augmenting path and POT's network simplex (see
``benchmarks/RESULTS.md``). The compiled kernel releases the GIL.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

__all__ = ["AUCTION_TOL", "auction_assignment", "have_auction"]

#: Default bound on the assignment's excess cost, as a fraction of the cost range.
AUCTION_TOL = 1e-9
#: Shrink factor of epsilon between auctions, and the first epsilon as a part of the range.
_SHRINK, _FIRST = 8.0, 1.0 / 64.0
#: Bids allowed, per row and in all, before giving up (the caller then uses another solver).
_BIDS_PER_ROW, _BIDS_EXTRA = 2000, 100_000


@functools.cache
def have_auction() -> bool:
    """Whether the compiled auction solver is available (Numba installed)."""
    return importlib.util.find_spec("numba") is not None


def _bid_rounds(cost, eps_last, eps, shrink, max_bids):  # pragma: no cover - compiled
    n = cost.shape[0]
    price = np.zeros(n)
    holder = np.full(n, -1, np.int64)
    held = np.full(n, -1, np.int64)
    waiting = np.empty(n, np.int64)
    bids = 0
    while True:
        holder[:] = -1
        top = 0
        for i in range(n - 1, -1, -1):
            held[i] = -1
            waiting[top] = i
            top += 1
        while top > 0:
            top -= 1
            i = waiting[top]
            row = cost[i]
            best, second, pick = np.inf, np.inf, 0
            for j in range(n):
                value = row[j] + price[j]
                if value < second:
                    if value < best:
                        second, best, pick = best, value, j
                    else:
                        second = value
            price[pick] += second - best + eps
            bids += 1
            if bids > max_bids:
                return held, False
            outbid = holder[pick]
            holder[pick] = i
            held[i] = pick
            if outbid >= 0:
                held[outbid] = -1
                waiting[top] = outbid
                top += 1
        if eps <= eps_last:
            return held, True
        eps = max(eps / shrink, eps_last)


@functools.cache
def _kernel():
    """``_bid_rounds`` compiled (imported lazily: Numba adds a quarter second to start-up)."""
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(_bid_rounds)
    except RuntimeError:  # no writable place for the cache: compile in every process
        return numba.njit(nogil=True)(_bid_rounds)


def auction_assignment(cost: np.ndarray, *, tol: float = AUCTION_TOL) -> np.ndarray | None:
    """Columns ``cols`` of a minimum-cost perfect matching ``i -> cols[i]`` of a square,
    finite cost matrix, within ``tol`` times the cost range of the optimum (or within 64
    float64 spacings of the range per row, if that is larger: only past ~70,000 rows).

    Returns ``None`` when Numba is missing or the prices did not settle within the bid budget
    (ties in their thousands can do that); the caller then solves the assignment otherwise.
    """
    if not have_auction():
        return None
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[0]
    if n < 2:
        return np.arange(n)
    # Subtracting a row's or a column's least cost changes every assignment's total equally.
    cost = cost - cost.min(axis=1, keepdims=True)
    cost = np.ascontiguousarray(cost - cost.min(axis=0, keepdims=True))
    spread = float(cost.max())
    if spread == 0.0:
        return np.arange(n)  # every assignment costs the same
    # The last epsilon must stay above the rounding of prices of order `spread`.
    eps_last = max(tol * spread / n, 64 * float(np.spacing(spread)))
    budget = _BIDS_PER_ROW * n + _BIDS_EXTRA
    cols, settled = _kernel()(cost, eps_last, spread * _FIRST, _SHRINK, budget)
    return cols if settled else None
