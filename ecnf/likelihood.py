r"""Exact log-likelihoods of a CNF by the instantaneous change of variables.

Along :math:`dx/dt = v(x, t)` the log-density obeys
:math:`\frac{d}{dt}\log p_t(x_t) = -\nabla\cdot v(x_t, t)` (Chen et al. 2018,
arXiv:1806.07366), so integrating from data (:math:`t = 1`) back to noise (:math:`t = 0`)

.. math:: \log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\cdot v(x_t, t)\, dt .

The divergence is computed exactly (one autograd pass per dimension) or estimated with
Hutchinson's trace estimator :math:`\nabla\cdot v = \mathbb{E}_\varepsilon[\varepsilon^\top
J_v \varepsilon]` (Grathwohl et al. 2018, arXiv:1810.01367), with probes fixed for a solve.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_choice, check_finite, check_positive_int
from .solvers import integrate, solver_options

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "LikelihoodResult",
    "bits_per_dim",
    "dequantize",
    "divergence_exact",
    "divergence_hutchinson",
    "log_prob",
    "sample_probes",
    "standard_normal_log_prob",
]

Velocity = Callable[[Tensor, Tensor], Tensor]

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


@dataclass
class LikelihoodResult:
    """Result of :func:`log_prob`.

    Attributes:
        log_prob: :math:`\\log p_1(x_1)` in nats, shape ``(B,)``.
        x0: the points' images in noise space, shape ``(B, *dims)``.
        log_prob_x0: :math:`\\log p_0(x_0)`, shape ``(B,)``.
        delta_log_prob: :math:`-\\int_0^1 \\nabla\\cdot v\\,dt`, shape ``(B,)``.
        nfe: velocity evaluations spent.
    """

    log_prob: Tensor
    x0: Tensor
    log_prob_x0: Tensor
    delta_log_prob: Tensor
    nfe: int


def standard_normal_log_prob(x: Tensor) -> Tensor:
    r""":math:`\log \mathcal{N}(x; 0, I)` summed over all but the batch dimension, ``(B,)``."""
    flat = x.flatten(1)
    return -0.5 * (flat.pow(2).sum(1) + flat.shape[1] * math.log(2 * math.pi))


def _track(x: Tensor, create_graph: bool) -> Tensor:
    """``x`` as an input whose gradient autograd can take; kept in its graph when training."""
    if create_graph and x.requires_grad:
        return x
    return x.detach().requires_grad_(True)


def divergence_exact(
    velocity: Velocity, x: Tensor, t: Tensor, *, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Velocity and its exact divergence :math:`\sum_i \partial v_i / \partial x_i`.

    One backward pass per dimension: use for small dimension (2D, 8x8 images).

    Arguments:
        velocity: ``(x, t) -> v``.
        x: shape ``(B, *dims)``.
        t: shape ``(B,)``.
        create_graph: keep the graph of ``v`` and ``div`` (to differentiate them in turn,
            e.g. to train on the likelihood); otherwise both come back detached.

    Returns:
        ``(v, div)`` of shapes ``(B, *dims)`` and ``(B,)``.
    """
    with torch.enable_grad():
        x = _track(x, create_graph)
        v = velocity(x, t)
        flat_v = v.flatten(1)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if not v.requires_grad:  # a field that does not depend on x
            return v, div
        dims = flat_v.shape[1]
        for i in range(dims):
            (g,) = torch.autograd.grad(
                flat_v[:, i].sum(),
                x,
                retain_graph=create_graph or i < dims - 1,
                create_graph=create_graph,
                allow_unused=True,
            )
            if g is not None:
                div = div + g.flatten(1)[:, i]
    return (v, div) if create_graph else (v.detach(), div.detach())


def sample_probes(
    num_probes: int,
    x: Tensor,
    kind: str = "rademacher",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Probe vectors with zero mean and identity covariance, shape ``(num_probes, *x.shape)``."""
    check_choice("probe", kind, PROBES)
    check_positive_int("num_probes", num_probes)
    shape = (num_probes, *x.shape)
    eps = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    if kind == "rademacher":
        eps = eps.sign()
        eps[eps == 0] = 1.0
    return eps


def divergence_hutchinson(
    velocity: Velocity, x: Tensor, t: Tensor, probes: Tensor, *, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Velocity and Hutchinson's estimate :math:`\frac1k\sum_j \varepsilon_j^\top J \varepsilon_j`.

    Arguments:
        velocity: ``(x, t) -> v``.
        x: shape ``(B, *dims)``.
        t: shape ``(B,)``.
        probes: shape ``(k, B, *dims)``, e.g. from :func:`sample_probes`.
        create_graph: as for :func:`divergence_exact`.

    Returns:
        ``(v, div)`` of shapes ``(B, *dims)`` and ``(B,)``; ``div`` is unbiased.
    """
    with torch.enable_grad():
        x = _track(x, create_graph)
        v = velocity(x, t)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if not v.requires_grad:  # a field that does not depend on x
            return v, div
        k = probes.shape[0]
        for j in range(k):
            (g,) = torch.autograd.grad(
                v,
                x,
                grad_outputs=probes[j],
                retain_graph=create_graph or j < k - 1,
                create_graph=create_graph,
                allow_unused=True,
            )
            if g is not None:
                div = div + (g * probes[j]).flatten(1).sum(1)
    return (v, div / k) if create_graph else (v.detach(), div.detach() / k)


def log_prob(
    velocity: Velocity,
    x1: Tensor,
    *,
    method: str = "rk4",
    steps: int | None = 20,
    divergence: str = "exact",
    num_probes: int = 1,
    probe: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    source_log_prob: Callable[[Tensor], Tensor] = standard_normal_log_prob,
    generator: torch.Generator | None = None,
    differentiable: bool = False,
) -> LikelihoodResult:
    r"""Log-density of ``x1`` under the flow, integrating data (t=1) back to noise (t=0).

    Arguments:
        velocity: ``(x, t) -> v``.
        x1: data points, shape ``(B, *dims)``.
        method: solver (see :data:`ecnf.solvers.METHODS`); adaptive methods ignore ``steps``.
        steps: fixed-step count.
        divergence: ``exact`` or ``hutchinson``.
        num_probes: Hutchinson probes per evaluation (fixed over the solve).
        probe: ``rademacher`` or ``gaussian``.
        rtol, atol: adaptive tolerances.
        source_log_prob: :math:`\log p_0`, standard normal by default.
        generator: random generator for the probes.
        differentiable: keep the whole solve in autograd's graph, so that
            ``result.log_prob`` can be differentiated with respect to the network's
            parameters: maximum-likelihood training by simulation (Chen et al. 2018). It
            costs memory in proportion to the number of solver evaluations; with an adaptive
            method the step-size control is not differentiated.

    Returns:
        A :class:`LikelihoodResult`.

    Example:
        >>> x1 = torch.randn(5, 2)
        >>> res = log_prob(lambda x, t: torch.zeros_like(x), x1, steps=2)
        >>> torch.allclose(res.log_prob, standard_normal_log_prob(x1))
        True
    """
    check_choice("divergence", divergence, DIVERGENCES)
    check_finite("x1", x1)
    batch, shape = x1.shape[0], x1.shape
    dims = x1[0].numel()
    probes = None
    if divergence == "hutchinson":
        probes = sample_probes(num_probes, x1, probe, generator)

    def augmented(state: Tensor, t: Tensor) -> Tensor:
        x = state[:, :dims].reshape(shape)
        if probes is None:
            v, div = divergence_exact(velocity, x, t, create_graph=differentiable)
        else:
            v, div = divergence_hutchinson(velocity, x, t, probes, create_graph=differentiable)
        return torch.cat([v.flatten(1), div[:, None]], dim=1)

    start = x1 if differentiable else x1.detach()
    state = torch.cat([start.flatten(1), x1.new_zeros(batch, 1)], dim=1)
    kw = solver_options(method, steps=steps, rtol=rtol, atol=atol)
    sol = integrate(augmented, state, t0=1.0, t1=0.0, grad=differentiable, **kw)
    x0 = sol.x[:, :dims].reshape(shape)
    delta = sol.x[:, dims]
    lp0 = source_log_prob(x0)
    return LikelihoodResult(lp0 + delta, x0, lp0, delta, sol.nfe)


def dequantize(x: Tensor, generator: torch.Generator | None = None, num_bins: int = 256) -> Tensor:
    r"""Uniformly dequantize images scaled to ``[-1, 1]`` by ``ToTensor`` + ``Normalize(0.5)``.

    Recovers the integer level :math:`k = \mathrm{round}((x + 1)/2 \cdot 255)` and returns
    :math:`2 (k + u) / 256 - 1` with :math:`u \sim U[0, 1)`: a continuous point inside the
    level's bin, as likelihood evaluation on discrete data requires (Theis et al. 2016).
    """
    k = ((x + 1) / 2 * (num_bins - 1)).round().clamp(0, num_bins - 1)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return 2 * (k + u) / num_bins - 1


def bits_per_dim(
    log_prob: Tensor, num_dims: int, *, num_bins: int = 256, data_range: float = 2.0
) -> Tensor:
    r"""Bits per dimension of dequantized ``num_bins``-level data spanning ``data_range``.

    Each bin has width :math:`w = \text{data\_range}/\text{num\_bins}` in model space
    (``2/256`` for 8-bit images in ``[-1, 1]``), so the discrete probability of a level is
    :math:`p(x) w^D` and

    .. math:: \text{bpd} = -\frac{\log p(x) + D \log w}{D \log 2}
        = -\frac{\log p(x)}{D\log 2} + 7 \text{ for 8 bits in } [-1, 1].
    """
    check_positive_int("num_dims", num_dims)
    width = data_range / num_bins
    return -(log_prob + num_dims * math.log(width)) / (num_dims * math.log(2.0))
