"""Section 3: training steps per second, ECNF's step against TorchCFM's, same network and batch.

One training step is what the README shows for ECNF (``compute_loss`` then AdamW) and what
TorchCFM's examples write (``sample_location_and_conditional_flow``, the network, a mean
squared error, AdamW). Both train their own copy of the same network from the same
initialisation on the same pre-drawn data batches, one step each per interleaved round.
For OT-CFM the time of the coupling alone is measured too, to give its share of the step.
TorchCFM's exact OT draws the pairs from POT's plan with replacement; ECNF re-pairs the
batch by the optimal permutation.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torchcfm.conditional_flow_matching import (
    ConditionalFlowMatcher,
    ExactOptimalTransportConditionalFlowMatcher,
)

from ecnf import LossConfig, compute_loss, make_stream
from ecnf.couplings import ot_assignment
from ecnf.nets import MLPConfig, UNetConfig, build_model

from .common import interleaved, ratio, stats

__all__ = ["markdown", "run"]


def _setups(quick: bool) -> list[dict]:
    mlp = MLPConfig(data_shape=(2,), width=256, depth=3)
    unet = UNetConfig(data_shape=(1, 8, 8), channels=32, channel_mult=(1, 2), attention_levels=())
    if quick:
        return [{"name": "2D MLP 256x3", "data": "moons", "config": mlp, "batch": 64}]
    return [
        {"name": "2D MLP 256x3", "data": "moons", "config": mlp, "batch": 512},
        {"name": "UNet digits 8x8", "data": "digits", "config": unet, "batch": 512},
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


def run(quick: bool = False) -> dict:
    rows, couplings = [], []
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
            times = interleaved(
                fns,
                repeats=3 if quick else None,
                target_s=8.0,
                min_repeats=10,
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
    return {"rows": rows, "couplings": couplings}


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
        "Minibatch OT alone (ms, median): ECNF's exact assignment with each solver (`auto` "
        "is the default) and TorchCFM's exact plan sampler, and their share of the OT-CFM step.",
        "",
        "| network | batch | dims | ECNF auto | ECNF hungarian | ECNF network simplex "
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
    return "\n".join(lines) + "\n"
