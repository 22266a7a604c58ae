"""The few-step leaderboard: each shipped model's quality at 1, 2 and 4 network evaluations.

For every data set, the flow matching teacher, OT-CFM, reflow, the velocity consistency loss and
MeanFlow, each at its best fixed-step solver for exactly that many evaluations (the solver is
named), beside the data floor and each model's training budget. The numbers are read from the
evaluations saved beside the checkpoints (``NAME.json``, written by ``scripts/make_cards.py``),
so ``checkpoints/RESULTS.md`` and the studio's view show the same table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ecnf.checkpoint import checkpoint_info
from ecnf.shipped import checkpoints_dir

__all__ = [
    "FEW_STEP_BUDGETS",
    "METHOD_ORDER",
    "best_at_nfe",
    "few_step_rows",
    "render",
    "shipped_leaderboard",
    "shipped_results",
]

#: The budgets the leaderboard compares, in network evaluations per sample.
FEW_STEP_BUDGETS = (1, 2, 4)
#: The objectives it compares, in table order, by their loss name in the checkpoints.
METHOD_ORDER = ("fm", "otcfm", "reflow", "consistency", "meanflow")
_LABELS = {
    "fm": "flow matching (teacher)",
    "otcfm": "OT-CFM",
    "reflow": "reflow",
    "consistency": "velocity consistency",
    "meanflow": "MeanFlow",
}


def _metric(evaluation: Mapping) -> str:
    """The quality number of an evaluation: exact W2 for 2D, the Fréchet distance for images."""
    if "metrics" in evaluation:
        return evaluation["metrics"]["fd"]
    return "w2"


def best_at_nfe(evaluation: Mapping, nfe: int) -> tuple[float, str] | None:
    """The lowest quality number among the fixed-step rows that spend exactly ``nfe``
    evaluations, and the solver that got it (``"euler 2"``); None when no row does."""
    key = _metric(evaluation)
    rows = [r for r in evaluation["rows"] if r["steps"] is not None and r["nfe"] == nfe]
    if not rows:
        return None
    best = min(rows, key=lambda r: r[key])
    return float(best[key]), f"{best['method']} {best['steps']}"


def few_step_rows(
    evaluations: Mapping[str, Mapping], metadata: Mapping[str, Mapping]
) -> dict[str, list[dict]]:
    """Data set -> one row per objective (in :data:`METHOD_ORDER`): name, label, budget and
    ``{nfe: (value, solver)}``; objectives without a shipped model have ``name=None``.

    Arguments:
        evaluations: checkpoint name -> its saved evaluation.
        metadata: checkpoint name -> its checkpoint metadata (loss, dataset, steps, ...).
    """
    by_data: dict[str, dict[str, tuple[str, Mapping]]] = {}
    for name, ev in evaluations.items():
        meta = metadata[name]
        loss = meta.get("loss")
        if loss not in METHOD_ORDER or meta.get("dataset") is None:
            continue
        by_data.setdefault(meta["dataset"], {}).setdefault(loss, (name, ev))
    out = {}
    for data, models in sorted(by_data.items()):
        rows = []
        for loss in METHOD_ORDER:
            if loss not in models:
                rows.append({"loss": loss, "label": _LABELS[loss], "name": None})
                continue
            name, ev = models[loss]
            meta = metadata[name]
            rows.append(
                {
                    "loss": loss,
                    "label": _LABELS[loss],
                    "name": name,
                    "metric": _metric(ev),
                    "iterations": meta.get("steps"),
                    "batch_size": meta.get("batch_size"),
                    "wall_time_s": meta.get("wall_time_s"),
                    "hardware": meta.get("hardware"),
                    "floor": ev["floor"][_metric(ev)],
                    "scores": {n: best_at_nfe(ev, n) for n in FEW_STEP_BUDGETS},
                }
            )
        out[data] = rows
    return out


def _budget(row: Mapping) -> str:
    if row.get("iterations") is None:
        return "n/a"
    seconds = row.get("wall_time_s") or 0
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return f"{row['iterations']} x {row['batch_size']} ({took}, {row['hardware']})"


def render(rows_by_data: Mapping[str, list[dict]]) -> str:
    """The leaderboard as Markdown: one table per data set."""
    lines = []
    for data, rows in rows_by_data.items():
        shipped = [r for r in rows if r["name"]]
        metric = shipped[0]["metric"] if shipped else "w2"
        label = "W2" if metric == "w2" else metric
        budgets = {r["iterations"] for r in shipped}
        lines += [
            f"### {data}",
            "",
            f"{label} (lower is better) at exactly 1, 2 and 4 network evaluations, each at the "
            "best fixed-step solver for that budget (named). Training budget: iterations x "
            "batch." + ("" if len(budgets) <= 1 else " **The budgets differ**: compare with care."),
            "",
            "| objective | checkpoint | "
            + " | ".join(f"{n} NFE" for n in FEW_STEP_BUDGETS)
            + " | data floor | training budget |",
            "|---" * (len(FEW_STEP_BUDGETS) + 4) + "|",
        ]
        for row in rows:
            if not row["name"]:
                empty = " | ".join("" for _ in FEW_STEP_BUDGETS)
                lines.append(f"| {row['label']} | not trained | {empty} | | |")
                continue
            cells = []
            for n in FEW_STEP_BUDGETS:
                score = row["scores"][n]
                if score is None:
                    cells.append("n/a")
                else:
                    ratio = score[0] / row["floor"] if row["floor"] > 0 else float("nan")
                    cells.append(f"{score[0]:.4f} ({score[1]}; {ratio:.2f}x floor)")
            lines.append(
                f"| {row['label']} | {row['name']} | {' | '.join(cells)} | "
                f"{row['floor']:.4f} | {_budget(row)} |"
            )
        lines.append("")
    return "\n".join(lines)


def shipped_results(folders=("2d", "images")) -> tuple[dict[str, dict], dict[str, dict]]:
    """``(evaluations, metadata)`` of every shipped checkpoint with a saved evaluation."""
    evaluations, metadata = {}, {}
    for folder in folders:
        for card in sorted(Path(checkpoints_dir(), folder).glob("*.json")):
            weights = card.with_suffix(".safetensors")
            if weights.exists():
                evaluations[card.stem] = json.loads(card.read_text())
                metadata[card.stem] = checkpoint_info(weights)["metadata"]
    return evaluations, metadata


def shipped_leaderboard() -> str:
    """The leaderboard of the shipped checkpoints, as Markdown."""
    return render(few_step_rows(*shipped_results()))
