"""Your own data: how well, and how fast, the 2D playground's defaults fit a drawing.

    python -m benchmarks.drawn                  # prints markdown; --out FILE writes it
    python -m benchmarks.drawn --quick          # seconds: checks the harness

Three pictures stand for what a visitor draws: a filled heart (a shape), the same heart as a
brush stroke of the canvas's default width, and a typed word (thin letters, four separate
pieces). Each becomes a density by :mod:`ecnf.data.drawn`, exactly as in the studio, and is
trained with the playground's defaults (:data:`ecnf_display.playground.PLAYGROUND_DEFAULTS`)
through :func:`ecnf.fit`. The time is the wall time of ``fit`` with torch's default threads;
the quality is the exact W2 between 2000 samples (dopri5, and RK4 with 10 steps) and 2000
fresh points of the drawing, beside the floor (W2 between two fresh sets), as the cards
measure the shipped 2D models. The goal (issue: draw your own distribution) is at most 1.3x
the floor with an adaptive solver, in at most 10 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from ecnf import fit, integrate, load
from ecnf.data import save_drawing, text_image
from ecnf.evaluation import data_floor, toy_sets
from ecnf.metrics import wasserstein2
from ecnf_display.playground import PLAYGROUND_DEFAULTS, playground_config

from .common import machine

__all__ = ["GOAL_RATIO", "GOAL_SECONDS", "drawings", "main", "markdown", "run"]

GOAL_RATIO, GOAL_SECONDS = 1.3, 10.0
CANVAS = (480, 320)  # the studio's canvas
BRUSH = 24  # the canvas's default brush width


def _heart(fill: bool):
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", CANVAS, (0, 0, 0, 0))
    turns = [2 * math.pi * k / 200 for k in range(201)]
    points = [
        (
            240 + 8.5 * 16 * math.sin(t) ** 3,
            150
            - 8.5
            * (13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)),
        )
        for t in turns
    ]
    draw = ImageDraw.Draw(image)
    if fill:
        draw.polygon(points, fill=(31, 59, 115, 255))
    else:
        draw.line(points, fill=(31, 59, 115, 255), width=BRUSH, joint="curve")
    return image


def drawings() -> dict:
    """The benchmark's pictures, by name."""
    return {
        "filled heart": _heart(fill=True),
        "heart stroke": _heart(fill=False),
        "word 'flow'": text_image("flow"),
    }


#: A longer budget beside the defaults: what it takes to come near the goal's ratio.
LONGER = {"iterations": 3000, "batch_size": 512}


def run(quick: bool = False) -> dict:
    """Train the playground's defaults, then :data:`LONGER`, on each drawing; time each run
    and measure W2 against the floor."""
    budgets = (
        [{"iterations": 30, "width": 32}, {"iterations": 60, "width": 32}]
        if quick
        else [{}, LONGER]
    )
    num = 200 if quick else 2000
    rows = []
    with tempfile.TemporaryDirectory(prefix="ecnf-drawn-") as tmp:
        for (label, picture), options in itertools.product(drawings().items(), budgets):
            name = save_drawing(picture, Path(tmp) / "drawings")
            config = playground_config(name, out_dir=str(Path(tmp) / "run"), **options)
            start = time.perf_counter()
            result = fit(config, overwrite=True)
            seconds = time.perf_counter() - start
            model = load(result.checkpoint)
            sets = toy_sets(name, "gaussian", num, seed=0)
            floor = data_floor(sets)["w2"]
            row = {
                "drawing": label,
                "iterations": config.iterations,
                "batch_size": config.batch_size,
                "train_s": seconds,
                "floor": floor,
            }
            for key, kw in (
                ("dopri5", {"method": "dopri5"}),
                ("rk4", {"method": "rk4", "steps": 10}),
            ):
                sol = integrate(model, sets.x0, **kw)
                row[key] = wasserstein2(sol.x, sets.fresh)
                row[f"{key}_nfe"] = sol.nfe
            rows.append(row)
    return {
        "machine": machine(),
        "threads": torch.get_num_threads(),
        "config": PLAYGROUND_DEFAULTS | budgets[0],
        "num_samples": num,
        "rows": rows,
    }


def markdown(result: dict) -> str:
    c = result["config"]
    lines = [
        "# Fitting a drawing with the 2D playground's defaults",
        "",
        f"Machine: {result['machine']['cpu']}, {result['threads']} torch threads. Config: "
        f"{c['loss']}, {c['arch']} {c['width']} x {c['depth']} ({c['activation']}), "
        f"{c['iterations']} iterations of batch {c['batch_size']}, lr {c['lr']:g} (cosine). "
        f"W2 (exact) between {result['num_samples']} samples and {result['num_samples']} "
        "fresh points of the drawing, seed 0; written by `python -m benchmarks.drawn --out "
        "benchmarks/drawn_results.md`.",
        "",
        "The second row of each drawing trains longer, with everything else the same.",
        "",
        "| drawing | budget | training time | W2 dopri5 (NFE) | x floor | W2 rk4 10 steps "
        "| x floor | data floor | goal (<= 1.3x, <= 10 s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        adaptive = r["dopri5"] / r["floor"]
        met = adaptive <= GOAL_RATIO and r["train_s"] <= GOAL_SECONDS
        lines.append(
            f"| {r['drawing']} | {r['iterations']} x {r['batch_size']} | {r['train_s']:.1f} s | "
            f"{r['dopri5']:.4f} ({r['dopri5_nfe']}) | "
            f"{adaptive:.2f}x | {r['rk4']:.4f} | {r['rk4'] / r['floor']:.2f}x | "
            f"{r['floor']:.4f} | {'met' if met else 'not met'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs: checks the harness")
    parser.add_argument("--out", type=Path, help="write the markdown here (and JSON beside it)")
    args = parser.parse_args(argv)
    result = run(args.quick)
    text = markdown(result)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
