"""Minibatch OT coupling: optimal (against POT), never worse than independent, any shape."""

import ot
import pytest
import torch

from ecnf.couplings import couple, ot_assignment, ot_coupling, pairing_cost


@pytest.mark.parametrize("shape", [(2,), (5,), (1, 4, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ot_cost_is_pot_optimum_and_beats_independent(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(40, *shape, generator=g, dtype=torch.float64)
    x1 = torch.randn(40, *shape, generator=g, dtype=torch.float64) * 1.5 + 0.5
    a, b = ot_coupling(x0, x1)
    assert torch.equal(a, x0)
    cost = pairing_cost(a, b).item()
    m = torch.cdist(x0.flatten(1), x1.flatten(1)).pow(2).numpy()
    w = torch.full((40,), 1 / 40, dtype=torch.float64).numpy()
    assert cost == pytest.approx(ot.emd2(w, w, m), rel=1e-9)
    assert cost <= pairing_cost(x0, x1).item() + 1e-12


def test_assignment_is_a_permutation_and_monotone_in_1d():
    x0 = torch.randn(100, 1)
    x1 = torch.randn(100, 1) * 3
    perm = ot_assignment(x0, x1)
    assert torch.equal(perm.sort().values, torch.arange(100))
    # in 1D the optimal map is monotone: rank of x0[i] equals rank of x1[perm[i]]
    paired = x1[perm]
    assert torch.equal(x0[:, 0].argsort(), paired[:, 0].argsort())


def test_couple_by_name():
    x0, x1 = torch.randn(8, 2), torch.randn(8, 2)
    assert couple(x0, x1, "independent")[1] is x1
    assert pairing_cost(*couple(x0, x1, "ot")) <= pairing_cost(x0, x1)
    with pytest.raises(ValueError, match="coupling"):
        couple(x0, x1, "sinkhorn")
    with pytest.raises(ValueError, match="x0 and x1"):
        ot_assignment(torch.zeros(8, 2), torch.zeros(8, 3))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_every_solver_reaches_the_same_optimal_cost(dim):
    g = torch.Generator().manual_seed(dim)
    x0 = torch.randn(300, dim, generator=g, dtype=torch.float64)
    x1 = torch.rand(300, dim, generator=g, dtype=torch.float64) * 4 - 2
    costs = {}
    for solver in ("auto", "exact", "auction", "hungarian", "network_simplex"):
        perm = ot_assignment(x0, x1, solver=solver)
        assert torch.equal(perm.sort().values, torch.arange(300))
        costs[solver] = pairing_cost(x0, x1[perm]).item()
    assert costs["auto"] == costs["auction"]
    # the auction's bound: 1e-9 of the largest pair cost in total, i.e. per pair on average
    spread = torch.cdist(x0, x1).pow(2).max().item()
    assert costs["auction"] <= costs["hungarian"] + 1e-9 * spread / 300 + 1e-12
    assert costs["network_simplex"] == pytest.approx(costs["hungarian"], rel=1e-12)
    assert costs["exact"] == pytest.approx(costs["hungarian"], rel=1e-12)


def test_unknown_solver_is_named():
    with pytest.raises(ValueError, match="solver"):
        ot_assignment(torch.zeros(4, 2), torch.zeros(4, 2), solver="sinkhorn")
