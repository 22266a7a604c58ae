"""ODE samplers: convergence orders, agreement with torchdiffeq, reversibility, bookkeeping."""

import math

import numpy as np
import pytest
import torch
from torchdiffeq import odeint

from ecnf.solvers import ADAPTIVE_METHODS, FIXED_METHODS, integrate, time_grid

LAM = -1.3
EXPECTED_ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def linear(x, t):
    assert t.shape == (x.shape[0],)
    return LAM * x


def nonlinear(x, t):
    """A time-dependent, non-linear field with bounded solutions on [0, 1]."""
    return torch.sin(3 * t).view(-1, *([1] * (x.ndim - 1))) * x - 0.5 * x**3 + torch.cos(x)


class Counter:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.f(x, t)


@pytest.mark.parametrize("method", list(FIXED_METHODS))
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_order_of_convergence(method, direction):
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    t0, t1 = (0.0, 1.0) if direction == "forward" else (1.0, 0.0)
    exact = x0 * math.exp(LAM * (t1 - t0))
    steps = [8, 16, 32, 64]
    errors = [
        (integrate(linear, x0, method=method, steps=n, t0=t0, t1=t1).x - exact).abs().max()
        for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log([float(e) for e in errors]), 1)[0]
    assert abs(slope - EXPECTED_ORDER[method]) < 0.15, (method, slope)


@pytest.mark.parametrize(
    ("ours", "theirs", "atol"),
    [
        ("euler", "euler", 1e-12),
        ("midpoint", "midpoint", 1e-12),
        ("heun", "heun2", 1e-12),
        ("rk4", "rk4", 1e-6),
    ],  # torchdiffeq's rk4 is the 3/8 rule: same order, not same bits
)
def test_agrees_with_torchdiffeq_on_same_grid(ours, theirs, atol):
    torch.manual_seed(0)
    x0 = torch.randn(5, 3, dtype=torch.float64)
    grid = torch.linspace(0.0, 1.0, 41, dtype=torch.float64) ** 1.5  # a non-uniform grid
    sol = integrate(nonlinear, x0, method=ours, times=grid, return_trajectory=True)
    ref = odeint(lambda t, x: nonlinear(x, t * x.new_ones(x.shape[0])), x0, grid, method=theirs)
    torch.testing.assert_close(sol.trajectory, ref, atol=atol, rtol=0)


@pytest.mark.parametrize("method", list(FIXED_METHODS))
def test_nfe_and_trajectory_bookkeeping(method):
    x0 = torch.randn(4, 1, 3, 3)
    f = Counter(nonlinear)
    seen = []
    sol = integrate(
        f,
        x0,
        method=method,
        steps=7,
        return_trajectory=True,
        callback=lambda i, t, x: seen.append((i, t)),
    )
    assert sol.nfe == f.calls == 7 * FIXED_METHODS[method]
    assert sol.trajectory.shape == (8, 4, 1, 3, 3)
    assert torch.equal(sol.trajectory[0], x0)
    assert torch.equal(sol.trajectory[-1], sol.x)
    assert [i for i, _ in seen] == list(range(8))
    assert seen[-1][1] == pytest.approx(1.0)
    torch.testing.assert_close(sol.times, time_grid(7))


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_forward_then_backward_returns_start(method):
    torch.manual_seed(1)
    x0 = torch.randn(16, 2, dtype=torch.float64)
    kw = {"steps": 200} if method == "rk4" else {"rtol": 1e-9, "atol": 1e-9}
    x1 = integrate(nonlinear, x0, method=method, **kw).x
    back = integrate(nonlinear, x1, method=method, t0=1.0, t1=0.0, **kw).x
    assert not torch.allclose(x1, x0, atol=1e-2)
    torch.testing.assert_close(back, x0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_accuracy_and_counted_nfe(method):
    x0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    f = Counter(linear)
    sol = integrate(f, x0, method=method, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(sol.x, x0 * math.exp(LAM), atol=1e-5, rtol=0)
    assert sol.nfe == f.calls > 0
    loose = integrate(linear, x0, method=method, rtol=1e-3, atol=1e-3)
    assert loose.nfe <= sol.nfe


def test_adaptive_trajectory_on_requested_times():
    x0 = torch.ones(3, 2, dtype=torch.float64)
    sol = integrate(
        linear, x0, method="dopri5", steps=4, return_trajectory=True, rtol=1e-9, atol=1e-9
    )
    assert sol.trajectory.shape == (5, 3, 2)
    expected = torch.exp(LAM * time_grid(4, dtype=torch.float64))
    torch.testing.assert_close(sol.trajectory[:, 0, 0], expected, atol=1e-7, rtol=0)


def test_no_gradient_unless_asked():
    net = torch.nn.Linear(2, 2)

    def v(x, t):
        return net(x)

    x0 = torch.randn(8, 2)
    assert not integrate(v, x0, steps=3).x.requires_grad
    out = integrate(v, x0, steps=3, grad=True).x
    out.sum().backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"method": "leapfrog"}, "method"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"times": [0.0, 0.5, 0.2]}, "times"),
        ({"times": [0.0]}, "times"),
        ({"method": "dopri5", "rtol": 0.0}, "rtol"),
        ({"steps": 3, "times": [0.0, 1.0]}, "steps or times"),
    ],
)
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        integrate(linear, torch.ones(2, 2), **kwargs)


def test_nan_input_is_refused():
    x0 = torch.ones(2, 2)
    x0[1, 0] = float("nan")
    with pytest.raises(ValueError, match="x0"):
        integrate(linear, x0, steps=2)


@pytest.mark.parametrize("bad", [[float("inf"), -float("inf")], [float("-inf"), 1.0]])
def test_infinite_input_is_refused(bad):
    x0 = torch.tensor([bad, [1.0, 2.0]])
    with pytest.raises(ValueError, match=r"x0 contains [12] NaN"):
        integrate(linear, x0, steps=2)


def test_huge_finite_input_is_accepted():
    # the sum of these values overflows float32; every element is still finite
    x0 = torch.full((4, 2), 3e38)
    sol = integrate(lambda x, t: torch.zeros_like(x), x0, method="euler", steps=1)
    assert torch.equal(sol.x, x0)


@pytest.mark.parametrize("t0, t1, steps", [(0.0, 1.0, 3), (1.0, 0.0, 10), (0.2, 0.7, 1)])
def test_fixed_grid_is_uniform_and_ends_exactly(t0, t1, steps):
    seen = []
    sol = integrate(
        linear,
        torch.ones(2, 2),
        method="euler",
        steps=steps,
        t0=t0,
        t1=t1,
        callback=lambda i, t, x: seen.append(t),
    )
    assert seen[0] == t0 and seen[-1] == t1
    assert seen == pytest.approx([t0 + (t1 - t0) * i / steps for i in range(steps + 1)])
    torch.testing.assert_close(sol.times, time_grid(steps, t0, t1))
    assert sol.times.dtype == torch.float32


@pytest.mark.parametrize("method", list(FIXED_METHODS))
def test_python_float_times_are_stepped_along_as_given(method):
    # a slice-by-slice solve along uniform_grid is bit for bit the solve with steps
    from ecnf.solvers import uniform_grid

    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    whole = integrate(nonlinear, x0, method=method, steps=9).x
    grid, x = uniform_grid(9), x0
    for start, stop in ((0, 4), (4, 5), (5, 9)):
        x = integrate(nonlinear, x, method=method, times=grid[start : stop + 1]).x
    assert torch.equal(x, whole)
