"""Studio quantities: endpoints of straight flows, fields on grids, densities.

(W2 beside the data floor is ecnf.evaluation.compare_to_data: tests/test_evaluation.py.)
"""

import math

import numpy as np
import pytest
import torch

from ecnf import MLPConfig, build_model, integrate
from ecnf_display.playground import (
    grid_points,
    log_density_grid,
    predicted_endpoints,
    speed_per_step,
    trajectory_velocities,
    velocity_on_grid,
)


def affine_flow(scale, shift):
    """Velocity of the straight flow from x0 ~ N(0, I) to x1 = scale * x0 + shift.

    On the line x_t = (1 - t) x0 + t x1 = (1 - t + t scale) x0 + t shift the velocity is
    x1 - x0 = (scale - 1) x0 + shift, with x0 recovered from x_t.
    """

    def velocity(x, t):
        t = t[:, None]
        x0 = (x - t * shift) / (1 - t + t * scale)
        return (scale - 1) * x0 + shift

    return velocity


def test_straight_flow_endpoints_are_exact_at_every_time():
    scale = torch.tensor([0.5, 2.0], dtype=torch.float64)
    shift = torch.tensor([1.0, -3.0], dtype=torch.float64)
    x0 = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x1 = scale * x0 + shift
    times = torch.linspace(0, 1, 11, dtype=torch.float64)
    trajectory = (1 - times)[:, None, None] * x0 + times[:, None, None] * x1  # exact path
    predicted = predicted_endpoints(affine_flow(scale, shift), trajectory, times)
    assert predicted.shape == trajectory.shape
    torch.testing.assert_close(predicted, x1.expand_as(predicted), rtol=0, atol=1e-12)


def test_straight_flow_endpoints_along_a_solver_trajectory():
    scale = torch.tensor([0.5, 2.0], dtype=torch.float64)
    shift = torch.tensor([1.0, -3.0], dtype=torch.float64)
    velocity = affine_flow(scale, shift)
    x0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sol = integrate(velocity, x0, method="rk4", steps=8, return_trajectory=True)
    predicted = predicted_endpoints(velocity, sol.trajectory, sol.times)
    target = (scale * x0 + shift).expand_as(predicted)
    torch.testing.assert_close(predicted, target, rtol=0, atol=1e-9)
    torch.testing.assert_close(sol.x, scale * x0 + shift, rtol=0, atol=1e-9)


def test_curved_flow_endpoints_differ_before_the_end_and_agree_at_it():
    def rotation(x, t):
        return torch.stack([-x[:, 1], x[:, 0]], dim=1)

    x0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    sol = integrate(rotation, x0, method="rk4", steps=50, return_trajectory=True)
    velocities = trajectory_velocities(rotation, sol.trajectory, sol.times)
    predicted = predicted_endpoints(rotation, sol.trajectory, sol.times, velocities=velocities)
    # at t = 0 one Euler step over [0, 1]: (1, 0) + (0, 1)
    torch.testing.assert_close(predicted[0, 0], torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(predicted[-1], sol.trajectory[-1])
    assert (predicted[0] - sol.x).norm() > 0.1  # the flow is curved
    # a rotation keeps |v| = |x| = 1
    torch.testing.assert_close(speed_per_step(velocities), torch.ones(51, dtype=torch.float64))


def test_trajectory_velocities_match_direct_evaluation_for_any_batch_size():
    torch.manual_seed(0)
    model = build_model(MLPConfig(width=16, depth=2)).double()
    trajectory = torch.randn(4, 6, 2, dtype=torch.float64)
    times = torch.tensor([0.0, 0.3, 0.6, 1.0], dtype=torch.float64)
    with torch.no_grad():
        direct = torch.stack(
            [model(x, t.repeat(6)) for x, t in zip(trajectory, times, strict=True)]
        )
    for batch_size in (1, 5, 1000):
        got = trajectory_velocities(model, trajectory, times, batch_size=batch_size)
        torch.testing.assert_close(got, direct)


def test_speed_per_step_is_the_mean_norm():
    v = torch.tensor([[[3.0, 4.0], [6.0, 8.0]], [[0.0, 0.0], [1.0, 0.0]]])
    torch.testing.assert_close(speed_per_step(v), torch.tensor([7.5, 0.5]))


def test_image_shaped_trajectories():
    trajectory = torch.zeros(3, 2, 1, 4, 4)
    times = torch.tensor([0.0, 0.5, 1.0])
    predicted = predicted_endpoints(lambda x, t: torch.ones_like(x), trajectory, times)
    torch.testing.assert_close(predicted[:, 0, 0, 0, 0], torch.tensor([1.0, 0.5, 0.0]))


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="times must have shape"):
        predicted_endpoints(lambda x, t: x, torch.zeros(3, 2, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="trajectory must have shape"):
        trajectory_velocities(lambda x, t: x, torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="velocities must have"):
        predicted_endpoints(
            lambda x, t: x, torch.zeros(3, 2, 2), torch.zeros(3), velocities=torch.zeros(3, 2)
        )


def test_grid_points_order_and_bounds():
    xs, ys, points = grid_points(2.0, 5)
    assert points.shape == (25, 2)
    values = points[:, 0] + 10 * points[:, 1]  # a function of (x, y)
    torch.testing.assert_close(values.reshape(5, 5)[3, 1], xs[1] + 10 * ys[3])
    with pytest.raises(ValueError, match="at most"):
        grid_points(1.0, 10_000)
    with pytest.raises(ValueError, match="lim"):
        grid_points(-1.0, 5)


def test_velocity_on_grid_evaluates_at_the_given_time():
    points, v = velocity_on_grid(lambda x, t: x * t[:, None], 0.25, lim=3.0, n=4)
    torch.testing.assert_close(v, 0.25 * points)
    with pytest.raises(ValueError, match="t must be in"):
        velocity_on_grid(lambda x, t: x, 1.5)


def test_density_grid_of_an_affine_flow_has_its_closed_form():
    scale = torch.tensor([0.7, 1.3])
    shift = torch.tensor([0.5, -0.25])
    grid = log_density_grid(affine_flow(scale, shift), lim=4.0, n=41, steps=40)
    gy, gx = torch.meshgrid(grid.ys, grid.xs, indexing="ij")
    x = torch.stack([gx, gy], dim=-1)
    z = (x - shift) / scale  # N(shift, diag(scale^2))
    expected = -0.5 * z.pow(2).sum(-1) - math.log(2 * math.pi) - scale.log().sum()
    torch.testing.assert_close(grid.log_prob, expected, rtol=0, atol=1e-3)
    assert grid.nfe == 160
    assert grid.mass == pytest.approx(1.0, abs=0.01)


def test_figures_draw_what_they_are_given():
    from ecnf_display.figures import density_figure, field_figure, trajectory_figure

    traj = np.stack([np.zeros((5, 2)), np.ones((5, 2))])  # (T=2, N=5, 2)
    fig = trajectory_figure(
        {"trajectory": traj, "times": np.array([0.0, 1.0]), "reference": np.ones((5, 2))}
    )
    assert len(fig.frames) == 2 and list(fig.frames[-1].data[0].x) == [1.0] * 5
    pts = np.array([[0.0, 0.0], [1.0, 0.0]])
    fig = field_figure(pts, np.array([[1.0, 0.0], [0.0, 1.0]]), pts, 0.5)
    assert fig.layout.yaxis.scaleanchor == "x"
    grid = {"xs": np.arange(3.0), "ys": np.arange(3.0), "log_prob": np.zeros((3, 3))}
    assert np.allclose(density_figure(grid, log_scale=False).data[0].z, 1.0)


def test_points_image_paints_each_point_in_its_own_colour():
    from ecnf_display.pictures import points_image

    points = np.array([[-1.0, 0.0], [1.0, 0.0]])
    colours = np.array([[200, 0, 0], [0, 0, 200]], np.uint8)
    image = points_image(points, size=21, lim=2.0, radius=0, colours=colours)
    assert image[10, 5].tolist() == [200, 0, 0] and image[10, 15].tolist() == [0, 0, 200]
    plain = points_image(points, size=21, lim=2.0, radius=0)
    assert plain[10, 5].tolist() == plain[10, 15].tolist() == [31, 119, 180]
