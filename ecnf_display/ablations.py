"""The seed paper's ablation tables over the shipped models.

The configurations themselves (:data:`ABLATIONS`, :func:`ablations_dir`) are defined once, in
:mod:`ecnf.ablations`; this module turns the evaluations saved beside their checkpoints into the
rows of the studio's tables and the cards.
"""

from __future__ import annotations

from ecnf.ablations import ABLATIONS, Ablation, ablations_dir

__all__ = ["ABLATIONS", "Ablation", "ablation_rows", "ablations_dir"]


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
