"""The seed paper's ablations, as ECNF trains and ships them.

*Enhanced Continuous Normalizing Flows* (the seed paper) studies its velocity MLP in three
tables: the baseline against a ResNet-enhanced network (Table 1); a deeper network and ReLU or
Tanh instead of the adaptive activation (Table 2); and four optimiser settings, A-D, of
learning rate, weight decay and EMA (Table 3). ECNF trains each on Fashion-MNIST (flattened
28x28 images, flow matching) with the same budget: 15000 AdamW steps of batch 256, one seed.
The runs are recorded by ``scripts/train_gpu_checkpoints.sh`` and ship in
``checkpoints/ablations/``; their cards come from ``scripts/make_cards.py``.

The values of the paper's configurations A-D are not reproduced in this repository, so the
four settings here are ECNF's own spread around the paper's defaults (AdamW lr 2e-4, weight
decay 1e-4, EMA 0.999), and the page and notebook say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ecnf.shipped import checkpoints_dir

__all__ = ["ABLATIONS", "Ablation", "ablation_rows", "ablations_dir"]


def ablations_dir() -> Path:
    """Where the ablation checkpoints live: ``ablations/`` under :func:`checkpoints_dir`."""
    return checkpoints_dir() / "ablations"


@dataclass(frozen=True)
class Ablation:
    """One configuration: the file stem, the paper table it belongs to, and what changed."""

    name: str
    table: int
    label: str
    change: str

    @property
    def path(self) -> Path:
        return ablations_dir() / f"{self.name}.safetensors"


_BASE = "VelocityMLP 512x3, adaptive activation, linear time embedding"
_OPT = "lr 2e-4, weight decay 1e-4, EMA 0.999"

#: Every configuration, in table order. ``baseline`` doubles as Table 3's configuration B.
ABLATIONS: tuple[Ablation, ...] = (
    Ablation("baseline", 1, "Baseline", f"{_BASE}; {_OPT}"),
    Ablation("resnet", 1, "ResNet-enhanced", "ResNetVelocity, 3 residual blocks of width 512"),
    Ablation("baseline", 2, "Baseline", f"{_BASE}; {_OPT}"),
    Ablation("deeper", 2, "Deeper", "6 hidden layers instead of 3"),
    Ablation("relu", 2, "ReLU", "ReLU instead of the adaptive activation"),
    Ablation("tanh", 2, "Tanh", "Tanh instead of the adaptive activation"),
    Ablation("config_a", 3, "A", "weight decay 0, no EMA (decay 0)"),
    Ablation("baseline", 3, "B", _OPT + " (the paper's defaults)"),
    Ablation("config_c", 3, "C", "lr 1e-3 (5x)"),
    Ablation("config_d", 3, "D", "weight decay 1e-2 (100x), EMA 0.9999"),
)


def ablation_rows(
    evaluations: dict[str, dict], method: str = "rk4", steps: int | None = 5
) -> list[dict]:
    """One row per table entry: its metrics at one solver setting, from card evaluations.

    Arguments:
        evaluations: stem -> the evaluation saved beside the checkpoint (``NAME.json``).
        method, steps: the solver row to read (``steps=None`` with the adaptive method's
            label prefix, e.g. ``"dopri5"``).

    Returns:
        Dicts with ``table``, ``label``, ``name``, ``change``, ``nfe`` and every metric of
        the row; entries without an evaluation are left out.
    """

    out = []
    for ab in ABLATIONS:
        ev = evaluations.get(ab.name)
        if ev is None:
            continue
        match = [
            r for r in ev["rows"] if r["method"].split(" ")[0] == method and r["steps"] == steps
        ]
        if not match:
            raise KeyError(f"{ab.name}: no row for {method} at {steps} steps")
        row = match[0]
        metrics = {k: row[k] for k in (*ev["metrics"].values(), "sample_entropy")}
        out.append(
            {
                "table": ab.table,
                "label": ab.label,
                "name": ab.name,
                "change": ab.change,
                "nfe": row["nfe"],
                **metrics,
            }
        )
    return out
