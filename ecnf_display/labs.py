r"""Measurements behind the studio's labs: how straight a flow is, how noisy Hutchinson is.

A flow matching model is trained on straight lines from noise to data; the straighter the
learned ODE's trajectories, the fewer solver steps it needs. :func:`straightness` and
:func:`chord_deviation` put a number on that from a recorded trajectory, and
:func:`repeated_log_prob` runs Hutchinson's estimator of :math:`\log p` with many
independent probe draws at once, so its spread can be set against the exact value.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ecnf._checks import check_positive_int
from ecnf.likelihood import log_prob

__all__ = ["chord_deviation", "repeated_log_prob", "straightness"]

Velocity = Callable[[Tensor, Tensor], Tensor]


def _check_trajectory(trajectory: Tensor) -> Tensor:
    if not torch.is_tensor(trajectory) or trajectory.ndim < 3 or trajectory.shape[0] < 2:
        found = tuple(trajectory.shape) if torch.is_tensor(trajectory) else type(trajectory)
        raise ValueError(f"trajectory must have shape (T >= 2, B, *dims), got {found}")
    return trajectory.flatten(2)  # (T, B, D)


def straightness(trajectory: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Path length over endpoint distance of every trajectory, shape ``(B,)``; 1 is straight.

    .. math:: S_i = \frac{\sum_{k=0}^{T-2} \lVert x^{(i)}_{t_{k+1}} - x^{(i)}_{t_k}
        \rVert}{\lVert x^{(i)}_{t_{T-1}} - x^{(i)}_{t_0} \rVert} \;\geq\; 1

    by the triangle inequality, with equality exactly when the recorded points move along
    one segment in one direction. The ratio sees only the recorded points: a trajectory of
    one Euler step is a segment however curved the flow is.

    Arguments:
        trajectory: states at increasing times, shape ``(T, B, *dims)``.
        eps: floor of the endpoint distance (a path that returns to its start).

    Example:
        >>> x0, x1 = torch.zeros(3, 2), torch.ones(3, 2)
        >>> s = torch.linspace(0, 1, 5)[:, None, None]
        >>> straightness((1 - s) * x0 + s * x1)
        tensor([1., 1., 1.])
    """
    flat = _check_trajectory(trajectory)
    length = flat.diff(dim=0).norm(dim=-1).sum(0)
    chord = (flat[-1] - flat[0]).norm(dim=-1)
    return length / chord.clamp_min(eps)


def chord_deviation(trajectory: Tensor, times: Tensor) -> Tensor:
    r"""Mean distance of every trajectory from its straight chord, shape ``(B,)``; 0 is straight.

    .. math:: \delta_i = \frac1T \sum_k \Big\lVert x^{(i)}_{t_k} - \big((1 - s_k)\,
        x^{(i)}_{t_0} + s_k\, x^{(i)}_{t_{T-1}}\big) \Big\rVert, \qquad
        s_k = \frac{t_k - t_0}{t_{T-1} - t_0}

    It is zero exactly when every recorded point lies on the chord at the place a motion
    of constant velocity would put it, as the straight paths of flow matching do.

    Arguments:
        trajectory: states, shape ``(T, B, *dims)``.
        times: the times of the states, shape ``(T,)``, not all equal.

    Example:
        >>> t = torch.linspace(0, 1, 5)
        >>> chord_deviation(t[:, None, None] * torch.ones(1, 4, 2), t)
        tensor([0., 0., 0., 0.])
    """
    flat = _check_trajectory(trajectory)
    times = torch.as_tensor(times, dtype=flat.dtype, device=flat.device)
    if times.shape != (flat.shape[0],) or times[-1] == times[0]:
        raise ValueError(
            f"times must have shape ({flat.shape[0]},) with distinct ends, got {tuple(times.shape)}"
        )
    s = ((times - times[0]) / (times[-1] - times[0]))[:, None, None]
    chord = (1 - s) * flat[0] + s * flat[-1]
    return (flat - chord).norm(dim=-1).mean(0)


def repeated_log_prob(
    velocity: Velocity,
    x1: Tensor,
    repeats: int,
    *,
    num_probes: int = 1,
    probe: str = "rademacher",
    seed: int = 0,
    **solver,
) -> tuple[Tensor, int]:
    r"""``repeats`` independent Hutchinson estimates of :math:`\log p(x_1)`, shape ``(R, B)``.

    The points are stacked ``repeats`` times into one batch; every row draws its own probes
    (fixed along its solve), so row ``r`` is an estimate independent of the others, as
    ``repeats`` separate calls of :func:`ecnf.likelihood.log_prob` with different seeds
    would give.

    Arguments:
        velocity: ``(x, t) -> v``.
        x1: points, shape ``(B, *dims)``.
        repeats: number of independent estimates per point.
        num_probes, probe: Hutchinson settings (see :func:`ecnf.likelihood.log_prob`).
        seed: seeds the probes.
        solver: ``method``, ``steps``, ``rtol``, ``atol`` passed to ``log_prob``.

    Returns:
        ``(log_prob, nfe)``: the estimates in nats, shape ``(repeats, B)``, and the
        velocity evaluations of the (shared) solve.

    Example:
        >>> lp, nfe = repeated_log_prob(lambda x, t: -x, torch.zeros(3, 2), 4, steps=2)
        >>> lp.shape, nfe
        (torch.Size([4, 3]), 8)
    """
    check_positive_int("repeats", repeats)
    stacked = x1.repeat(repeats, *([1] * (x1.ndim - 1)))
    res = log_prob(
        velocity,
        stacked,
        divergence="hutchinson",
        num_probes=num_probes,
        probe=probe,
        generator=torch.Generator(device=x1.device).manual_seed(seed),
        **solver,
    )
    return res.log_prob.reshape(repeats, x1.shape[0]), res.nfe
