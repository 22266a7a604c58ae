"""Sections 1 and 2: sampling cost of ECNF's integrator against torchdiffeq and flow_matching.

The same trained network, the same noise and the same time grid go through four integrators:

* ``floor``: a bare loop that only calls the network (with a ``(B,)`` time vector) and does
  the method's update; nothing an integrator could do costs less;
* ``ecnf``: :func:`ecnf.integrate`;
* ``torchdiffeq``: ``torchdiffeq.odeint`` on the grid;
* ``flow_matching``: ``flow_matching.solver.ODESolver.sample`` on the grid.

Fixed-step methods report each integrator's time over the floor's (median of per-round
ratios) and the largest difference of its samples from ECNF's. torchdiffeq's (and so
flow_matching's) ``rk4`` is Kutta's 3/8 rule, not the classical RK4 that ECNF and the floor
use: same order and cost, slightly different numbers. Adaptive solving (dopri5) reports NFE
and time at equal tolerances.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from flow_matching.solver import ODESolver
from torch import Tensor, nn
from torchdiffeq import odeint

from ecnf import integrate, load
from ecnf.solvers import nfe_per_step

from .common import first_timing, interleaved, interleaved_retimed, lost, ratio, stats

__all__ = ["INTEGRATORS", "floor_solve", "markdown", "peer_solve", "run"]

ROOT = Path(__file__).resolve().parents[1]
INTEGRATORS = ("floor", "ecnf", "torchdiffeq", "flow_matching")


def floor_solve(net: nn.Module, x0: Tensor, method: str, steps: int) -> Tensor:
    """The least a fixed-step solve on a uniform grid from 0 to 1 can do."""
    with torch.no_grad():
        batch, h, x = x0.shape[0], 1.0 / steps, x0
        for i in range(steps):
            t = i * h
            k1 = net(x, x.new_full((batch,), t))
            if method == "euler":
                x = torch.add(x, k1, alpha=h)
            elif method == "midpoint":
                x = torch.add(
                    x,
                    net(torch.add(x, k1, alpha=0.5 * h), x.new_full((batch,), t + 0.5 * h)),
                    alpha=h,
                )
            else:
                k2 = net(torch.add(x, k1, alpha=0.5 * h), x.new_full((batch,), t + 0.5 * h))
                k3 = net(torch.add(x, k2, alpha=0.5 * h), x.new_full((batch,), t + 0.5 * h))
                k4 = net(torch.add(x, k3, alpha=h), x.new_full((batch,), t + h))
                x = torch.add(
                    x, torch.add(torch.add(k1, torch.add(k2, k3), alpha=2.0), k4), alpha=h / 6.0
                )
        return x


def peer_solve(
    name: str, net: nn.Module, x0: Tensor, method: str, steps: int | None, **tol
) -> Callable[[], Tensor]:
    """A call of torchdiffeq's ``odeint`` or flow_matching's ``ODESolver`` as their users write it.

    ``steps=None`` asks for the adaptive ``method`` at tolerances ``tol`` (``rtol``, ``atol``).
    """
    batch = x0.shape[0]
    n = 1 if steps is None else steps

    if name == "torchdiffeq":

        def func(t: Tensor, x: Tensor) -> Tensor:
            return net(x, t.expand(batch))

        def solve() -> Tensor:
            with torch.no_grad():
                grid = torch.linspace(0.0, 1.0, n + 1, dtype=x0.dtype, device=x0.device)
                return odeint(func, x0, grid, method=method, **tol)[-1]

        return solve
    if name == "flow_matching":
        solver = ODESolver(velocity_model=lambda x, t: net(x, t.expand(x.shape[0])))

        def solve() -> Tensor:
            grid = torch.linspace(0.0, 1.0, n + 1, dtype=x0.dtype, device=x0.device)
            return solver.sample(x_init=x0, step_size=None, method=method, time_grid=grid, **tol)

        return solve
    raise ValueError(f"unknown peer {name!r}")


def _solvers(net: nn.Module, x0: Tensor, method: str, steps: int) -> dict[str, Callable]:
    return {
        "floor": lambda: floor_solve(net, x0, method, steps),
        "ecnf": lambda: integrate(net, x0, method=method, steps=steps).x,
        "torchdiffeq": peer_solve("torchdiffeq", net, x0, method, steps),
        "flow_matching": peer_solve("flow_matching", net, x0, method, steps),
    }


class _Counted(nn.Module):
    """Counts the network's evaluations (the same thin wrapper for every integrator)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        return self.net(x, t)


def _networks(quick: bool) -> list[dict]:
    mlp = load(ROOT / "checkpoints/2d/moons_otcfm.safetensors", device="cpu")
    unet = load(ROOT / "checkpoints/images/digits_unet_fm.safetensors", device="cpu")
    if quick:
        return [
            {"name": "2D MLP 256x3", "net": mlp, "batch": 16, "steps": (1, 2)},
            {"name": "UNet digits 8x8", "net": unet, "batch": 2, "steps": (1,)},
        ]
    return [
        {"name": "2D MLP 256x3", "net": mlp, "batch": 16, "steps": (1, 5, 20, 100)},
        {"name": "2D MLP 256x3", "net": mlp, "batch": 256, "steps": (1, 5, 20, 100)},
        {"name": "UNet digits 8x8", "net": unet, "batch": 4, "steps": (1, 5, 20)},
    ]


PEER_NAMES = ("torchdiffeq", "flow_matching")


def _fixed_lost(times: dict[str, list[float]]) -> bool:
    """A target read as missed: over 5% above the floor, or slower than a peer."""
    return lost(times, "ecnf", "floor", 1.05) or any(lost(times, "ecnf", p) for p in PEER_NAMES)


def _peers_lost(times: dict[str, list[float]]) -> bool:
    return any(lost(times, "ecnf", p) for p in PEER_NAMES)


def run_fixed(quick: bool = False) -> dict:
    rows = []
    for spec in _networks(quick):
        net, batch = spec["net"], spec["batch"]
        shape = tuple(net.config.data_shape)
        x0 = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0))
        for method in ("euler", "midpoint", "rk4"):
            for steps in spec["steps"]:
                fns = _solvers(net, x0, method, steps)
                outs = {name: fn() for name, fn in fns.items()}
                times, first = interleaved_retimed(
                    fns,
                    _fixed_lost,
                    repeats=2 if quick else None,
                    target_s=1.5,
                    min_repeats=21,  # a tie misread as a loss: ~1% of timings, not ~5%
                )
                row = {
                    "network": spec["name"],
                    "batch": batch,
                    "method": method,
                    "steps": steps,
                    "nfe": nfe_per_step(method) * steps,
                    "time_s": {n: stats(v).as_dict() for n, v in times.items()},
                    "ratio_to_floor": {
                        n: ratio(times[n], times["floor"]).as_dict() for n in INTEGRATORS
                    },
                    "ecnf_over_peer": {
                        n: ratio(times["ecnf"], times[n]).as_dict()
                        for n in ("torchdiffeq", "flow_matching")
                    },
                    "max_abs_diff_from_ecnf": {
                        n: float((outs[n] - outs["ecnf"]).abs().max()) for n in INTEGRATORS
                    },
                    "first_timing": first_timing(first, ("floor", *PEER_NAMES)),
                }
                rows.append(row)
                r = row["ratio_to_floor"]
                print(
                    f"  {spec['name']} B={batch} {method} {steps:3d} steps: ecnf/floor "
                    f"{r['ecnf']['median']:.3f}, torchdiffeq/floor "
                    f"{r['torchdiffeq']['median']:.3f}, flow_matching/floor "
                    f"{r['flow_matching']['median']:.3f}",
                    flush=True,
                )
    return {"rows": rows}


def run_adaptive(quick: bool = False) -> dict:
    rows = []
    for spec in _networks(quick)[-2:] if not quick else _networks(quick):
        counted = _Counted(spec["net"])
        shape = tuple(spec["net"].config.data_shape)
        batch = spec["batch"] if not quick else 8
        x0 = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(1))
        for tol in (1e-3,) if quick else (1e-3, 1e-5):
            kw = {"rtol": tol, "atol": tol}
            fns = {
                "ecnf": lambda kw=kw, c=counted, x=x0: integrate(c, x, method="dopri5", **kw).x,
                "torchdiffeq": peer_solve("torchdiffeq", counted, x0, "dopri5", None, **kw),
                "flow_matching": peer_solve("flow_matching", counted, x0, "dopri5", None, **kw),
            }
            nfe, outs = {}, {}
            for name, fn in fns.items():
                counted.calls = 0
                outs[name] = fn()
                nfe[name] = counted.calls
            times, first = interleaved_retimed(
                fns, _peers_lost, repeats=2 if quick else None, target_s=2.0, min_repeats=11
            )
            rows.append(
                {
                    "network": spec["name"],
                    "batch": batch,
                    "tol": tol,
                    "nfe": nfe,
                    "time_s": {n: stats(v).as_dict() for n, v in times.items()},
                    "ecnf_over_peer": {
                        n: ratio(times["ecnf"], times[n]).as_dict()
                        for n in ("torchdiffeq", "flow_matching")
                    },
                    "max_abs_diff_from_ecnf": {
                        n: float((outs[n] - outs["ecnf"]).abs().max()) for n in fns
                    },
                    "first_timing": first_timing(first, PEER_NAMES),
                }
            )
            print(f"  dopri5 {spec['name']} B={batch} tol={tol:g}: NFE {nfe}", flush=True)
    return {"rows": rows}


class _Free(nn.Module):
    """A velocity that costs next to nothing (``v = x``): what is left is integrator cost."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return x


def run_overhead(quick: bool = False) -> dict:
    """Each integrator's own cost beyond the floor: per solve, and per network evaluation.

    With a free velocity, Euler at 1 and at ``n`` steps gives ``extra(1) = a + b`` and
    ``extra(n) = a + n b`` over the floor, hence the fixed cost ``a`` and per-step cost ``b``.
    """
    net, n = _Free(), 20 if quick else 100
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(2))
    extra = {}
    for steps in (1, n):
        fns = _solvers(net, x0, "euler", steps)
        times = interleaved(
            fns, repeats=3 if quick else None, target_s=2.0, min_repeats=31, max_repeats=2001
        )
        floor = stats(times["floor"]).median
        extra[steps] = {k: stats(v).median - floor for k, v in times.items() if k != "floor"}
    out = {}
    for name in extra[1]:
        per_step = (extra[n][name] - extra[1][name]) / (n - 1)
        out[name] = {
            "per_solve_us": (extra[1][name] - per_step) * 1e6,
            "per_step_us": per_step * 1e6,
        }
    return {"batch": 16, "steps": n, "integrators": out}


def run(quick: bool = False) -> dict:
    """Both sections' measurements as a JSON-ready dict."""
    torch.manual_seed(0)
    return {
        "fixed": run_fixed(quick),
        "overhead": run_overhead(quick),
        "adaptive": run_adaptive(quick),
    }


def _r(d: dict) -> str:
    return f"{d['median']:.3f}"


def markdown(result: dict) -> str:
    fixed, adaptive = result["fixed"]["rows"], result["adaptive"]["rows"]
    worst = max(r["ratio_to_floor"]["ecnf"]["median"] for r in fixed)
    beaten = sum(
        r["ecnf_over_peer"][p]["q1"] > 1.0 for r in fixed for p in ("torchdiffeq", "flow_matching")
    )
    over = result["overhead"]["integrators"]
    lines = [
        "## 1. Sampling overhead on a fixed grid",
        "",
        "Time of each integrator divided by the floor's (a bare loop that only calls the "
        "network and does the update), median of per-round ratios over interleaved rounds; "
        "`ecnf/peer` below 1 means ECNF is faster. The last columns give the largest absolute "
        "difference of each peer's samples from ECNF's (torchdiffeq's and flow_matching's "
        "`rk4` is the 3/8 rule, so they differ from classical RK4 by its truncation error).",
        "",
        f"Largest ECNF/floor ratio over all cells: **{worst:.3f}**; comparisons where ECNF was "
        f"slower than a peer in at least three rounds of four (lower quartile of the per-round "
        f"ratio above 1): **{beaten}** of {2 * len(fixed)}.",
        "",
        "Where the time above the floor goes, measured with a velocity that costs nothing "
        f"(`v = x`, batch {result['overhead']['batch']}; Euler at 1 and "
        f"{result['overhead']['steps']} steps): each integrator's fixed cost per solve and its "
        "cost per network evaluation, in microseconds. ECNF's fixed cost is mostly checking "
        "that `x0` is finite (one reduction); the time grid is a list of Python floats and "
        "the returned `times` tensor is only built when read.",
        "",
        "| integrator | per solve (us) | per evaluation (us) |",
        "|---|---|---|",
        *(
            f"| {name} | {v['per_solve_us']:.1f} | {v['per_step_us']:.1f} |"
            for name, v in over.items()
        ),
        "",
        "| network | batch | method | steps | NFE | floor ms | ecnf/floor | torchdiffeq/floor "
        "| flow_matching/floor | ecnf/torchdiffeq | ecnf/flow_matching | max diff floor "
        "| max diff torchdiffeq | max diff flow_matching |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in fixed:
        f, p, d = r["ratio_to_floor"], r["ecnf_over_peer"], r["max_abs_diff_from_ecnf"]
        lines.append(
            f"| {r['network']} | {r['batch']} | {r['method']} | {r['steps']} | {r['nfe']} "
            f"| {r['time_s']['floor']['median'] * 1e3:.2f} | {_r(f['ecnf'])} "
            f"| {_r(f['torchdiffeq'])} | {_r(f['flow_matching'])} | {_r(p['torchdiffeq'])} "
            f"| {_r(p['flow_matching'])} | {d['floor']:.1e} | {d['torchdiffeq']:.1e} "
            f"| {d['flow_matching']:.1e} |"
        )
    lines += [
        "",
        "## 2. Adaptive solving (dopri5)",
        "",
        "ECNF hands adaptive methods to torchdiffeq, as flow_matching does, so the NFE match; "
        "times are medians over interleaved rounds.",
        "",
        "| network | batch | rtol = atol | NFE ecnf | NFE torchdiffeq | NFE flow_matching "
        "| ecnf ms | torchdiffeq ms | flow_matching ms | ecnf/torchdiffeq | ecnf/flow_matching "
        "| max diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in adaptive:
        t, p, n = r["time_s"], r["ecnf_over_peer"], r["nfe"]
        diff = max(r["max_abs_diff_from_ecnf"].values())
        lines.append(
            f"| {r['network']} | {r['batch']} | {r['tol']:g} | {n['ecnf']} | {n['torchdiffeq']} "
            f"| {n['flow_matching']} | {t['ecnf']['median'] * 1e3:.1f} "
            f"| {t['torchdiffeq']['median'] * 1e3:.1f} | {t['flow_matching']['median'] * 1e3:.1f} "
            f"| {_r(p['torchdiffeq'])} | {_r(p['flow_matching'])} | {diff:.1e} |"
        )
    return "\n".join(lines) + "\n"
