"""The auction solver: within its tolerance of SciPy's exact optimum on easy and hard costs."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from ecnf import _auction
from ecnf._auction import AUCTION_TOL, auction_assignment
from ecnf.couplings import solve_assignment
from ecnf.data.stream import make_stream


def _sq_dists(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _cases():
    rng = np.random.default_rng(0)
    moons = make_stream("moons", seed=0).next_batch(512).double().numpy()
    grid = np.stack(np.meshgrid(np.arange(16.0), np.arange(8.0)), -1).reshape(-1, 2)
    return {
        "gaussian to moons, 512": _sq_dists(rng.normal(size=(512, 2)), moons),
        "uniform random costs": rng.random((300, 300)),
        "64-dim images": _sq_dists(rng.normal(size=(128, 64)), rng.random((128, 64))),
        "8 distinct targets": _sq_dists(
            rng.normal(size=(256, 2)), np.repeat(rng.normal(size=(8, 2)), 32, axis=0)
        ),
        "integer points, many ties": _sq_dists(
            rng.integers(0, 3, (200, 2)).astype(float), rng.integers(0, 3, (200, 2)) * 1.0
        ),
        "grid onto its transpose": _sq_dists(grid, grid[:, ::-1] * 2.0),
        "far from the origin": _sq_dists(
            rng.normal(size=(100, 2)) + 1e6, rng.normal(size=(100, 2)) + 1e6
        ),
        "tiny scale": _sq_dists(rng.normal(size=(100, 2)) * 1e-7, rng.normal(size=(100, 2)) * 1e-7),
        "negative costs": -rng.random((50, 50)) * 1e3,
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_auction_is_within_its_tolerance_of_the_exact_optimum(name):
    cost = _cases()[name]
    n = cost.shape[0]
    cols = auction_assignment(cost)
    assert cols is not None
    assert np.array_equal(np.sort(cols), np.arange(n))
    rows, best = linear_sum_assignment(cost)
    optimum = cost[rows, best].sum()
    reduced = cost - cost.min(1, keepdims=True)
    spread = (reduced - reduced.min(0, keepdims=True)).max()
    excess = cost[np.arange(n), cols].sum() - optimum
    # The bound is tol * spread; summing n float64 costs adds rounding of its own.
    rounding = 4 * n * np.spacing(np.abs(cost).max())
    assert excess <= AUCTION_TOL * spread + rounding


def test_generic_costs_give_the_unique_optimal_permutation():
    rng = np.random.default_rng(3)
    for n in (2, 3, 17, 256):
        cost = _sq_dists(rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) * 2 + 1)
        assert np.array_equal(auction_assignment(cost), linear_sum_assignment(cost)[1])


def test_degenerate_sizes_and_constant_costs():
    assert auction_assignment(np.zeros((0, 0))).tolist() == []
    assert auction_assignment(np.array([[5.0]])).tolist() == [0]
    # a rank-one sum c_ij = a_i + b_j: every permutation is optimal
    cost = np.add.outer(np.arange(6.0), np.arange(6.0) * 3)
    assert sorted(auction_assignment(cost).tolist()) == list(range(6))


def test_an_exhausted_bid_budget_falls_back_to_the_exact_solver(monkeypatch):
    cost = _cases()["gaussian to moons, 512"][:64, :64]
    monkeypatch.setattr(_auction, "_BIDS_PER_ROW", 0)
    monkeypatch.setattr(_auction, "_BIDS_EXTRA", 10)
    assert auction_assignment(cost) is None
    for solver in ("auto", "auction"):
        cols = solve_assignment(cost, dims=2, solver=solver)
        assert np.array_equal(cols, linear_sum_assignment(cost)[1])


def test_the_compiled_kernel_releases_the_gil():
    # The background OT solvers of ecnf.prefetch.CoupledBatches rely on this.
    assert _auction.have_auction()
    assert _auction._kernel().targetoptions["nogil"] is True


def test_auto_coupling_uses_the_auction(monkeypatch):
    calls = []
    real = _auction.auction_assignment

    def spy(cost, **kw):
        calls.append(cost.shape)
        return real(cost, **kw)

    monkeypatch.setattr("ecnf.couplings.auction_assignment", spy)
    from ecnf.couplings import ot_assignment

    ot_assignment(torch.randn(32, 2), torch.randn(32, 2))
    assert calls == [(32, 32)]
