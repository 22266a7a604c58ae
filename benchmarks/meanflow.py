"""MeanFlow against flow matching: the price of the JVP per training iteration, and the
one-step goals, read from the shipped cards.

    python -m benchmarks.meanflow                      # prints markdown; --out FILE writes it
    python -m benchmarks.meanflow --quick              # seconds: checks the harness

The training cost is timed in interleaved rounds (one FM iteration, one MeanFlow iteration, on
the same network, batch and data), so that the ratio is measured in one run on one machine. The
quality figures are the saved evaluations of the shipped checkpoints (``checkpoints/*/NAME.json``,
written by ``scripts/make_cards.py``); no number here is typed in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ecnf import LossConfig, build_model, compute_loss, load_images
from ecnf.data import to_model_range
from ecnf.nets import MLPConfig, UNetConfig
from ecnf.shipped import checkpoints_dir
from ecnf_display.leaderboard import best_at_nfe

from .common import interleaved, machine, ratio, stats

#: The one-step goals: (what, checkpoint, the model it is measured against or None for the
#: data floor, NFE, the largest ratio that meets it).
GOALS = (
    ("2D moons: MeanFlow W2 at 1 NFE over the data floor", "2d/moons_meanflow", None, 1, 1.3),
    (
        "digits: MeanFlow FD-DIGITS at 1 NFE over the FM teacher's best",
        "images/digits_unet_meanflow",
        "images/digits_unet_fm",
        1,
        2.0,
    ),
)


def _step(model, config: LossConfig, batch: torch.Tensor, opt) -> None:
    out = compute_loss(config, model, torch.randn_like(batch), batch)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    opt.step()


def training_cost(quick: bool = False) -> list[dict]:
    """Milliseconds per iteration of FM and MeanFlow on the same network and batch."""
    torch.manual_seed(0)
    digits = to_model_range(load_images("digits"))
    cases = [
        ("MLP 256x3, 2D, batch 256", MLPConfig(data_shape=(2,)), torch.randn(256, 2)),
        ("UNet (digits default), batch 128", UNetConfig(data_shape=(1, 8, 8)), digits[:128]),
    ]
    rows = []
    for name, net_config, batch in cases[:1] if quick else cases:
        fns = {}
        for loss in ("fm", "meanflow"):
            model = build_model(type(net_config)(**{**vars(net_config), "mean_flow": True}))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            config = LossConfig(loss)
            fns[loss] = lambda m=model, c=config, o=opt, b=batch: _step(m, c, b, o)
        times = interleaved(fns, target_s=0.2 if quick else 10.0, min_repeats=3 if quick else 10)
        rows.append(
            {
                "network": name,
                "fm_ms": 1000 * stats(times["fm"]).median,
                "meanflow_ms": 1000 * stats(times["meanflow"]).median,
                "ratio": ratio(times["meanflow"], times["fm"]).as_dict(),
                "rounds": len(times["fm"]),
            }
        )
    return rows


def goals() -> list[dict]:
    """Each goal's measured ratio, from the shipped cards; None where the model is not shipped."""
    out = []
    for what, name, rival, nfe, bound in GOALS:
        card = Path(checkpoints_dir(), f"{name}.json")
        row = {"goal": what, "bound": bound, "checkpoint": name, "ratio": None}
        if card.exists():
            ev = json.loads(card.read_text())
            value, solver = best_at_nfe(ev, nfe)
            if rival is None:
                reference, how = ev["floor"]["w2"], "data floor"
            else:
                rival_ev = json.loads(Path(checkpoints_dir(), f"{rival}.json").read_text())
                key = rival_ev["metrics"]["fd"]
                reference = min(r[key] for r in rival_ev["rows"])
                how = f"{rival.split('/')[-1]}'s best over every solver"
            row.update(value=value, solver=solver, reference=reference, against=how)
            row["ratio"] = value / reference
        out.append(row)
    return out


def markdown(cost: list[dict], goal_rows: list[dict], info: dict) -> str:
    lines = [
        "# MeanFlow: training cost and one-step goals",
        "",
        f"Measured by `python -m benchmarks.meanflow` on {info['cpu']} "
        f"({info['torch_threads']} torch threads, {info['date']}), torch {info['torch']}.",
        "",
        "## Training cost per iteration (interleaved rounds, same network, batch and data)",
        "",
        "| network | flow matching (ms) | MeanFlow (ms) | MeanFlow / FM (median, IQR) | rounds |",
        "|---|---|---|---|---|",
    ]
    for r in cost:
        q = r["ratio"]
        lines.append(
            f"| {r['network']} | {r['fm_ms']:.1f} | {r['meanflow_ms']:.1f} | "
            f"{q['median']:.2f} ({q['q1']:.2f}-{q['q3']:.2f}) | {r['rounds']} |"
        )
    lines += ["", "## One-step goals (from the shipped cards)", ""]
    lines += ["| goal | measured | bound | met |", "|---|---|---|---|"]
    for g in goal_rows:
        if g["ratio"] is None:
            lines.append(f"| {g['goal']} | {g['checkpoint']} is not shipped | {g['bound']} | no |")
            continue
        measured = (
            f"{g['value']:.4f} ({g['solver']}) / {g['reference']:.4f} ({g['against']}) "
            f"= {g['ratio']:.2f}"
        )
        met = "yes" if g["ratio"] <= g["bound"] else "no"
        lines.append(f"| {g['goal']} | {measured} | {g['bound']} | {met} |")
    lines.append(
        "| Fashion-MNIST: MeanFlow FD-FMNIST at 1 NFE at most 3.0 | not trained (needs a GPU) "
        "| 3.0 | no |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds: checks the harness")
    parser.add_argument("--out", type=Path, help="write the markdown here")
    args = parser.parse_args(argv)
    info = machine()
    text = markdown(training_cost(args.quick), goals(), info)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
