"""Regenerate every shipped model card and the results table from the checkpoints themselves.

    python scripts/make_cards.py     # every checkpoint in checkpoints/{2d,images,ablations}
    python scripts/make_cards.py --num-samples 500 checkpoints/2d/moons_fm.safetensors

For each checkpoint NAME.safetensors it writes NAME.md (the card) and NAME.json (the numbers
the card shows, with sample size and seed), then checkpoints/RESULTS.md, then the studio home
page's pictures in checkpoints/home/ (``ecnf_display.home``). No number is typed
by hand: each is read from the checkpoint or measured here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecnf.checkpoint import checkpoint_info  # noqa: E402
from ecnf.evaluation import (  # noqa: E402
    GUIDANCE_SCALES,
    evaluate_2d,
    evaluate_image_checkpoint,
)
from ecnf_display import home  # noqa: E402
from ecnf_display.ablations import ablation_rows  # noqa: E402
from ecnf_display.cards import render_card, render_image_card, results_table  # noqa: E402
from ecnf_display.leaderboard import shipped_leaderboard  # noqa: E402

FOLDERS = ("2d", "images", "ablations")


def _image_section(title: str, ev: dict) -> list[str]:
    keys = [*ev["metrics"].values(), "sample_entropy"]
    text = [
        f"## {title} ({ev['data']}, {ev['num_samples']} samples drawn on "
        f"{ev['sampler_device']}, features of {ev['feature_net']})",
        "",
        "| solver | steps | NFE | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 3) + "|",
    ]
    for r in ev["rows"]:
        cells = " | ".join(f"{r[k]:.4f}" for k in keys)
        steps = r["steps"] if r["steps"] is not None else "adaptive"
        text.append(f"| {r['method']} | {steps} | {r['nfe']} | {cells} |")
    floor = " | ".join(f"{ev['floor'][k]:.4f}" for k in keys)
    return [*text, f"| real test vs real train | | | {floor} |", ""]


def _ablation_section(evaluations: dict[str, dict]) -> list[str]:
    if not evaluations:
        return []
    first = next(iter(evaluations.values()))
    keys = [*first["metrics"].values(), "sample_entropy"]
    rows = ablation_rows(evaluations, method="rk4", steps=5)
    nfe = sorted({row["nfe"] for row in rows})
    devices = sorted({ev["sampler_device"] for ev in evaluations.values()})
    text = [
        "## Seed-paper ablations (fashion_mnist, equal budgets)",
        "",
        f"RK4 with 5 steps (NFE {', '.join(map(str, nfe))}), {first['num_samples']} samples "
        f"drawn on {', '.join(devices)}, features of {first['feature_net']}; every solver "
        "is in each card under checkpoints/ablations/. "
        "What each configuration changes is defined in `ecnf/ablations.py`.",
        "",
        "| table | configuration | change | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 3) + "|",
    ]
    for row in rows:
        cells = " | ".join(f"{row[k]:.4f}" for k in keys)
        text.append(f"| {row['table']} | {row['label']} | {row['change']} | {cells} |")
    floor = " | ".join(f"{first['floor'][k]:.4f}" for k in keys)
    return [*text, f"| | real test vs real train | | {floor} |", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "checkpoints",
        nargs="*",
        type=Path,
        help="default: checkpoints/{2d,images,ablations}/*.safetensors",
    )
    parser.add_argument("--num-samples", type=int, default=2000, help="2D samples per row")
    parser.add_argument("--num-images", type=int, default=1000, help="images per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        default="cpu",
        help="where image checkpoints sample (cuda: much faster; TF32 is switched off so the "
        "numbers match a CPU's to float32 rounding)",
    )
    parser.add_argument("--no-table", action="store_true", help="do not rewrite RESULTS.md")
    parser.add_argument(
        "--no-home", action="store_true", help="do not redraw checkpoints/home/ (the home page)"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the cards from their NAME.json numbers without measuring again",
    )
    args = parser.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    paths = args.checkpoints or [
        p for d in FOLDERS for p in sorted((ROOT / "checkpoints" / d).glob("*.safetensors"))
    ]
    for path in paths:
        start = time.perf_counter()
        info = checkpoint_info(path)
        name = path.stem
        is_2d = tuple(info["model_config"]["data_shape"]) == (2,)
        if args.render_only:
            ev = json.loads(path.with_suffix(".json").read_text())
        elif is_2d:
            ev = evaluate_2d(path, num_samples=args.num_samples, seed=args.seed)
        else:
            ev = evaluate_image_checkpoint(
                path,
                num_samples=args.num_images,
                seed=args.seed,
                device=args.device,
                guidance_scales=GUIDANCE_SCALES,
            )
        card = (render_card if is_2d else render_image_card)(name, info, ev)
        path.with_suffix(".md").write_text(card)
        path.with_suffix(".json").write_text(json.dumps(ev, indent=1, default=float) + "\n")
        print(f"{name}: card written ({time.perf_counter() - start:.1f} s)", flush=True)
    if not args.no_table:
        # the table covers every card on disk, so regenerating a few cards keeps it whole
        evaluations = {
            p.stem: json.loads(p.read_text())
            for p in sorted((ROOT / "checkpoints" / "2d").glob("*.json"))
        }
        image_evaluations, ablation_evaluations = (
            {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
            for folder in (ROOT / "checkpoints" / "images", ROOT / "checkpoints" / "ablations")
        )
        machine = f"{platform.machine()} CPU, torch {torch.__version__}"
        text = [
            "# Shipped checkpoints: results",
            "",
            f"Assembled by `python scripts/make_cards.py` on {date.today()} ({machine}) from "
            "each card's NAME.json; each image section names the device its samples came from.",
            f"Exact W2 between {args.num_samples} samples and {args.num_samples} fresh data "
            f"points (seed {args.seed}); the floor is W2 between two fresh data sets. "
            "Each checkpoint's card (NAME.md beside it) has every solver, MMD² and timings.",
            "",
            "## 2D (gaussian source)",
            "",
            results_table(evaluations),
            "",
        ]
        for name, ev in image_evaluations.items():
            text += _image_section(name, ev)
        text += _ablation_section(ablation_evaluations)
        text += [
            "## Few-step leaderboard",
            "",
            "Every objective's shipped model per data set at 1, 2 and 4 network evaluations "
            "(`ecnf_display.leaderboard`; the Solver lab shows the same table).",
            "",
            shipped_leaderboard(),
        ]
        (ROOT / "checkpoints" / "RESULTS.md").write_text("\n".join(text))
    if not args.no_home:
        # the home page's pictures go stale with any change to a 2D or image checkpoint
        print(f"home page pictures: {home.write(ROOT / 'checkpoints')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
