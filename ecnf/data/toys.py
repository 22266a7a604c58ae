r"""Two-dimensional toy distributions, used as data (target) or as noise (source).

Every sampler draws from torch with the generator it is given, so a seed fixes the sample
exactly, and none touches a global random state. The scales follow the conventions of the
FFJORD and flow matching toy benchmarks: each distribution lies roughly within
:math:`[-4, 4]^2` with a spread comparable to a standard normal (standard deviations of
about 1 to 2.5 per coordinate).

============  ====================================================================
name          distribution
============  ====================================================================
gaussian      standard normal :math:`\mathcal{N}(0, I)`
uniform       uniform on the square :math:`[-\sqrt{3}, \sqrt{3}]^2` (unit variance)
8gaussians    8 Gaussians (std 0.35) centred on a circle of radius :math:`2\sqrt{2}`
25gaussians   5 x 5 grid of Gaussians (std 0.1), centres 1.5 apart in :math:`[-3, 3]^2`
moons         two interleaved half circles (noise 0.1 before scaling by 2)
circles       two concentric circles of radii 3 and 1.5 (noise 0.24)
rings         four concentric circles of radii 0.75, 1.5, 2.25, 3 (noise 0.08)
checkerboard  uniform on the 8 black squares of a 4 x 4 board covering :math:`[-4, 4]^2`
2spirals      two interleaved spirals (noise 0.1)
swissroll     the swiss roll seen from above, scaled by 1/5 (noise 0.2)
pinwheel      five curved arms
============  ====================================================================

References:
    | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models
      (Grathwohl et al., 2019) https://arxiv.org/abs/1810.01367
    | Improving and generalizing flow-based generative models with minibatch optimal
      transport (Tong et al., 2023) https://arxiv.org/abs/2302.00482
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Generator, Tensor

from .._checks import check_positive_int
from .drawn import drawing_file, is_drawn, load_drawing

__all__ = [
    "TOY_CLASSES",
    "TOY_DATASETS",
    "TOY_EXTENT",
    "check_toy",
    "is_toy",
    "sample_toy",
    "sample_toy_labelled",
]

#: Half-width of the square ``[-TOY_EXTENT, TOY_EXTENT]^2`` on which 2D data, samples and
#: flows are drawn: every toy lies roughly within ``[-4, 4]^2``; half a unit is margin.
TOY_EXTENT = 4.5

#: A sampler returns the points and, for a labelled toy, each point's class (else None).
_Sampler = Callable[
    [int, Generator | None, torch.device, torch.dtype], tuple[Tensor, Tensor | None]
]


def _randn(n: int, g: Generator | None, device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.randn(n, 2, generator=g, device=device, dtype=dtype)


def _rand(shape: tuple[int, ...], g, device, dtype) -> Tensor:
    return torch.rand(shape, generator=g, device=device, dtype=dtype)


def _choice(n: int, k: int, g, device) -> Tensor:
    return torch.randint(k, (n,), generator=g, device=device)


def _gaussian(n, g, device, dtype):
    return _randn(n, g, device, dtype), None


def _uniform(n, g, device, dtype):
    return (2 * _rand((n, 2), g, device, dtype) - 1) * math.sqrt(3.0), None


def _mixture(centres: Tensor, std: float, n, g, device, dtype):
    which = _choice(n, centres.shape[0], g, device)
    return centres.to(device, dtype)[which] + std * _randn(n, g, device, dtype), which


def _eight_gaussians(n, g, device, dtype):
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = 2 * math.sqrt(2) * torch.stack([angles.cos(), angles.sin()], dim=1)
    return _mixture(centres, 0.5 / math.sqrt(2), n, g, device, dtype)


def _twenty_five_gaussians(n, g, device, dtype):
    ticks = torch.arange(-2, 3, dtype=torch.float64) * 1.5
    centres = torch.cartesian_prod(ticks, ticks)
    return _mixture(centres, 0.1, n, g, device, dtype)


def _moons(n, g, device, dtype):
    # The two half circles of sklearn's make_moons, at uniform random angles, then
    # scaled by 2 and shifted to centre the pair (FFJORD's convention).
    angle = math.pi * _rand((n,), g, device, dtype)
    lower = _choice(n, 2, g, device).bool()
    x = torch.where(lower, 1 - angle.cos(), angle.cos())
    y = torch.where(lower, 0.5 - angle.sin(), angle.sin())
    points = torch.stack([x, y], dim=1) + 0.1 * _randn(n, g, device, dtype)
    return 2 * points + torch.tensor([-1.0, -0.2], device=device, dtype=dtype), lower.long()


def _circles_of(radii: Tensor, noise: float, n, g, device, dtype):
    which = _choice(n, radii.numel(), g, device)
    radius = radii.to(device, dtype)[which]
    angle = 2 * math.pi * _rand((n,), g, device, dtype)
    points = radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    return points + noise * _randn(n, g, device, dtype), which


def _circles(n, g, device, dtype):
    return _circles_of(torch.tensor([3.0, 1.5]), 0.24, n, g, device, dtype)


def _rings(n, g, device, dtype):
    return _circles_of(torch.tensor([0.75, 1.5, 2.25, 3.0]), 0.08, n, g, device, dtype)


def _checkerboard(n, g, device, dtype):
    # Cells of side 2; (floor(x / 2) + floor(y / 2)) is even on the black cells.
    x = 8 * _rand((n,), g, device, dtype) - 4
    row = 2 * _choice(n, 2, g, device).to(dtype) + torch.floor(x / 2).remainder(2)
    y = 2 * (row - 2) + 2 * _rand((n,), g, device, dtype)
    return torch.stack([x, y], dim=1), None


def _two_spirals(n, g, device, dtype):
    turn = _rand((n,), g, device, dtype).sqrt() * (3 * math.pi)
    sign = 1 - 2 * _choice(n, 2, g, device).to(dtype)
    offset = 0.5 * _rand((n, 2), g, device, dtype)
    arm = torch.stack([-turn.cos() * turn, turn.sin() * turn], dim=1) + offset
    points = sign[:, None] * arm / 3 + 0.1 * _randn(n, g, device, dtype)
    return points, (sign < 0).long()


def _swissroll(n, g, device, dtype):
    t = 1.5 * math.pi * (1 + 2 * _rand((n,), g, device, dtype))
    points = torch.stack([t * t.cos(), t * t.sin()], dim=1)
    return (points + _randn(n, g, device, dtype)) / 5, None


def _pinwheel(n, g, device, dtype):
    arms, rate = 5, 0.25
    radial = 1 + 0.3 * torch.randn(n, generator=g, device=device, dtype=dtype)
    tangential = 0.1 * torch.randn(n, generator=g, device=device, dtype=dtype)
    which = _choice(n, arms, g, device)
    arm = which.to(dtype)
    angle = arm * (2 * math.pi / arms) + rate * radial.exp()
    cos, sin = angle.cos(), angle.sin()
    x = cos * radial - sin * tangential
    y = sin * radial + cos * tangential
    return 2 * torch.stack([x, y], dim=1), which


_SAMPLERS: dict[str, _Sampler] = {
    "gaussian": _gaussian,
    "uniform": _uniform,
    "8gaussians": _eight_gaussians,
    "25gaussians": _twenty_five_gaussians,
    "moons": _moons,
    "circles": _circles,
    "rings": _rings,
    "checkerboard": _checkerboard,
    "2spirals": _two_spirals,
    "swissroll": _swissroll,
    "pinwheel": _pinwheel,
}

#: The built-in distributions of :func:`sample_toy`; it also takes ``"drawn:<file>"``.
TOY_DATASETS: tuple[str, ...] = tuple(_SAMPLERS)

#: The classes of the labelled toys, in label order (:func:`sample_toy_labelled`): the
#: modes of the mixtures, the two moons, circles and spirals, the rings and the arms.
TOY_CLASSES: dict[str, tuple[str, ...]] = {
    "8gaussians": tuple(f"mode {k}" for k in range(8)),
    "25gaussians": tuple(f"mode {k}" for k in range(25)),
    "moons": ("upper moon", "lower moon"),
    "circles": ("outer circle", "inner circle"),
    "rings": tuple(f"ring {k}" for k in range(4)),
    "2spirals": ("first spiral", "second spiral"),
    "pinwheel": tuple(f"arm {k}" for k in range(5)),
}


def is_toy(name: str) -> bool:
    """Whether ``name`` is a 2D distribution: a built-in toy or a drawing ``"drawn:<file>"``.

    Example:
        >>> is_toy("moons"), is_toy("drawn:heart.png"), is_toy("digits")
        (True, True, False)
    """
    return name in TOY_DATASETS or is_drawn(name)


def check_toy(argument: str, name: str) -> str:
    """Return ``name`` if it is a 2D distribution, else raise a ``ValueError`` naming it."""
    if is_drawn(name):
        drawing_file(name)
        return name
    if name not in TOY_DATASETS:
        raise ValueError(
            f"{argument}={name!r} is not supported; choose one of {', '.join(TOY_DATASETS)} "
            "or a picture as 'drawn:<file>'"
        )
    return name


def sample_toy(
    name: str,
    n: int,
    *,
    generator: Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Draw ``n`` points from the 2D toy distribution ``name``.

    The points are drawn on the generator's device (the CPU without a generator), in
    ``dtype``, then moved to ``device``; the same generator seed always gives the same
    points.

    Arguments:
        name: one of :data:`TOY_DATASETS`, or ``"drawn:<file>"`` for the density of a
            picture (see :mod:`ecnf.data.drawn`).
        n: number of points.
        generator: the source of randomness; ``None`` uses torch's global generator.
        device: where to return the points (default: where they were drawn).
        dtype: a floating point type.

    Returns:
        The points, shape ``(n, 2)``.

    Example:
        >>> x1 = sample_toy("moons", 512, generator=torch.Generator().manual_seed(0))
        >>> x1.shape
        torch.Size([512, 2])
        >>> bool(x1.abs().max() < 4)
        True
    """
    check_toy("dataset", name)
    check_positive_int("n", n)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating point type, got {dtype}")
    if is_drawn(name):
        return load_drawing(name).sample(n, generator=generator, device=device, dtype=dtype)
    where = generator.device if generator is not None else torch.device("cpu")
    points, _ = _SAMPLERS[name](n, generator, where, dtype)
    return points if device is None else points.to(device)


def sample_toy_labelled(
    name: str,
    n: int,
    *,
    generator: Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """The points of :func:`sample_toy` (the same ones for the same generator) and the
    class each was drawn from, for the toys of :data:`TOY_CLASSES` and drawings of several
    colours (:meth:`~ecnf.data.Drawing.sample_labelled`).

    Returns:
        ``(points, labels)``: shapes ``(n, 2)`` and ``(n,)`` (int64, ``0 .. K - 1``).

    Example:
        >>> x, y = sample_toy_labelled("moons", 6, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(x, sample_toy("moons", 6, generator=torch.Generator().manual_seed(0)))
        True
        >>> sorted(set(y.tolist())) <= [0, 1]
        True
    """
    check_toy("dataset", name)
    if is_drawn(name):
        check_positive_int("n", n)
        drawing = load_drawing(name)
        return drawing.sample_labelled(n, generator=generator, device=device, dtype=dtype)
    if name not in TOY_CLASSES:
        raise ValueError(
            f"dataset={name!r} has no classes; the labelled toys are {', '.join(TOY_CLASSES)}"
        )
    check_positive_int("n", n)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating point type, got {dtype}")
    where = generator.device if generator is not None else torch.device("cpu")
    points, labels = _SAMPLERS[name](n, generator, where, dtype)
    if device is not None:
        points, labels = points.to(device), labels.to(device)
    return points, labels.long()
