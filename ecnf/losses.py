r"""Training objectives: flow matching, OT-CFM, reflow and the velocity consistency loss.

All losses take a velocity field ``velocity(x, t) -> v`` (a network), a noise batch ``x0``
and a data batch ``x1`` of the same shape ``(B, *dims)``, and average squared errors over
every element (batch and dimensions).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_choice, check_positive_int, check_same_shape
from .couplings import couple
from .paths import expand_t, linear_path, sample_t
from .solvers import integrate

__all__ = [
    "LOSSES",
    "LossConfig",
    "LossOutput",
    "compute_loss",
    "consistency_loss",
    "flow_matching_loss",
    "make_reflow_pairs",
    "ot_cfm_loss",
    "reflow_loss",
]

Velocity = Callable[[Tensor, Tensor], Tensor]

LOSSES = ("fm", "otcfm", "reflow", "consistency")


@dataclass
class LossOutput:
    """A scalar loss to back-propagate and its detached parts for logging."""

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Which objective to train with and its hyper-parameters.

    Attributes:
        name: ``fm`` (independent coupling), ``otcfm`` (minibatch OT coupling), ``reflow``
            (flow matching on given (noise, generated) pairs) or ``consistency`` (velocity
            consistency loss, seed paper eqs. 6-8).
        sigma: width of the Gaussian tube around the straight path.
        alpha: weight of the path (endpoint) term in ``L = L_vel + alpha * L_path``.
        dt: time offset of the consistency targets.
        num_segments: number of time segments of the consistency loss.
        fm_weight: weight of a flow matching term added to the consistency loss.
        coupling: coupling used by ``consistency`` (``independent`` or ``ot``).
    """

    name: str = "fm"
    sigma: float = 0.0
    alpha: float = 1.0
    dt: float = 0.01
    num_segments: int = 1
    fm_weight: float = 0.0
    coupling: str = "independent"

    def __post_init__(self) -> None:
        check_choice("loss", self.name, LOSSES)
        check_choice("coupling", self.coupling, ("independent", "ot"))
        check_positive_int("num_segments", self.num_segments)
        for name in ("sigma", "alpha", "fm_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.dt <= 1 / self.num_segments:
            raise ValueError(
                f"dt must be in (0, 1/num_segments] = (0, {1 / self.num_segments:g}], "
                f"got {self.dt!r}"
            )

    @property
    def uses_ot(self) -> bool:
        """Whether the objective re-pairs each batch by minibatch OT."""
        return self.name == "otcfm" or (self.name == "consistency" and self.coupling == "ot")

    def to_dict(self) -> dict:
        return asdict(self)


def _mse(a: Tensor, b: Tensor) -> Tensor:
    return F.mse_loss(a, b)  # mean of squared errors: one kernel forward and backward


def flow_matching_loss(
    velocity: Velocity,
    x0: Tensor,
    x1: Tensor,
    *,
    t: Tensor | None = None,
    sigma: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Conditional flow matching loss on the linear path, with pairs taken as given.

    .. math:: \mathcal{L}_{FM} = \mathbb{E}_{t, x_0, x_1}
        \lVert v_\theta(x_t, t) - (x_1 - x_0) \rVert^2

    This is the seed paper's velocity-matching objective and I-CFM (Tong et al. 2023,
    arXiv:2302.00482) when ``x0`` and ``x1`` are drawn independently.

    Arguments:
        velocity: network ``(x, t) -> v``.
        x0: noise, shape ``(B, *dims)``.
        x1: data, shape ``(B, *dims)``.
        t: times, shape ``(B,)``; uniform on ``[0, 1)`` when ``None``.
        sigma: Gaussian tube width (see :func:`ecnf.paths.linear_path`).
        generator: random generator for ``t`` and the tube noise.

    Example:
        >>> x0, x1 = torch.randn(8, 2), torch.randn(8, 2)
        >>> float(flow_matching_loss(lambda x, t: x1 - x0, x0, x1))
        0.0
    """
    s = linear_path(x0, x1, t, sigma=sigma, generator=generator)
    return _mse(velocity(s.xt, s.t), s.ut)


def ot_cfm_loss(
    velocity: Velocity,
    x0: Tensor,
    x1: Tensor,
    *,
    t: Tensor | None = None,
    sigma: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """OT-CFM: :func:`flow_matching_loss` after re-pairing the batch by minibatch OT
    (:func:`ecnf.couplings.ot_coupling`)."""
    x0, x1 = couple(x0, x1, "ot")
    return flow_matching_loss(velocity, x0, x1, t=t, sigma=sigma, generator=generator)


@torch.no_grad()
def make_reflow_pairs(
    teacher: Velocity, x0: Tensor, *, method: str = "rk4", steps: int = 20
) -> tuple[Tensor, Tensor]:
    """Noise and the teacher's samples from it: the coupling that reflow trains on.

    Rectified flow (Liu et al. 2022, arXiv:2209.03003) integrates a trained flow from each
    ``x0`` and retrains on the pairs ``(x0, x1 = ODE(x0))``, which straightens paths.
    """
    x1 = integrate(teacher, x0, method=method, steps=steps).x
    return x0, x1


def reflow_loss(velocity: Velocity, x0: Tensor, x1: Tensor, **kwargs) -> Tensor:
    """Deprecated: reflow's loss *is* :func:`flow_matching_loss`, on the pairs of
    :func:`make_reflow_pairs`; call that instead (``compute_loss`` does)."""
    warnings.warn(
        "reflow_loss is flow_matching_loss on make_reflow_pairs' pairs; call "
        "flow_matching_loss (reflow_loss will be removed)",
        DeprecationWarning,
        stacklevel=2,
    )
    return flow_matching_loss(velocity, x0, x1, **kwargs)


def consistency_loss(
    velocity: Velocity,
    x0: Tensor,
    x1: Tensor,
    *,
    target: Velocity | None = None,
    alpha: float = 1.0,
    dt: float = 0.01,
    num_segments: int = 1,
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> LossOutput:
    r"""Velocity consistency loss (seed paper eqs. 6-8), read as Consistency Flow Matching.

    Time is split into ``K = num_segments`` segments; for :math:`t` in the segment ending at
    :math:`T`, the predicted endpoint of the segment is

    .. math:: f_\theta(t, x) = x + (T - t)\, v_\theta(x, t).

    With :math:`r = \min(t + \Delta t, T)` and :math:`x_t, x_r` on the same straight path,

    .. math::
        \mathcal{L} = \underbrace{\lVert v_\theta(x_t, t) - v^-(x_r, r)\rVert^2}_{L_{vel}}
        + \alpha \underbrace{\lVert f_\theta(t, x_t) - f^-(r, x_r)\rVert^2}_{L_{path}}

    where :math:`v^-` is a stop-gradient (or EMA) copy. When :math:`r = T`,
    :math:`f^-(T, x_T) = x_T` is the true point of the path: the boundary condition that
    anchors the flow. With ``K = 1``, :math:`f(t, x) = x + (1 - t) v(x, t)` is the
    predicted data point.

    References:
        Yang et al. 2024, "Consistency Flow Matching", arXiv:2407.02398.

    Arguments:
        velocity: the trained network ``(x, t) -> v``.
        x0: noise, shape ``(B, *dims)``.
        x1: data, shape ``(B, *dims)``.
        target: velocity used for the targets (an EMA model); ``velocity`` itself with
            gradients stopped when ``None``.
        alpha: weight of the path term.
        dt: offset :math:`\Delta t` of the target time.
        num_segments: number of segments :math:`K`.
        t: times in ``[0, 1)``, shape ``(B,)``; uniform when ``None``.
        generator: random generator for ``t``.

    Returns:
        :class:`LossOutput` with terms ``vel`` and ``path``.
    """
    check_same_shape("x0", x0, "x1", x1)
    check_positive_int("num_segments", num_segments)
    if not 0 < dt <= 1 / num_segments:
        raise ValueError(f"dt must be in (0, 1/num_segments], got {dt!r}")
    if t is None:
        t = sample_t(x0.shape[0], like=x0, generator=generator)
    # end of the segment holding t: smallest k/K strictly above t
    seg_end = ((t * num_segments).floor() + 1).clamp(max=num_segments) / num_segments
    r = torch.minimum(t + dt, seg_end)
    te, re, ende = expand_t(t, x0), expand_t(r, x0), expand_t(seg_end, x0)
    xt, xr = linear_path(x0, x1, t).xt, linear_path(x0, x1, r).xt  # one straight path

    vt = velocity(xt, t)
    ft = xt + (ende - te) * vt
    with torch.no_grad():
        vr = (target or velocity)(xr, r)
        fr = xr + (ende - re) * vr
    l_vel = _mse(vt, vr)
    l_path = _mse(ft, fr)
    loss = l_vel + alpha * l_path
    return LossOutput(loss, {"vel": l_vel.detach(), "path": l_path.detach()})


def compute_loss(
    config: LossConfig,
    velocity: Velocity,
    x0: Tensor,
    x1: Tensor,
    *,
    target: Velocity | None = None,
    generator: torch.Generator | None = None,
    paired: bool = False,
) -> LossOutput:
    """Evaluate the objective described by ``config`` on one batch.

    For ``reflow``, ``(x0, x1)`` must be pairs from :func:`make_reflow_pairs`. For
    ``consistency``, ``target`` is the EMA network (stop-gradient self when ``None``).
    ``paired=True`` says the batch is already coupled as the objective asks (for example by
    :class:`ecnf.prefetch.CoupledBatches`), so no coupling is solved here.
    """
    kw = {"sigma": config.sigma, "generator": generator}
    if config.name == "fm":
        loss = flow_matching_loss(velocity, x0, x1, **kw)
        return LossOutput(loss, {"fm": loss.detach()})
    if config.name in ("otcfm", "reflow"):
        # reflow: flow matching on the teacher's (noise, sample) pairs, taken as given
        if config.name == "otcfm" and not paired:
            x0, x1 = couple(x0, x1, "ot")
        loss = flow_matching_loss(velocity, x0, x1, **kw)
        return LossOutput(loss, {"fm": loss.detach()})
    if not paired:
        x0, x1 = couple(x0, x1, config.coupling)
    out = consistency_loss(
        velocity,
        x0,
        x1,
        target=target,
        alpha=config.alpha,
        dt=config.dt,
        num_segments=config.num_segments,
        generator=generator,
    )
    if config.fm_weight > 0:
        fm = flow_matching_loss(velocity, x0, x1, **kw)
        out.terms["fm"] = fm.detach()
        out.loss = out.loss + config.fm_weight * fm
    return out
