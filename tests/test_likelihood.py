"""Likelihoods: divergence against autograd, Hutchinson's mean, closed forms, normalisation."""

import math

import pytest
import torch
from torch import nn

from ecnf.likelihood import (
    bits_per_dim,
    dequantize,
    divergence_exact,
    divergence_hutchinson,
    log_prob,
    sample_probes,
    standard_normal_log_prob,
)


class TimeMLP(nn.Module):
    def __init__(self, dim=3, width=32, scale=1.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, width), nn.Tanh(), nn.Linear(width, dim))
        with torch.no_grad():
            self.net[2].weight.mul_(scale)

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], 1))


def test_exact_divergence_is_jacobian_trace():
    torch.manual_seed(0)
    net = TimeMLP().double()
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64)
    v, div = divergence_exact(net, x, t)
    torch.testing.assert_close(v, net(x, t))
    for i in range(6):
        jac = torch.autograd.functional.jacobian(lambda y, i=i: net(y[None], t[i : i + 1])[0], x[i])
        torch.testing.assert_close(div[i], torch.trace(jac))


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_mean_matches_exact(kind):
    torch.manual_seed(1)
    net = TimeMLP(dim=4).double()
    x = torch.randn(1, 4, dtype=torch.float64).expand(4000, 4).contiguous()
    t = torch.full((4000,), 0.3, dtype=torch.float64)
    _, exact = divergence_exact(net, x[:1], t[:1])
    probes = sample_probes(1, x, kind, torch.Generator().manual_seed(2))
    _, est = divergence_hutchinson(net, x, t, probes)  # 4000 independent one-probe estimates
    stderr = est.std() / math.sqrt(len(est))
    assert abs(est.mean() - exact[0]) < 4 * stderr  # unbiased: within 4 standard errors
    assert est.std() > 0  # a genuinely random estimator on a non-diagonal Jacobian


def test_rademacher_is_exact_for_diagonal_jacobian():
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    x = torch.randn(10, 3, dtype=torch.float64)
    t = torch.zeros(10, dtype=torch.float64)
    probes = sample_probes(3, x, "rademacher")
    _, div = divergence_hutchinson(lambda y, s: a * y, x, t, probes)
    torch.testing.assert_close(div, torch.full((10,), a.sum().item(), dtype=torch.float64))


def linear_field_log_prob(a, x1):
    """x_t = exp(tA) x0 with x0 ~ N(0, I): x1 ~ N(0, S), S = exp(A) exp(A)^T."""
    m = torch.linalg.matrix_exp(a)
    cov = m @ m.T
    dist = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=a.dtype), cov)
    return dist.log_prob(x1)


A = torch.tensor([[0.3, -0.8], [0.5, -0.2]], dtype=torch.float64)


@pytest.mark.parametrize(
    ("method", "divergence"),
    [("rk4", "exact"), ("dopri5", "exact"), ("heun", "exact"), ("rk4", "hutchinson")],
)
def test_linear_field_closed_form(method, divergence):
    torch.manual_seed(3)
    x1 = torch.randn(50, 2, dtype=torch.float64) * 1.5
    res = log_prob(
        lambda x, t: x @ A.T,
        x1,
        method=method,
        steps=40,
        divergence=divergence,
        num_probes=4,
        rtol=1e-9,
        atol=1e-9,
    )
    expected = linear_field_log_prob(A, x1)
    if divergence == "exact":
        tol = 1e-6 if method != "heun" else 1e-3
        torch.testing.assert_close(res.log_prob, expected, atol=tol, rtol=0)
    else:  # each point gets an unbiased estimate of -tr(A) = -0.1: check the batch mean
        assert abs((res.log_prob - expected).mean()) < 0.05
    # x0 is the exact pre-image exp(-A) x1
    back = x1 @ torch.linalg.matrix_exp(-A).T
    torch.testing.assert_close(res.x0, back, atol=1e-3 if method == "heun" else 1e-6, rtol=0)
    assert res.nfe > 0


def test_zero_field_gives_source_density():
    x1 = torch.randn(7, 1, 2, 2)
    res = log_prob(lambda x, t: torch.zeros_like(x), x1, steps=2)
    torch.testing.assert_close(res.log_prob, standard_normal_log_prob(x1))
    assert res.nfe == 8


def test_density_of_a_random_flow_integrates_to_one():
    torch.manual_seed(4)
    net = TimeMLP(dim=2, width=16, scale=0.5).double()
    n = 80
    g = torch.linspace(-7, 7, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    res = log_prob(net, pts, steps=12)
    mass = res.log_prob.exp().sum() * (g[1] - g[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=5e-3)
    assert (res.log_prob - standard_normal_log_prob(pts)).abs().max() > 0.05  # not a no-op


def test_bits_per_dim_of_uniform_density_is_eight():
    d = 12
    lp = torch.full((3,), d * math.log(0.5))  # uniform on [-1, 1]^d
    torch.testing.assert_close(bits_per_dim(lp, d), torch.full((3,), 8.0))
    assert bits_per_dim(torch.tensor([0.0]), 1, num_bins=2, data_range=2.0).item() == 0.0


def test_dequantize_stays_in_its_bin():
    levels = torch.arange(256, dtype=torch.float64)
    x = levels / 255 * 2 - 1  # ToTensor + Normalize(0.5) of every 8-bit level
    y = dequantize(x.repeat(20), torch.Generator().manual_seed(0))
    assert y.min() >= -1 and y.max() < 1
    torch.testing.assert_close(((y + 1) / 2 * 256).floor(), levels.repeat(20))
    assert y.unique().numel() > 256


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"divergence": "stochastic"}, "divergence"),
        ({"divergence": "hutchinson", "probe": "uniform"}, "probe"),
        ({"divergence": "hutchinson", "num_probes": 0}, "num_probes"),
        ({"method": "magic"}, "method"),
        ({"steps": 0}, "steps"),
    ],
)
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        log_prob(lambda x, t: x, torch.zeros(2, 2), **kwargs)


def test_nan_data_refused():
    with pytest.raises(ValueError, match="x1"):
        log_prob(lambda x, t: x, torch.tensor([[float("nan"), 0.0]]))


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_differentiable_log_prob_has_the_finite_difference_gradient(divergence):
    """Maximum-likelihood training differentiates the solve: check it against central
    differences in float64, parameter by parameter."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()

    def velocity(x, t):
        return net(torch.cat([x, t[:, None]], 1))

    x1 = torch.randn(6, 2, dtype=torch.float64)

    def objective():
        g = torch.Generator().manual_seed(3)
        return log_prob(
            velocity, x1, method="rk4", steps=3, divergence=divergence, generator=g,
            differentiable=True,
        ).log_prob.mean()  # fmt: skip

    loss = objective()
    loss.backward()
    weight = net[0].weight
    for index in [(0, 0), (3, 1), (7, 2)]:
        saved = weight.data[index].item()
        with torch.no_grad():
            weight.data[index] = saved + 1e-6
            up = objective().item()
            weight.data[index] = saved - 1e-6
            down = objective().item()
            weight.data[index] = saved
        numeric = (up - down) / 2e-6
        assert weight.grad[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_log_prob_is_detached_unless_asked():
    net = torch.nn.Linear(2, 2)
    result = log_prob(lambda x, t: net(x), torch.randn(3, 2), steps=2)
    assert not result.log_prob.requires_grad
