"""The marginal field of an empirical data set: its closed forms agree with the definitions.

``marginal_velocity`` must be what flow matching's loss is minimised by (its residual is
orthogonal to functions of ``x_t``, by Monte Carlo), ``posterior_mean`` must be the predicted
endpoint of that field, and the score of ``marginal_log_prob`` must give the same field through the
Gaussian-path identity ``v* = (x + (1 - t) grad log p_t) / t``.
"""

import math

import pytest
import torch

from ecnf import linear_path, marginal_log_prob, marginal_velocity, posterior_mean

DATA = torch.tensor([[1.5, 0.0], [-1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)


def path_samples(t, data, sigma, n=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x1 = data[torch.randint(len(data), (n,), generator=g)]
    x0 = torch.randn(n, 2, dtype=torch.float64, generator=g)
    return linear_path(x0, x1, torch.full((n,), t, dtype=torch.float64), sigma=sigma, generator=g)


def perturbations(x):
    """A few fields g(x) to perturb the velocity with."""
    return [
        torch.ones_like(x),
        x,
        torch.stack([x[:, 1] ** 2, torch.sin(3 * x[:, 0])], 1),
        torch.stack([torch.tanh(x.sum(1)), x[:, 0] * x[:, 1]], 1),
    ]


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_marginal_velocity_minimises_the_flow_matching_loss(sigma):
    """The minimiser of E|v(x_t) - u_t|^2 is the conditional expectation of u_t given x_t: the
    residual u_t - v*(x_t) is orthogonal to every function of x_t."""
    for t in (0.3, 0.8):
        path = path_samples(t, DATA, sigma)
        residual = path.ut - marginal_velocity(path.xt, t, DATA, sigma=sigma)
        for g in perturbations(path.xt):
            products = (residual * g).sum(1)
            mean, error = products.mean(), products.std() / math.sqrt(len(products))
            assert abs(mean) < 4.5 * error, (t, mean.item(), error.item())
        # and a field that is not the conditional expectation is not orthogonal
        wrong = path.ut - marginal_velocity(path.xt, t, DATA, sigma=sigma + 0.5)
        products = (wrong * path.xt).sum(1)
        assert abs(products.mean()) > 10 * products.std() / math.sqrt(len(products))


def test_predicted_endpoint_of_the_marginal_field_is_the_posterior_mean():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 2, dtype=torch.float64, generator=g)
    for t in (0.0, 0.25, 0.9):
        endpoint = x + (1 - t) * marginal_velocity(x, t, DATA)
        assert torch.allclose(endpoint, posterior_mean(x, t, DATA), atol=1e-12)


def test_at_time_zero_the_field_points_to_the_data_mean():
    x = torch.randn(10, 2, dtype=torch.float64)
    v0 = marginal_velocity(x, 0.0, DATA)
    assert torch.allclose(v0, DATA.mean(0) - x, atol=1e-12)


def test_score_identity_for_the_gaussian_path():
    x = torch.randn(20, 2, dtype=torch.float64, requires_grad=True)
    for t in (0.2, 0.7):
        (score,) = torch.autograd.grad(marginal_log_prob(x, t, DATA).sum(), x)
        from_score = (x + (1 - t) * score) / t
        assert torch.allclose(from_score, marginal_velocity(x, t, DATA), atol=1e-10)


def test_marginal_density_is_normalised_and_starts_as_the_noise():
    side = torch.linspace(-7, 7, 281, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)
    cell = (side[1] - side[0]) ** 2
    for t in (0.0, 0.5):
        mass = marginal_log_prob(grid, t, DATA).exp().sum() * cell
        assert abs(mass.item() - 1) < 1e-6
    normal = -0.5 * grid.pow(2).sum(1) - math.log(2 * math.pi)
    assert torch.allclose(marginal_log_prob(grid, 0.0, DATA), normal, atol=1e-12)


def test_marginal_functions_name_bad_input():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="singular"):
        marginal_velocity(x, 1.0, DATA.float())
    with pytest.raises(ValueError, match=r"data must have shape \(M, 2\)"):
        marginal_velocity(x, 0.5, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        posterior_mean(x, 1.5, DATA.float())
    with pytest.raises(ValueError, match="sigma"):
        marginal_log_prob(x, 0.5, DATA.float(), sigma=-1.0)
