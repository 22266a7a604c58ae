r"""Training objectives: flow matching, OT-CFM, reflow, the velocity consistency loss and
MeanFlow.

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
from .guidance import Labelled, drop_labels
from .paths import expand_t, linear_path, sample_t
from .solvers import integrate

__all__ = [
    "LOSSES",
    "TIME_SAMPLINGS",
    "LossConfig",
    "LossOutput",
    "compute_loss",
    "consistency_loss",
    "flow_matching_loss",
    "make_reflow_pairs",
    "meanflow_loss",
    "meanflow_target",
    "ot_cfm_loss",
    "reflow_loss",
    "sample_times",
]

Velocity = Callable[[Tensor, Tensor], Tensor]

LOSSES = ("fm", "otcfm", "reflow", "consistency", "meanflow")
#: How training times are drawn: uniform on [0, 1), or logit-normal (the logistic of a normal
#: with mean ``time_mu`` and standard deviation ``time_sigma``; Esser et al. 2024, SD3).
TIME_SAMPLINGS = ("uniform", "logit_normal")


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
        time_sampling: how training times are drawn, one of :data:`TIME_SAMPLINGS`.
        time_mu, time_sigma: the normal behind ``logit_normal`` sampling (in ECNF's direction
            of time, noise at 0: a positive ``time_mu`` puts more times near the data).
        interval_share: ``meanflow``: the share of pairs with ``r != t`` (the others train the
            instantaneous velocity, as flow matching does).
        adaptive_power, adaptive_eps: ``meanflow``'s adaptive weighting: each sample's squared
            error ``e`` is weighted by ``1 / (e + eps) ** power`` (stopped gradient); power 0
            is the plain mean squared error.
    """

    name: str = "fm"
    sigma: float = 0.0
    alpha: float = 1.0
    dt: float = 0.01
    num_segments: int = 1
    fm_weight: float = 0.0
    coupling: str = "independent"
    time_sampling: str = "uniform"
    time_mu: float = 0.0
    time_sigma: float = 1.0
    interval_share: float = 0.25
    adaptive_power: float = 1.0
    adaptive_eps: float = 1e-3

    def __post_init__(self) -> None:
        check_choice("loss", self.name, LOSSES)
        check_choice("coupling", self.coupling, ("independent", "ot"))
        check_choice("time_sampling", self.time_sampling, TIME_SAMPLINGS)
        if not self.time_sigma > 0:
            raise ValueError(f"time_sigma must be > 0, got {self.time_sigma!r}")
        if not 0 <= self.interval_share <= 1:
            raise ValueError(f"interval_share must be in [0, 1], got {self.interval_share!r}")
        if not self.adaptive_power >= 0 or not self.adaptive_eps > 0:
            raise ValueError(
                "adaptive_power must be >= 0 and adaptive_eps > 0, got "
                f"{self.adaptive_power!r} and {self.adaptive_eps!r}"
            )
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
        return self.name == "otcfm" or (
            self.name in ("consistency", "meanflow") and self.coupling == "ot"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def sample_times(
    batch: int,
    *,
    like: Tensor,
    sampling: str = "uniform",
    mu: float = 0.0,
    sigma: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Training times in ``[0, 1)``, shape ``(batch,)``: uniform, or logit-normal (the
    logistic function of ``N(mu, sigma^2)``), on ``like``'s device and dtype."""
    check_choice("time_sampling", sampling, TIME_SAMPLINGS)
    if sampling == "uniform":
        return sample_t(batch, like=like, generator=generator)
    z = torch.randn(batch, device=like.device, dtype=like.dtype, generator=generator)
    return torch.sigmoid(mu + sigma * z)


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


def meanflow_target(
    model: Callable[..., Tensor], x: Tensor, t: Tensor, r: Tensor, v: Tensor
) -> tuple[Tensor, Tensor]:
    r"""The network's average velocity at ``(x, t, r)`` and its MeanFlow target.

    Returns ``(u, target)`` with ``u = model(x, t, r)`` (in autograd's graph) and the detached
    ``target = v + (r - t) du/dt``, where ``du/dt = (grad_x u) v + d_t u`` is the derivative
    along the velocity ``v``, one forward-mode Jacobian-vector product (see
    :func:`meanflow_loss`).
    """

    def u_at(y: Tensor, start: Tensor) -> Tensor:
        return model(y, start, r)

    u, du_dt = torch.func.jvp(u_at, (x, t), (v, torch.ones_like(t)))
    return u, (v + expand_t(r - t, x) * du_dt).detach()


def meanflow_loss(
    model: Callable[..., Tensor],
    x0: Tensor,
    x1: Tensor,
    *,
    interval_share: float = 0.25,
    adaptive_power: float = 1.0,
    adaptive_eps: float = 1e-3,
    times: tuple[Tensor, Tensor] | None = None,
    time_sampling: str = "uniform",
    time_mu: float = 0.0,
    time_sigma: float = 1.0,
    generator: torch.Generator | None = None,
) -> LossOutput:
    r"""The MeanFlow objective: regress the average velocity over an interval.

    MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling",
    arXiv:2505.13447) learns :math:`u(x, t, r)`, the average velocity of the flow between
    times :math:`t` and :math:`r`, so that one step :math:`x_r = x_t + (r - t)\, u(x_t, t, r)`
    follows the flow over the whole interval.

    **Time conventions.** The paper puts data at :math:`\tau = 0` and noise at :math:`\tau = 1`
    (:math:`z_\tau = (1 - \tau) x + \tau \varepsilon`) and integrates from :math:`\tau = t_p`
    down to :math:`r_p < t_p`. ECNF puts noise at 0 and data at 1, so :math:`t = 1 - t_p`,
    :math:`r = 1 - r_p`, with :math:`t < r`, and ECNF's velocity :math:`x_1 - x_0` is minus the
    paper's. In ECNF's direction, with :math:`x_s` a trajectory of the flow,

    .. math:: (r - t)\, u(x_t, t, r) = \int_t^r v(x_s, s)\, ds .

    Differentiating in the start time :math:`t` (the point :math:`x_t` moving with the flow,
    :math:`r` fixed) gives :math:`-u + (r - t) \frac{d}{dt} u = -v`, the MeanFlow identity

    .. math:: u(x_t, t, r) = v(x_t, t) + (r - t)\, \frac{d}{dt} u(x_t, t, r), \qquad
        \frac{d}{dt} u = (\nabla_x u)\, v + \partial_t u ,

    which is the paper's eq. 6 after the change of variables (both signs flip). The total
    derivative is one Jacobian-vector product of the network with tangent :math:`(v, 1, 0)` in
    :math:`(x, t, r)` (``torch.func.jvp``). As in the paper, :math:`v` is the conditional
    velocity :math:`x_1 - x_0` of the straight path, the target is

    .. math:: u_{tgt} = \operatorname{sg}\big(v + (r - t)\, \tfrac{d}{dt} u_\theta\big),

    and each sample's squared error :math:`e = \lVert u_\theta - u_{tgt} \rVert^2` (averaged
    over dimensions here) is weighted adaptively by :math:`\operatorname{sg}(1 / (e + c)^p)`
    (the paper's :math:`p = 1`, :math:`c = 10^{-3}`). With :math:`r = t` the target is
    :math:`v` and, unweighted (:math:`p = 0`), the loss is flow matching's.

    Arguments:
        model: a network ``(x, t, r) -> u`` (built with ``mean_flow=True``).
        x0: noise, shape ``(B, *dims)``.
        x1: data, shape ``(B, *dims)``.
        interval_share: the share of pairs given ``r != t``; the others get ``r = t`` (the
            paper finds 25% best).
        adaptive_power, adaptive_eps: :math:`p` and :math:`c` of the weighting.
        times: ``(t, r)`` with ``t <= r``, each of shape ``(B,)``; drawn when ``None``: two
            times from ``time_sampling``, ordered, then ``r = t`` for the share not given an
            interval.
        time_sampling, time_mu, time_sigma: see :func:`sample_times`.
        generator: random generator for the times.

    Returns:
        :class:`LossOutput`; its term ``meanflow`` is the unweighted mean squared error.
    """
    check_same_shape("x0", x0, "x1", x1)
    batch = x0.shape[0]
    if times is None:
        draw = {"like": x0, "sampling": time_sampling, "mu": time_mu, "sigma": time_sigma}
        a = sample_times(batch, generator=generator, **draw)
        b = sample_times(batch, generator=generator, **draw)
        t, r = torch.minimum(a, b), torch.maximum(a, b)
        keep = torch.rand(batch, device=x0.device, generator=generator) < interval_share
        r = torch.where(keep, r, t)
    else:
        t, r = times
        if t.shape != (batch,) or r.shape != (batch,):
            raise ValueError(f"times must be two tensors of shape ({batch},)")
        if bool((r < t).any()):
            raise ValueError("times must satisfy t <= r (ECNF's time runs from noise to data)")
    v = x1 - x0
    xt = torch.addcmul(x0, expand_t(t, x0), v)
    u, target = meanflow_target(model, xt, t, r, v)
    error = (u - target).pow(2).flatten(1).mean(1)  # (B,)
    weight = (error.detach() + adaptive_eps).pow(-adaptive_power)
    loss = (weight * error).mean()
    return LossOutput(loss, {"meanflow": error.mean().detach()})


def compute_loss(
    config: LossConfig,
    velocity: Velocity,
    x0: Tensor,
    x1: Tensor,
    *,
    target: Velocity | None = None,
    generator: torch.Generator | None = None,
    paired: bool = False,
    labels: Tensor | None = None,
    cond_drop: float = 0.0,
) -> LossOutput:
    """Evaluate the objective described by ``config`` on one batch.

    For ``reflow``, ``(x0, x1)`` must be pairs from :func:`make_reflow_pairs`. For
    ``consistency``, ``target`` is the EMA network (stop-gradient self when ``None``).
    ``paired=True`` says the batch is already coupled as the objective asks (for example by
    :class:`ecnf.prefetch.CoupledBatches`), so no coupling is solved here.

    For a class-conditional network (``num_classes > 0``), ``labels`` are the classes of
    ``x1``: an OT coupling is then solved within each class
    (:func:`ecnf.couplings.ot_coupling`), a share ``cond_drop`` of the labels is replaced
    by the null label (:func:`ecnf.guidance.drop_labels`), and the network (and ``target``)
    is evaluated on them.
    """
    if labels is not None:
        if config.name == "reflow":
            raise ValueError(
                "the reflow loss trains on a teacher's pairs and takes no labels; "
                "class-conditional reflow is not supported"
            )
        network = getattr(velocity, "module", velocity)  # under DistributedDataParallel
        num_classes = getattr(getattr(network, "config", None), "num_classes", 0)
        if not num_classes:
            raise ValueError("labels were given, but the network is unconditional")
        if not paired and config.uses_ot:
            x0, x1 = couple(x0, x1, "ot", labels=labels)
            paired = True
        labels = drop_labels(labels, num_classes, cond_drop, generator=generator)
        velocity = Labelled(velocity, labels)
        if target is not None:
            target = Labelled(target, labels)
    kw = {"sigma": config.sigma, "generator": generator}
    if config.time_sampling != "uniform" and config.name != "meanflow":
        kw["t"] = sample_times(
            x0.shape[0],
            like=x0,
            sampling=config.time_sampling,
            mu=config.time_mu,
            sigma=config.time_sigma,
            generator=generator,
        )
    if config.name == "meanflow":
        if not paired and config.coupling == "ot":
            x0, x1 = couple(x0, x1, "ot")
        return meanflow_loss(
            velocity,
            x0,
            x1,
            interval_share=config.interval_share,
            adaptive_power=config.adaptive_power,
            adaptive_eps=config.adaptive_eps,
            time_sampling=config.time_sampling,
            time_mu=config.time_mu,
            time_sigma=config.time_sigma,
            generator=generator,
        )
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
        t=kw.get("t"),
        generator=generator,
    )
    if config.fm_weight > 0:
        fm = flow_matching_loss(velocity, x0, x1, **kw)
        out.terms["fm"] = fm.detach()
        out.loss = out.loss + config.fm_weight * fm
    return out
