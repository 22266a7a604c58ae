"""Section 3: training steps per second, ECNF's step against TorchCFM's, same network and batch.

One training step is what the README shows for ECNF (``compute_loss`` then AdamW) and what
TorchCFM's examples write (``sample_location_and_conditional_flow``, the network, a mean
squared error, AdamW). Both train their own copy of the same network from the same
initialisation on the same pre-drawn data batches, one step each per interleaved round.
For OT-CFM the time of the coupling alone is measured too, to give its share of the step.
TorchCFM's exact OT draws the pairs from POT's plan with replacement; ECNF re-pairs the
batch by the optimal permutation.

A single step cannot show what :func:`ecnf.fit` does with the coupling: it solves the next
batches' assignments in background threads (:class:`ecnf.prefetch.CoupledBatches`) while
the current step runs. Training loops of several steps, each loop starting cold, compare
that with solving in the step and with TorchCFM. The part of the loop's time that OT is
responsible for is ``1 - (I-CFM loop time) / (OT-CFM loop time)``.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torchcfm.conditional_flow_matching import (
    ConditionalFlowMatcher,
    ExactOptimalTransportConditionalFlowMatcher,
)

from ecnf import LossConfig, compute_loss, make_stream
from ecnf.config import TrainConfig
from ecnf.couplings import ot_assignment
from ecnf.nets import MLPConfig, UNetConfig, build_model
from ecnf.prefetch import CoupledBatches

from .common import first_timing, interleaved, interleaved_retimed, lost, ratio, stats

__all__ = ["markdown", "run"]


def _setups(quick: bool) -> list[dict]:
    mlp = MLPConfig(data_shape=(2,), width=256, depth=3)
    unet = UNetConfig(data_shape=(1, 8, 8), channels=32, channel_mult=(1, 2), attention_levels=())
    if quick:
        return [{"name": "2D MLP 256x3", "data": "moons", "config": mlp, "batch": 64, "loop": 4}]
    return [
        {"name": "2D MLP 256x3", "data": "moons", "config": mlp, "batch": 512, "loop": 24},
        {"name": "UNet digits 8x8", "data": "digits", "config": unet, "batch": 512, "loop": 3},
    ]


def _ecnf_step(model: nn.Module, loss: str, batches: list) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
    config, state = LossConfig(loss), {"i": 0}

    def step() -> None:
        x1 = batches[state["i"] % len(batches)]
        state["i"] += 1
        x0 = torch.randn_like(x1)
        out = compute_loss(config, model, x0, x1)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    return step


def _torchcfm_step(model: nn.Module, loss: str, batches: list) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
    matcher = (
        ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
        if loss == "otcfm"
        else ConditionalFlowMatcher(sigma=0.0)
    )
    state = {"i": 0}

    def step() -> None:
        x1 = batches[state["i"] % len(batches)]
        state["i"] += 1
        x0 = torch.randn_like(x1)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        loss_value = torch.mean((model(xt, t) - ut) ** 2)
        opt.zero_grad(set_to_none=True)
        loss_value.backward()
        opt.step()

    return step


#: Loops compared in the training-loop table: ECNF's default (OT solved ahead), ECNF solving
#: in the step, TorchCFM, and I-CFM for the cost without any coupling.
LOOPS = ("ecnf OT ahead", "ecnf OT in step", "torchcfm OT", "ecnf I-CFM")


def _loop(model: nn.Module, mode: str, batches: list, steps: int, workers: int) -> dict:
    """A training loop of ``steps`` steps that starts cold on every call."""
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    fm, state = LossConfig("fm"), {"i": 0, "wait_s": 0.0}

    def draw():
        x1 = batches[state["i"] % len(batches)]
        state["i"] += 1
        return torch.randn_like(x1), x1

    def step(x0, x1) -> None:
        if mode == "torchcfm OT":
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            loss = torch.mean((model(xt, t) - ut) ** 2)
        else:  # the pairs are coupled already (or independent, for I-CFM)
            loss = compute_loss(fm, model, x0, x1).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def run_loop() -> None:
        if mode in ("ecnf I-CFM", "torchcfm OT"):
            for _ in range(steps):
                step(*draw())
            return
        ahead = workers if mode == "ecnf OT ahead" else 0
        with CoupledBatches(draw, lambda: None, workers=ahead) as pairs:
            for _ in range(steps):
                step(*pairs.next())
        state["wait_s"] += pairs.wait_s

    return {"fn": run_loop, "state": state}


def _loops(spec: dict, base: nn.Module, batches: list, quick: bool) -> dict:
    steps, workers = spec["loop"], TrainConfig().ot_workers
    loops = {m: _loop(copy.deepcopy(base), m, batches, steps, workers) for m in LOOPS}
    times = interleaved(
        {m: loop["fn"] for m, loop in loops.items()},
        repeats=2 if quick else None,
        target_s=24.0,
        min_repeats=4,
        max_repeats=40,
        warmup=1,
    )
    per_step = {m: stats(v).median / steps for m, v in times.items()}
    total = {m: sum(v) for m, v in times.items()}
    out = {
        "network": spec["name"],
        "batch": spec["batch"],
        "steps_per_loop": steps,
        "workers": workers,
        "time_s": {m: stats(v).as_dict() for m, v in times.items()},
        "steps_per_s": {m: 1.0 / t for m, t in per_step.items()},
        "ahead_over_torchcfm": ratio(times["ecnf OT ahead"], times["torchcfm OT"]).as_dict(),
        "ahead_over_in_step": ratio(times["ecnf OT ahead"], times["ecnf OT in step"]).as_dict(),
        "wait_share_ahead": loops["ecnf OT ahead"]["state"]["wait_s"] / total["ecnf OT ahead"],
    }
    icfm = times["ecnf I-CFM"]
    out["ot_share"] = {
        m: 1.0 - ratio(icfm, times[m]).median
        for m in ("ecnf OT ahead", "ecnf OT in step", "torchcfm OT")
    }
    return out


def ot_share_bound(loop: dict, couplings: list[dict], cores: int) -> float:
    """The least part of an OT-CFM loop's time that OT can take on ``cores`` cores.

    One step needs ``S`` seconds of one core (the I-CFM step) and one assignment ``A``
    seconds of CPU; ``S`` cannot be split, so no schedule beats ``max(S, (S + A) / cores)``
    per step, and OT's part ``1 - S / step`` is at least what this returns.
    """
    step = loop["time_s"]["ecnf I-CFM"]["median"] / loop["steps_per_loop"]
    match = [c for c in couplings if c["network"] == loop["network"]]
    if not match:
        return float("nan")
    assignment = match[0]["time_s"]["ecnf auto"]["median"]
    return 1.0 - step / max(step, (step + assignment) / max(cores, 1))


def run(quick: bool = False) -> dict:
    rows, couplings, loops = [], [], []
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # POT's numThreads
    for spec in _setups(quick):
        batch = spec["batch"]
        stream = make_stream(spec["data"], seed=0)
        batches = [stream.next_batch(batch) for _ in range(4)]
        torch.manual_seed(0)
        base = build_model(spec["config"])
        for loss in ("fm", "otcfm"):
            fns = {
                "ecnf": _ecnf_step(copy.deepcopy(base), loss, batches),
                "torchcfm": _torchcfm_step(copy.deepcopy(base), loss, batches),
            }
            times, first = interleaved_retimed(
                fns,
                lambda t: lost(t, "ecnf", "torchcfm"),
                repeats=3 if quick else None,
                target_s=8.0,
                min_repeats=11,
                max_repeats=200,
                warmup=2,
            )
            row = {
                "network": spec["name"],
                "batch": batch,
                "loss": loss,
                "time_s": {n: stats(v).as_dict() for n, v in times.items()},
                "steps_per_s": {n: 1.0 / stats(v).median for n, v in times.items()},
                "ecnf_over_torchcfm": ratio(times["ecnf"], times["torchcfm"]).as_dict(),
                "first_timing": first_timing(first, ("torchcfm",)),
            }
            rows.append(row)
            print(
                f"  {spec['name']} B={batch} {loss}: ecnf {row['steps_per_s']['ecnf']:.1f} "
                f"steps/s, torchcfm {row['steps_per_s']['torchcfm']:.1f} steps/s",
                flush=True,
            )
        x1 = batches[0]
        x0 = torch.randn_like(x1)
        sampler = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0).ot_sampler
        fns = {
            "ecnf auto": lambda x0=x0, x1=x1: ot_assignment(x0, x1),
            "ecnf hungarian": lambda x0=x0, x1=x1: ot_assignment(x0, x1, solver="hungarian"),
            "ecnf network_simplex": lambda x0=x0, x1=x1: ot_assignment(
                x0, x1, solver="network_simplex"
            ),
            "torchcfm exact": lambda x0=x0, x1=x1, s=sampler: s.sample_plan(x0, x1),
        }
        times = interleaved(fns, repeats=3 if quick else None, target_s=3.0, min_repeats=5)
        ot_step = next(r for r in rows if r["network"] == spec["name"] and r["loss"] == "otcfm")
        couplings.append(
            {
                "network": spec["name"],
                "batch": batch,
                "dims": int(x1[0].numel()),
                "time_s": {n: stats(v).as_dict() for n, v in times.items()},
                "share_of_ecnf_step": stats(times["ecnf auto"]).median
                / ot_step["time_s"]["ecnf"]["median"],
                "share_of_torchcfm_step": stats(times["torchcfm exact"]).median
                / ot_step["time_s"]["torchcfm"]["median"],
            }
        )
        loops.append(_loops(spec, base, batches, quick))
        lp = loops[-1]
        print(
            f"  {spec['name']} B={batch} loops: "
            + ", ".join(f"{m} {v:.1f} steps/s" for m, v in lp["steps_per_s"].items())
            + f"; OT share ahead {lp['ot_share']['ecnf OT ahead']:.0%}",
            flush=True,
        )
    return {"rows": rows, "couplings": couplings, "loops": loops, "cores": os.cpu_count()}


def markdown(result: dict) -> str:
    lines = [
        "## 3. Training throughput",
        "",
        "Steps per second of one training step (noise, path, network, loss, backward, AdamW) "
        "with ECNF's `compute_loss` and with TorchCFM's matcher, same network, batch and "
        "data, one step each per interleaved round; the ratio is the median of per-round "
        "time ratios (below 1: ECNF faster).",
        "",
        "| network | batch | loss | ECNF steps/s | TorchCFM steps/s | ECNF time / TorchCFM time |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        name = {"fm": "I-CFM", "otcfm": "OT-CFM"}[r["loss"]]
        lines.append(
            f"| {r['network']} | {r['batch']} | {name} | {r['steps_per_s']['ecnf']:.1f} "
            f"| {r['steps_per_s']['torchcfm']:.1f} | {r['ecnf_over_torchcfm']['median']:.3f} |"
        )
    lines += [
        "",
        "Minibatch OT alone (ms, median): ECNF's assignment with each solver (`auto`, the "
        "default, is the auction, optimal to 1e-9 of the cost range; SciPy's Hungarian and "
        "POT's network simplex are exact) and TorchCFM's exact plan sampler, and their share "
        "of the OT-CFM step.",
        "",
        "| network | batch | dims | ECNF auto (auction) | ECNF hungarian | ECNF network simplex "
        "| TorchCFM exact | share of ECNF step | share of TorchCFM step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["couplings"]:
        t = {k: v["median"] * 1e3 for k, v in c["time_s"].items()}
        lines.append(
            f"| {c['network']} | {c['batch']} | {c['dims']} | {t['ecnf auto']:.1f} "
            f"| {t['ecnf hungarian']:.1f} | {t['ecnf network_simplex']:.1f} "
            f"| {t['torchcfm exact']:.1f} | {c['share_of_ecnf_step']:.0%} "
            f"| {c['share_of_torchcfm_step']:.0%} |"
        )
    if result.get("loops"):
        cores = result.get("cores") or os.cpu_count() or 1
        lines += _loops_markdown(result["loops"], result["couplings"], cores)
    return "\n".join(lines) + "\n"


def _loops_markdown(loops: list[dict], couplings: list[dict], cores: int) -> list[str]:
    workers = loops[0]["workers"]
    lengths = ", ".join(f"{lp['steps_per_loop']} steps for the {lp['network']}" for lp in loops)
    lines = [
        "",
        f"OT-CFM training loops (each loop starts cold: {lengths}), "
        f"interleaved. `ecnf OT ahead` is what `ecnf.fit` does by default on this machine: the "
        f"assignments of the next {workers} batch{'' if workers == 1 else 'es'} are solved in "
        "background threads while the step runs. "
        "`OT share` is the part of the loop's time that OT is responsible for, "
        "1 - (I-CFM loop time / OT-CFM loop time), median of per-round values; `waiting` is "
        "the part the step spent blocked on a coupling not yet solved. However the work is "
        "scheduled, a step cannot take less than max(S, (S + A) / cores), with S the I-CFM "
        "step and A the CPU time of one assignment (the table above), so OT's part cannot "
        "fall below 1 - S / max(S, (S + A) / cores), the last column; it can be under 50% "
        "only where A < (2 cores - 1) S.",
        "",
        "| network | batch | I-CFM steps/s | ECNF OT ahead steps/s | ECNF OT in step steps/s "
        "| TorchCFM OT steps/s | ahead / TorchCFM time | ahead / in step time "
        "| OT share: ahead | OT share: in step | OT share: TorchCFM | waiting (ahead) "
        f"| least possible OT share on {cores} cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lp in loops:
        sps, share = lp["steps_per_s"], lp["ot_share"]
        lines.append(
            f"| {lp['network']} | {lp['batch']} | {sps['ecnf I-CFM']:.1f} "
            f"| {sps['ecnf OT ahead']:.1f} | {sps['ecnf OT in step']:.1f} "
            f"| {sps['torchcfm OT']:.1f} | {lp['ahead_over_torchcfm']['median']:.3f} "
            f"| {lp['ahead_over_in_step']['median']:.3f} | {share['ecnf OT ahead']:.0%} "
            f"| {share['ecnf OT in step']:.0%} | {share['torchcfm OT']:.0%} "
            f"| {lp['wait_share_ahead']:.0%} "
            f"| {ot_share_bound(lp, couplings, cores):.0%} |"
        )
    return lines
