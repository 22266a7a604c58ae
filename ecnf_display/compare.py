"""Two flows side by side: the same noise through two models, or one model under two solvers.

:func:`side_by_side` integrates one set of source points with each side's model and solver,
and measures each on the same fresh data: exact W2 beside the data floor
(:func:`ecnf.evaluation.data_floor`), the NFE the solver spent, and the straightness of the
model's own flow (:func:`ecnf_display.labs.straightness` of a fine RK4 solve, so that it
describes the model and not the solver's grid). :data:`LESSONS` are the comparisons the
studio offers in one click.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from torch import Tensor

__all__ = ["LESSONS", "STRAIGHTNESS_STEPS", "Side", "SideResult", "side_by_side", "state_at"]

#: RK4 steps of the fine solve whose trajectories measure a flow's straightness.
STRAIGHTNESS_STEPS = 50


@dataclass(frozen=True)
class Side:
    """One side: a 2D checkpoint and the solver that samples it."""

    checkpoint: str  #: path of a 2D checkpoint
    method: str = "rk4"
    steps: int | None = 10  #: for fixed-step methods
    tol: float | None = None  #: for adaptive ones (rtol = atol)


@dataclass(frozen=True)
class SideResult:
    side: Side
    trajectory: Tensor  #: (T, n, 2), the solver's recorded states
    times: Tensor  #: (T,)
    nfe: int
    seconds: float
    w2: float
    straightness: float  #: mean path length over chord of the fine solve; 1 is straight


#: One-click comparisons: a label, then the two sides as (checkpoint name, method, steps).
LESSONS = {
    "FM against OT-CFM (moons)": (("moons_fm", "rk4", 10), ("moons_otcfm", "rk4", 10)),
    "FM against the consistency loss (moons)": (
        ("moons_fm", "rk4", 10),
        ("moons_consistency", "rk4", 10),
    ),
    "Euler against RK4 at 8 NFE (moons, FM)": (("moons_fm", "euler", 8), ("moons_fm", "rk4", 2)),
    "One Euler step: FM against OT-CFM (8 Gaussians)": (
        ("8gaussians_fm", "euler", 1),
        ("8gaussians_otcfm", "euler", 1),
    ),
}


def side_by_side(sides: list[Side], *, n: int = 1000, seed: int = 0, frames: int = 21):
    """Sample every side from the same ``n`` source points and measure it on the same data.

    Every checkpoint must be a 2D model of the same data and source. Returns
    ``(results, floor)``: one :class:`SideResult` per side, and the data-vs-data W2 floor of
    the ``n`` fresh points.
    """
    from ecnf import integrate, load
    from ecnf.checkpoint import checkpoint_info
    from ecnf.data import is_toy
    from ecnf.evaluation import data_floor, toy_sets
    from ecnf.metrics import wasserstein2
    from ecnf.solvers import solver_options

    from .labs import straightness

    if not sides:
        raise ValueError("side_by_side needs at least one side")
    metas = [checkpoint_info(s.checkpoint)["metadata"] for s in sides]
    worlds = {(m["dataset"], m.get("source", "gaussian")) for m in metas}
    if len(worlds) != 1:
        described = ", ".join(f"{d} from {s}" for d, s in sorted(worlds))
        raise ValueError(
            f"the sides were trained on different data ({described}); compare models of one "
            "data set and source"
        )
    ((data, source),) = worlds
    if not is_toy(data):
        raise ValueError(f"side by side compares 2D models; {sides[0].checkpoint} is {data!r}")
    sets = toy_sets(data, source, n, seed)
    results = []
    for side in sides:
        model = load(side.checkpoint, device="cpu")
        tols = {} if side.tol is None else {"rtol": side.tol, "atol": side.tol}
        kw = solver_options(side.method, steps=side.steps, frames=frames, **tols)
        start = time.perf_counter()
        sol = integrate(model, sets.x0, return_trajectory=True, **kw)
        seconds = time.perf_counter() - start
        fine = integrate(
            model, sets.x0, method="rk4", steps=STRAIGHTNESS_STEPS, return_trajectory=True
        )
        results.append(
            SideResult(
                side=side,
                trajectory=sol.trajectory,
                times=sol.times,
                nfe=sol.nfe,
                seconds=seconds,
                w2=wasserstein2(sol.x, sets.fresh),
                straightness=float(straightness(fine.trajectory).mean()),
            )
        )
    return results, data_floor(sets)["w2"]


def state_at(result: SideResult, t: float) -> tuple[Tensor, float]:
    """The recorded state nearest to time ``t``, and that state's time.

    Example:
        >>> import torch
        >>> r = SideResult(Side("m"), torch.arange(3.0)[:, None, None], torch.tensor([0, .5, 1]),
        ...                2, 0.0, 0.0, 1.0)
        >>> state_at(r, 0.7)
        (tensor([[1.]]), 0.5)
    """
    k = int((result.times - t).abs().argmin())
    return result.trajectory[k], float(result.times[k])
