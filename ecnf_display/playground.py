r"""Quantities the studio shows about a trained flow: fields on a grid, endpoints, quality.

Everything here is plain torch on top of :mod:`ecnf.solvers` and :mod:`ecnf.likelihood`,
so the Streamlit pages, the Gradio demo and the notebooks show the same numbers; how good
samples are (W2 beside the data floor) is :func:`ecnf.evaluation.compare_to_data`.

The predicted endpoint of a state :math:`x_t` is one Euler step to :math:`t = 1`,

.. math:: \hat x_1(x_t, t) = x_t + (1 - t)\, v_\theta(x_t, t),

which for the linear path :math:`x_t = (1 - t) x_0 + t x_1` is the model's estimate of
:math:`\mathbb{E}[x_1 \mid x_t]` (Lipman et al. 2023, https://arxiv.org/abs/2210.02747;
Liu et al. 2023, https://arxiv.org/abs/2209.03003): it is exact at every :math:`t` when
the learned flow is straight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ecnf._checks import check_positive_int
from ecnf.data import TOY_EXTENT
from ecnf.likelihood import log_prob

__all__ = [
    "PLAYGROUND_DEFAULTS",
    "DensityGrid",
    "grid_points",
    "log_density_grid",
    "playground_config",
    "predicted_endpoints",
    "speed_per_step",
    "trajectory_velocities",
    "velocity_on_grid",
]

Velocity = Callable[[Tensor, Tensor], Tensor]

#: The 2D playground's training form as it opens; the benchmark of drawn data trains these.
PLAYGROUND_DEFAULTS = {
    "loss": "otcfm",
    "arch": "mlp",
    "width": 256,
    "depth": 3,
    "activation": "silu",
    "iterations": 1000,
    "lr": 2e-3,
    "batch_size": 256,
    "conditional": False,
}


def playground_config(target: str, source: str = "gaussian", *, out_dir: str, **options):
    """The :class:`~ecnf.TrainConfig` of the 2D playground's form: ``options`` override
    :data:`PLAYGROUND_DEFAULTS`; AdamW's rate decays to 0 on a cosine. ``conditional``
    conditions the network on the target's classes (label dropout at the default rate).

    Example:
        >>> playground_config("moons", out_dir="runs/p", iterations=20).model.width
        256
    """
    from ecnf import LossConfig, MLPConfig, ResNetConfig, TrainConfig

    unknown = sorted(set(options) - set(PLAYGROUND_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown playground options {unknown}; use {sorted(PLAYGROUND_DEFAULTS)}")
    o = PLAYGROUND_DEFAULTS | options
    num_classes = 0
    if o["conditional"]:
        from ecnf.data import dataset_classes

        num_classes = len(dataset_classes(target))
        if not num_classes:
            raise ValueError(
                "a class-conditional flow needs a target with classes: a mixture, the moons, "
                "circles, rings, spirals or pinwheel, or a drawing in two colours or more"
            )
    if o["arch"] == "mlp":
        model = MLPConfig(
            data_shape=(2,),
            width=o["width"],
            depth=o["depth"],
            activation=o["activation"],
            num_classes=num_classes,
        )
    else:
        model = ResNetConfig(
            data_shape=(2,),
            width=o["width"],
            num_blocks=o["depth"],
            activation=o["activation"],
            num_classes=num_classes,
        )
    return TrainConfig(
        data=target,
        source=source,
        model=model,
        loss=LossConfig(o["loss"]),
        iterations=o["iterations"],
        batch_size=o["batch_size"],
        lr=o["lr"],
        lr_schedule="cosine",
        log_every=max(o["iterations"] // 60, 5),
        checkpoint_every=o["iterations"],
        out_dir=out_dir,
    )


#: Largest side of a 2D evaluation grid (200 x 200 = 40,000 points).
MAX_GRID = 200


def _check_lim(lim: float) -> float:
    if not (isinstance(lim, int | float) and lim > 0):
        raise ValueError(f"lim must be a positive number (half-width of the square), got {lim!r}")
    return float(lim)


def grid_points(
    lim: float = TOY_EXTENT, n: int = 60, *, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor, Tensor]:
    """A square ``n x n`` grid over ``[-lim, lim]^2``.

    Returns:
        ``(xs, ys, points)``: the axis values, each of shape ``(n,)``, and the points,
        shape ``(n * n, 2)``, in row-major order (``y`` varies slowest), so a value per
        point reshaped to ``(n, n)`` is indexed ``[iy, ix]`` like a heatmap.

    Example:
        >>> xs, ys, points = grid_points(1.0, 3)
        >>> points[:4].tolist()
        [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 0.0]]
    """
    lim = _check_lim(lim)
    check_positive_int("n", n, minimum=2)
    if n > MAX_GRID:
        raise ValueError(f"n must be at most {MAX_GRID} (grid side), got {n}")
    xs = torch.linspace(-lim, lim, n, dtype=dtype)
    ys = xs.clone()
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return xs, ys, torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def _device(velocity: Velocity) -> torch.device:
    params = getattr(velocity, "parameters", None)
    if params is not None:
        for p in params():
            return p.device
    return torch.device("cpu")


@torch.no_grad()
def velocity_on_grid(
    velocity: Velocity, t: float, lim: float = 4.0, n: int = 20
) -> tuple[Tensor, Tensor]:
    """The velocity field ``v(x, t)`` at one time on an ``n x n`` grid (for quiver plots).

    Returns:
        ``(points, v)``, both of shape ``(n * n, 2)`` on the CPU (order of :func:`grid_points`).

    Example:
        >>> points, v = velocity_on_grid(lambda x, t: -x * t[:, None], 0.5, lim=1.0, n=2)
        >>> v.tolist()
        [[0.5, 0.5], [-0.5, 0.5], [0.5, -0.5], [-0.5, -0.5]]
    """
    if not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"t must be in [0, 1] (0 noise, 1 data), got {t!r}")
    _, _, points = grid_points(lim, n)
    x = points.to(_device(velocity))
    v = velocity(x, torch.full((x.shape[0],), float(t), device=x.device))
    return points, v.float().cpu()


@dataclass
class DensityGrid:
    """Result of :func:`log_density_grid`.

    Attributes:
        xs, ys: axis values, shape ``(n,)``.
        log_prob: the model's :math:`\\log p_1` at each grid point, shape ``(n, n)``,
            indexed ``[iy, ix]``.
        nfe: velocity evaluations of one solve.
    """

    xs: Tensor
    ys: Tensor
    log_prob: Tensor
    nfe: int

    @property
    def mass(self) -> float:
        """Riemann sum of :math:`p_1` over the grid: the probability inside the square."""
        cell = float((self.xs[1] - self.xs[0]) * (self.ys[1] - self.ys[0]))
        return float(self.log_prob.double().exp().sum()) * cell


def log_density_grid(
    velocity: Velocity,
    lim: float = TOY_EXTENT,
    n: int = 60,
    *,
    method: str = "rk4",
    steps: int = 10,
    batch_size: int = 4096,
) -> DensityGrid:
    r"""The model density :math:`\log p_1(x)` of a 2D flow from a standard normal, on a grid.

    Each grid point is integrated from :math:`t = 1` back to :math:`t = 0` with the exact
    divergence (:func:`ecnf.likelihood.log_prob`), ``batch_size`` points at a time.

    Example:
        >>> g = log_density_grid(lambda x, t: torch.zeros_like(x), lim=1.0, n=3, steps=1)
        >>> round(float(g.log_prob[1, 1]), 4)  # log N(0; 0, I) = -log(2 pi)
        -1.8379
    """
    check_positive_int("batch_size", batch_size)
    xs, ys, points = grid_points(lim, n)
    device = _device(velocity)
    values, nfe = [], 0
    for chunk in points.split(batch_size):
        res = log_prob(velocity, chunk.to(device), method=method, steps=steps)
        values.append(res.log_prob.detach().float().cpu())
        nfe = res.nfe
    return DensityGrid(xs, ys, torch.cat(values).reshape(n, n), nfe)


def _check_trajectory(trajectory: Tensor, times: Tensor) -> Tensor:
    times = torch.as_tensor(times)
    if trajectory.ndim < 3:
        raise ValueError(f"trajectory must have shape (T, B, *dims), got {tuple(trajectory.shape)}")
    if times.ndim != 1 or times.shape[0] != trajectory.shape[0]:
        raise ValueError(
            f"times must have shape (T,) = ({trajectory.shape[0]},), got {tuple(times.shape)}"
        )
    return times.to(trajectory.device, trajectory.dtype)


@torch.no_grad()
def trajectory_velocities(
    velocity: Velocity, trajectory: Tensor, times: Tensor, *, batch_size: int = 256
) -> Tensor:
    """``v(x_k, t_k)`` at every state of a trajectory, ``batch_size`` states at a time.

    Arguments:
        velocity: ``(x, t) -> v``.
        trajectory: states, shape ``(T, B, *dims)`` (as :func:`ecnf.integrate` returns).
        times: their times, shape ``(T,)``.

    Returns:
        The velocities, shape ``(T, B, *dims)``, on the trajectory's device.

    Example:
        >>> traj, times = torch.ones(3, 2, 1), torch.tensor([0.0, 0.5, 1.0])
        >>> trajectory_velocities(lambda x, t: x * t[:, None], traj, times)[:, 0, 0]
        tensor([0.0000, 0.5000, 1.0000])
    """
    check_positive_int("batch_size", batch_size)
    times = _check_trajectory(trajectory, times)
    steps, batch = trajectory.shape[:2]
    states = trajectory.reshape(steps * batch, *trajectory.shape[2:])
    t = times.repeat_interleave(batch)
    device = _device(velocity)
    out = [
        velocity(x.to(device), s.to(device)).to(trajectory.device, trajectory.dtype)
        for x, s in zip(states.split(batch_size), t.split(batch_size), strict=True)
    ]
    return torch.cat(out).reshape(trajectory.shape)


def predicted_endpoints(
    velocity: Velocity,
    trajectory: Tensor,
    times: Tensor,
    *,
    velocities: Tensor | None = None,
    batch_size: int = 256,
) -> Tensor:
    r"""The endpoint predicted from every state: :math:`\hat x_1 = x_t + (1 - t)\,v(x_t, t)`.

    Arguments:
        velocity: ``(x, t) -> v``.
        trajectory: states, shape ``(T, B, *dims)``.
        times: their times, shape ``(T,)``.
        velocities: the velocities at those states if already computed
            (:func:`trajectory_velocities`); evaluated here otherwise.

    Returns:
        The predicted endpoints, shape ``(T, B, *dims)``.

    Example:
        >>> from ecnf.solvers import integrate
        >>> shift = torch.tensor([2.0, -1.0])
        >>> sol = integrate(lambda x, t: shift.expand_as(x), torch.zeros(1, 2),
        ...                 steps=4, return_trajectory=True)
        >>> predicted_endpoints(lambda x, t: shift.expand_as(x), sol.trajectory, sol.times)[:, 0]
        tensor([[ 2., -1.],
                [ 2., -1.],
                [ 2., -1.],
                [ 2., -1.],
                [ 2., -1.]])
    """
    times = _check_trajectory(trajectory, times)
    if velocities is None:
        velocities = trajectory_velocities(velocity, trajectory, times, batch_size=batch_size)
    elif velocities.shape != trajectory.shape:
        raise ValueError(
            f"velocities must have the trajectory's shape {tuple(trajectory.shape)}, "
            f"got {tuple(velocities.shape)}"
        )
    remaining = (1.0 - times).reshape(-1, *([1] * (trajectory.ndim - 1)))
    return trajectory + remaining * velocities


def speed_per_step(velocities: Tensor) -> Tensor:
    r"""Mean velocity magnitude :math:`\frac1B \sum_b \lVert v_b \rVert_2` at each time.

    Arguments:
        velocities: shape ``(T, B, *dims)``.

    Returns:
        Shape ``(T,)``.

    Example:
        >>> speed_per_step(torch.tensor([[[3.0, 4.0], [0.0, 1.0]]]))
        tensor([3.])
    """
    if velocities.ndim < 3:
        raise ValueError(f"velocities must have shape (T, B, *dims), got {tuple(velocities.shape)}")
    return velocities.flatten(2).norm(dim=2).mean(dim=1)
