r"""ODE samplers for velocity fields: fixed-step Runge-Kutta methods and adaptive torchdiffeq.

A velocity field is any callable ``velocity(x, t) -> v`` with ``x`` of shape ``(B, *dims)``
and ``t`` of shape ``(B,)``. Sampling a flow matching model integrates

.. math:: \frac{dx}{dt} = v_\theta(x, t), \qquad x(0) = x_0 \sim p_0

from :math:`t = 0` (noise) to :math:`t = 1` (data). Integrating from 1 to 0 runs the flow
backwards (data to noise), as the likelihood computation does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._checks import check_choice, check_finite, check_positive_int

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_METHODS",
    "MEAN_FLOW_METHODS",
    "METHODS",
    "ODESolution",
    "evaluations_per_call",
    "integrate",
    "is_fixed_step",
    "methods_for",
    "nfe_per_step",
    "solver_options",
    "supports_mean_flow",
    "time_grid",
    "uniform_grid",
]

Velocity = Callable[[Tensor, Tensor], Tensor]
StepCallback = Callable[[int, float, Tensor], None]

#: Fixed-step methods implemented here, with their number of velocity evaluations per step.
FIXED_METHODS: dict[str, int] = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
#: Adaptive methods delegated to torchdiffeq (embedded Runge-Kutta pairs).
ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: Methods for networks of average velocities ``u(x, t, r)`` (MeanFlow, ``mean_flow=True``):
#: each step jumps ``x_r = x_t + (r - t) u(x_t, t, r)`` over one interval of the grid.
MEAN_FLOW_METHODS: dict[str, int] = {"meanflow": 1}
_STEPPED: dict[str, int] = {**FIXED_METHODS, **MEAN_FLOW_METHODS}
METHODS: tuple[str, ...] = (*FIXED_METHODS, *ADAPTIVE_METHODS, *MEAN_FLOW_METHODS)


def supports_mean_flow(model: object) -> bool:
    """Whether ``model`` is a network of average velocities (built with ``mean_flow=True``);
    ``model`` may also be its configuration as a dict (a checkpoint's ``metadata["model"]``)."""
    if isinstance(model, dict):
        return bool(model.get("mean_flow", False))
    return bool(getattr(getattr(model, "config", None), "mean_flow", False))


def methods_for(model: object) -> tuple[str, ...]:
    """The methods of :data:`METHODS` that can sample ``model``: every ODE solver, and the
    MeanFlow jump where the network supports it (its ``r = t`` is an ordinary velocity).

    Example:
        >>> "meanflow" in methods_for(lambda x, t: x)
        False
    """
    if supports_mean_flow(model):
        return METHODS
    return tuple(m for m in METHODS if m not in MEAN_FLOW_METHODS)


class ODESolution:
    """Result of :func:`integrate`.

    Attributes:
        x: final state, shape ``(B, *dims)``.
        nfe: number of velocity evaluations actually spent.
        times: the time grid, shape ``(T,)`` (for adaptive methods, the output times); built
            on first access, so a solve that never reads it does not pay for the tensor.
        trajectory: states at ``times``, shape ``(T, B, *dims)``, or ``None`` when not
            requested.
    """

    __slots__ = ("_times", "_times_like", "nfe", "trajectory", "x")

    def __init__(
        self,
        x: Tensor,
        nfe: int,
        times: Tensor | Sequence[float],
        trajectory: Tensor | None = None,
    ) -> None:
        self.x, self.nfe, self.trajectory = x, nfe, trajectory
        self._times, self._times_like = times, x

    @property
    def times(self) -> Tensor:
        if not torch.is_tensor(self._times):
            like = self._times_like
            self._times = torch.tensor(self._times, dtype=like.dtype, device=like.device)
        return self._times

    def __repr__(self) -> str:
        return (
            f"ODESolution(x=<{tuple(self.x.shape)}>, nfe={self.nfe}, "
            f"times=<{len(self._times)}>, trajectory={self.trajectory is not None})"
        )


def nfe_per_step(method: str) -> int:
    """Velocity evaluations per step of a fixed-step ``method`` (1 for Euler, 4 for RK4, 1 for
    a MeanFlow jump).

    The one source of a fixed-step solve's cost: ``steps * nfe_per_step(method)``.

    Example:
        >>> [nfe_per_step(m) for m in ("euler", "midpoint", "heun", "rk4", "meanflow")]
        [1, 2, 2, 4, 1]
    """
    check_choice("method", method, _STEPPED)
    return _STEPPED[method]


def is_fixed_step(method: str) -> bool:
    """Whether ``method`` steps along a given grid (``True``) or adapts its steps to tolerances.

    Example:
        >>> is_fixed_step("rk4"), is_fixed_step("dopri5")
        (True, False)
    """
    check_choice("method", method, METHODS)
    return method in _STEPPED


def solver_options(
    method: str,
    *,
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    frames: int | None = None,
) -> dict:
    """The keywords of :func:`integrate` that run ``method``: its ``steps`` for a fixed-step
    method, ``rtol`` and ``atol`` for an adaptive one (with ``frames`` recorded intervals of
    its trajectory when given; they do not change the solve).

    Example:
        >>> solver_options("rk4", steps=5, rtol=1e-3)
        {'method': 'rk4', 'steps': 5}
        >>> solver_options("dopri5", steps=5, rtol=1e-3, atol=1e-3, frames=20)
        {'method': 'dopri5', 'rtol': 0.001, 'atol': 0.001, 'steps': 20}
    """
    if is_fixed_step(method):
        return {"method": method, "steps": steps}
    options = {"method": method, "rtol": rtol, "atol": atol}
    if frames is not None:
        options["steps"] = frames
    return options


def time_grid(
    steps: int,
    t0: float = 0.0,
    t1: float = 1.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A uniform grid of ``steps + 1`` times from ``t0`` to ``t1`` (either direction): the
    grid :func:`integrate` steps along when given ``steps``, rounded to ``dtype``. Passing
    this tensor as ``times`` steps along the rounded times, so in float32 the result can
    differ from ``steps=`` in the last bits; :func:`uniform_grid` gives the times unrounded.

    Example:
        >>> time_grid(4)
        tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000])
    """
    return torch.tensor(uniform_grid(steps, t0, t1), device=device, dtype=dtype)


def uniform_grid(steps: int, t0: float = 0.0, t1: float = 1.0) -> list[float]:
    """:func:`time_grid` as Python floats: ``t0 + (t1 - t0) i / steps``, ending exactly at
    ``t1``. Passing (a slice of) it as ``times`` to :func:`integrate` steps along exactly the
    times a solve with ``steps`` uses.

    Example:
        >>> uniform_grid(4, 1.0, 0.0)
        [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    check_positive_int("steps", steps)
    span = t1 - t0
    grid = [t0 + span * i / steps for i in range(steps)]
    grid.append(t1)
    return grid


def _check_times(times: Tensor | Sequence[float], x0: Tensor) -> tuple[Tensor | list, list]:
    """``(times to return, grid to step along)``: a tensor is cast to ``x0``'s dtype and
    device and stepped along at those values; Python floats are stepped along as given."""
    if torch.is_tensor(times):
        times = times.to(dtype=x0.dtype, device=x0.device)
        if times.ndim != 1:
            raise ValueError(f"times must be a 1-D grid, got shape {tuple(times.shape)}")
        grid = times.tolist()
    else:
        try:
            grid = [float(t) for t in times]
        except (TypeError, ValueError):
            raise ValueError("times must be a 1-D grid of numbers") from None
        times = grid
    if len(grid) < 2:
        raise ValueError(f"times must be a 1-D grid of at least 2 times, got {len(grid)}")
    bad = sum(not math.isfinite(t) for t in grid)
    if bad:
        raise ValueError(f"times contains {bad} NaN or infinite value(s); clean the input first")
    steps = [b - a for a, b in itertools.pairwise(grid)]
    if not (all(h > 0 for h in steps) or all(h < 0 for h in steps)):
        raise ValueError("times must be strictly increasing or strictly decreasing")
    return times, grid


def integrate(
    velocity: Velocity,
    x0: Tensor,
    *,
    method: str = "rk4",
    steps: int | None = None,
    times: Tensor | Sequence[float] | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    return_trajectory: bool = False,
    grad: bool = False,
    callback: StepCallback | None = None,
) -> ODESolution:
    r"""Integrate :math:`dx/dt = v(x, t)` from ``x0``.

    ``meanflow`` steps along the grid by jumps with a network of average velocities
    (:func:`ecnf.losses.meanflow_loss`): ``x <- x + (t' - t) u(x, t, t')``, one evaluation each.
    Fixed-step methods (``euler``, ``midpoint``, ``heun``, ``rk4``; orders 1, 2, 2, 4) step
    along ``times`` or a uniform grid of ``steps`` steps from ``t0`` to ``t1``. Adaptive
    methods (``dopri5`` and the other embedded pairs of torchdiffeq) choose their own steps
    to meet ``rtol``/``atol`` and report the evaluations they really used; ``times`` (or
    ``steps``) then only sets where the trajectory is recorded.

    Arguments:
        velocity: callable ``(x, t) -> v`` with ``x`` of shape ``(B, *dims)``, ``t`` of
            shape ``(B,)``.
        x0: initial state, shape ``(B, *dims)``.
        method: one of :data:`METHODS`.
        steps: number of uniform steps (fixed-step methods; default 10 if ``times`` is None).
        times: explicit time grid, monotone in either direction; overrides ``t0``, ``t1``.
        t0, t1: start and end times; ``t0 > t1`` integrates backwards.
        rtol, atol: tolerances of adaptive methods.
        return_trajectory: also return every state on the grid.
        grad: track gradients through the solve (off by default).
        callback: called as ``callback(i, t, x)`` after each grid point is reached
            (``i = 0`` for the initial state), e.g. to stream frames; for adaptive methods
            the calls come once the solve has finished.

    Returns:
        An :class:`ODESolution` with the final state, the NFE, the grid and, on request,
        the trajectory.

    Example:
        >>> x0 = torch.ones(3, 2)
        >>> sol = integrate(lambda x, t: -x, x0, method="rk4", steps=20)
        >>> torch.allclose(sol.x, x0 * torch.exp(torch.tensor(-1.0)), atol=1e-6)
        True
        >>> sol.nfe
        80
    """
    check_choice("method", method, METHODS)
    if not torch.is_tensor(x0) or x0.ndim < 1:
        raise ValueError("x0 must be a tensor of shape (B, *dims)")
    if not _capturing(x0):  # a CUDA graph being captured cannot read x0 back
        check_finite("x0", x0)
    if times is None:
        if steps is None:
            steps = 10 if method in _STEPPED else 1
        # Python floats: no tensor and no device round trip per solve (so a whole solve can
        # be captured in a CUDA graph); the returned times are built when first read
        times = grid = uniform_grid(steps, t0, t1)
    else:
        if steps is not None:
            raise ValueError("give either steps or times, not both")
        times, grid = _check_times(times, x0)
    mean_flow = method in MEAN_FLOW_METHODS
    if mean_flow and isinstance(velocity, torch.nn.Module) and not supports_mean_flow(velocity):
        raise ValueError(
            f"method {method!r} jumps with average velocities u(x, t, r): it needs a "
            f"network built with mean_flow=True, and this {type(velocity).__name__} "
            "takes one time; use an ODE solver (euler, rk4, dopri5, ...)"
        )
    if method not in _STEPPED:
        for name, tol in (("rtol", rtol), ("atol", atol)):
            if not tol > 0:
                raise ValueError(f"{name} must be > 0, got {tol!r}")
    with torch.set_grad_enabled(grad):
        if method in _STEPPED:
            return _integrate_fixed(velocity, x0, times, grid, method, return_trajectory, callback)
        if not torch.is_tensor(times):
            times = torch.tensor(times, dtype=x0.dtype, device=x0.device)
        return _integrate_adaptive(
            velocity, x0, times, method, rtol, atol, return_trajectory, callback
        )


def _capturing(x: Tensor) -> bool:
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def _integrate_fixed(
    velocity: Velocity,
    x: Tensor,
    times: Tensor | list[float],
    grid: list[float],
    method: str,
    return_trajectory: bool,
    callback: StepCallback | None,
) -> ODESolution:
    batch = x.shape[0]
    trajectory = x.new_empty((len(grid), *x.shape)) if return_trajectory else None
    if trajectory is not None:
        trajectory[0] = x
    if callback is not None:
        callback(0, grid[0], x)

    def v(y: Tensor, t: float) -> Tensor:
        return velocity(y, y.new_full((batch,), t))

    # Each update is written with torch.add(..., alpha=): one fused kernel per term, and no
    # temporary for the scaled increment.
    add = torch.add
    for i in range(len(grid) - 1):
        t, h = grid[i], grid[i + 1] - grid[i]
        if method == "euler":
            x = add(x, v(x, t), alpha=h)
        elif method == "meanflow":  # one jump over [t, t + h] with the average velocity
            end = x.new_full((batch,), grid[i + 1])
            x = add(x, velocity(x, x.new_full((batch,), t), end), alpha=h)
        elif method == "midpoint":
            x = add(x, v(add(x, v(x, t), alpha=0.5 * h), t + 0.5 * h), alpha=h)
        elif method == "heun":
            k1 = v(x, t)
            k2 = v(add(x, k1, alpha=h), t + h)
            x = add(x, add(k1, k2), alpha=0.5 * h)
        else:  # classical fourth-order Runge-Kutta
            k1 = v(x, t)
            k2 = v(add(x, k1, alpha=0.5 * h), t + 0.5 * h)
            k3 = v(add(x, k2, alpha=0.5 * h), t + 0.5 * h)
            k4 = v(add(x, k3, alpha=h), t + h)
            x = add(x, add(add(k1, add(k2, k3), alpha=2.0), k4), alpha=h / 6.0)
        if trajectory is not None:
            trajectory[i + 1] = x
        if callback is not None:
            callback(i + 1, grid[i + 1], x)
    nfe = _STEPPED[method] * (len(grid) - 1) * evaluations_per_call(velocity)
    return ODESolution(x=x, nfe=nfe, times=times, trajectory=trajectory)


def _integrate_adaptive(
    velocity: Velocity,
    x0: Tensor,
    times: Tensor,
    method: str,
    rtol: float,
    atol: float,
    return_trajectory: bool,
    callback: StepCallback | None,
) -> ODESolution:
    from torchdiffeq import odeint

    batch = x0.shape[0]
    nfe = 0

    def func(t: Tensor, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return velocity(y, t.to(y.dtype).expand(batch))  # a view: no allocation per call

    if not return_trajectory and callback is None:
        times = times[[0, -1]]
    states = odeint(func, x0, times, rtol=rtol, atol=atol, method=method)
    if callback is not None:
        for i, (t, x) in enumerate(zip(times.tolist(), states, strict=True)):
            callback(i, t, x)
    trajectory = states if return_trajectory else None
    nfe *= evaluations_per_call(velocity)
    return ODESolution(x=states[-1], nfe=nfe, times=times, trajectory=trajectory)


def evaluations_per_call(velocity: Velocity) -> int:
    """Network evaluations per call of ``velocity``: 1, or its ``nfe_per_call`` (two for a
    classifier-free guided flow, :class:`ecnf.guidance.Guided`). Every NFE that
    :func:`integrate` reports is multiplied by it."""
    return int(getattr(velocity, "nfe_per_call", 1))
