"""ecnf_display.labs: straightness of trajectories and repeated Hutchinson estimates."""

import math

import pytest
import torch

from ecnf import integrate, log_prob
from ecnf_display.labs import chord_deviation, repeated_log_prob, straightness


def test_a_straight_constant_speed_flow_has_straightness_one_and_deviation_zero():
    x0 = torch.randn(50, 3, dtype=torch.float64)
    direction = torch.randn(50, 3, dtype=torch.float64)
    sol = integrate(lambda x, t: direction, x0, method="euler", steps=7, return_trajectory=True)
    assert torch.allclose(straightness(sol.trajectory), torch.ones(50, dtype=torch.float64))
    assert chord_deviation(sol.trajectory, sol.times).abs().max() < 1e-12


def test_a_quarter_circle_has_length_pi_over_two_times_the_chord():
    t = torch.linspace(0, math.pi / 2, 2001, dtype=torch.float64)
    arc = torch.stack([t.cos(), t.sin()], dim=-1)[:, None]  # (T, 1, 2)
    expected = (math.pi / 2) / math.sqrt(2)
    assert straightness(arc).item() == pytest.approx(expected, rel=1e-6)
    assert chord_deviation(arc, t).item() > 0.1


def test_straight_but_uneven_speed_deviates_from_the_chord():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    path = (t**2)[:, None, None] * torch.ones(1, 1, 2, dtype=torch.float64)
    assert straightness(path).item() == pytest.approx(1.0)
    assert chord_deviation(path, t).item() > 0.05


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="trajectory"):
        straightness(torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="times"):
        chord_deviation(torch.zeros(4, 3, 2), torch.zeros(4))


def test_repeated_estimates_are_independent_and_centred_on_the_exact_value():
    torch.manual_seed(0)
    a = torch.tensor([[0.5, 0.3], [-0.2, 0.1]], dtype=torch.float64)

    def velocity(x, t):
        return x @ a.T

    x1 = torch.randn(4, 2, dtype=torch.float64)
    exact = log_prob(velocity, x1, steps=8).log_prob
    est, nfe = repeated_log_prob(velocity, x1, 400, steps=8, seed=1)
    assert est.shape == (400, 4) and nfe == 32
    assert est.std(0).min() > 0  # the probes differ between rows
    assert torch.allclose(est.mean(0), exact, atol=4 * est.std(0).max().item() / 20)
    again, _ = repeated_log_prob(velocity, x1, 400, steps=8, seed=1)
    assert torch.equal(est, again)
